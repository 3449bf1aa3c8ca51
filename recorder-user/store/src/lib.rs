//! The embedded store: an append-only log of segment files under the data directory, every
//! record stored once, with the integrity structures (see `segment` for the format, `scan` for
//! the checks) and the session index. Appends are written as one buffer per batch and fsynced
//! before the batch is acknowledged.
//!
//! Memory does not grow with the log: the tree's nodes (`tree`) and each record's place
//! (`record_index`) are files beside the segments, read back with `pread`; in memory are the
//! tree's frontier, each stream's end and each session's summary. A start reads the state saved
//! with the last checkpoint (`state`) and only the records appended after it.
pub mod index;
pub mod integrity;
pub mod pruned;
pub mod record_index;
pub mod scan;
pub mod segment;
pub mod state;
pub mod tree;

use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions},
    io::Write as _,
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use index::SessionIndex;
use record_index::RecordIndex;
use recorder_record::{MAX_LINE, Record, Timestamp};
use scan::{CHECKPOINTS_FILE, SEGMENT_DIR, Scan, ScanError, ScanFrom, StreamState, Visit};
use segment::{Entry, HEADER};
use state::SavedState;
use tree::{TreeError, TreeFiles};

use crate::integrity::{
    Hash,
    checkpoint::{Checkpoint, CheckpointError, Signer},
    merkle::{self, NodeId},
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(
        "the log in {dir} fails its integrity checks; run `recorder verify --data {dir}`. First problem: {first}"
    )]
    Damaged { dir: PathBuf, first: String },
    #[error("record with sequence {sequence}: {why}")]
    BadRecord { sequence: u64, why: String },
    #[error("log index {0} is not stored")]
    NoSuchRecord(u64),
    #[error("log index {index} was in segment {segment}, pruned by retention{}", archive_hint(.archive.as_deref()))]
    Pruned {
        index: u64,
        segment: u32,
        archive: Option<String>,
    },
    #[error("segment {segment}: {why}")]
    CannotPrune { segment: u32, why: String },
    #[error(transparent)]
    Tree(#[from] TreeError),
}

fn archive_hint(archive: Option<&str>) -> String {
    match archive {
        Some(url) => format!(" (archived to {url})"),
        None => " (not archived)".into(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// When to write a signed checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    pub every_records: u64,
    pub every: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            every_records: 100_000,
            every: Duration::from_secs(10),
        }
    }
}

/// A stored record: where it sits in the log and its stream, the record read from its line,
/// and the line exactly as the agent sent it (what the hashes cover).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    pub index: u64,
    pub host: String,
    pub boot: String,
    pub sequence: u64,
    /// The leaf hash of the stream's previous record (the chain link).
    pub prev: Hash,
    pub record: Record,
    pub line: Vec<u8>,
}

impl StoredRecord {
    /// The stored record an entry of the log holds (its line read into its record).
    pub fn from_entry(e: &Entry<'_>) -> Result<Self, serde_json::Error> {
        Ok(Self {
            index: e.index,
            host: e.host.to_string(),
            boot: e.boot.to_string(),
            sequence: e.sequence,
            prev: e.prev,
            record: Record::parse(e.line)?,
            line: e.line.to_vec(),
        })
    }

    /// The record's Merkle leaf hash, recomputed from its parts.
    pub fn leaf_hash(&self) -> Hash {
        let entry = Entry {
            index: self.index,
            host: &self.host,
            boot: &self.boot,
            sequence: self.sequence,
            prev: self.prev,
            line: &self.line,
        };
        let mut buf = Vec::with_capacity(self.line.len() + 128);
        entry.encode_frame(&mut buf)
    }
}

/// What one batch did.
#[derive(Debug, Default)]
pub struct AppendOutcome {
    pub acked_sequence: Option<u64>,
    pub stored: Vec<StoredRecord>,
    pub duplicates: u64,
}

pub struct Store {
    dir: PathBuf,
    segment_max: u64,
    current: File,
    current_seg: u32,
    current_len: u64,
    readers: HashMap<u32, File>,
    tree: TreeFiles,
    records: RecordIndex,
    streams: HashMap<(String, String), StreamState>,
    index: SessionIndex,
    signer: Signer,
    policy: CheckpointPolicy,
    latest: Option<Checkpoint>,
    last_checkpoint_at: Instant,
    buf: Vec<u8>,
    /// Segments deleted by retention, by number.
    pruned: std::collections::BTreeMap<u32, pruned::PrunedSegment>,
    /// Their first log index → segment number.
    pruned_starts: std::collections::BTreeMap<u64, u32>,
}

impl Store {
    /// Opens (or creates) the store in `dir`. With a saved state, only the records appended
    /// after it are read and checked (the signed checkpoint of the saved size must match the
    /// stored tree); without one, the whole log. A log that fails a check is refused; an
    /// incomplete last record (a crash in the middle of a write, so never acknowledged) is cut
    /// off.
    pub fn open(
        dir: &Path,
        segment_max: u64,
        policy: CheckpointPolicy,
    ) -> Result<Self, StoreError> {
        let seg_dir = dir.join(SEGMENT_DIR);
        fs::create_dir_all(&seg_dir).map_err(io(&seg_dir))?;
        let signer = Signer::load_or_create(dir)?;
        let Loaded {
            tree,
            records,
            index,
            scan,
        } = load(dir, &signer.public_key())?;
        if let Some(first) = scan.problems.first() {
            return Err(StoreError::Damaged {
                dir: dir.to_path_buf(),
                first: first.to_string(),
            });
        }
        let pruned = pruned::finish_pruning(dir)?;
        let current_seg = scan.segments.last().copied().unwrap_or(0);
        let path = seg_dir.join(segment::segment_name(current_seg));
        // Never truncate: this is the log.
        let current = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        if let Some((seg, offset)) = scan.torn_tail {
            tracing::warn!(
                segment = seg,
                offset,
                "cutting off an incomplete record left by a crash (never acknowledged)"
            );
            current.set_len(offset).map_err(io(&path))?;
            current.sync_all().map_err(io(&path))?;
        }
        let mut current_len = current.metadata().map_err(io(&path))?.len();
        if current_len == 0 {
            current.write_all_at(HEADER, 0).map_err(io(&path))?;
            current.sync_all().map_err(io(&path))?;
            sync_dir(&seg_dir)?;
            current_len = HEADER.len() as u64;
        }
        tracing::info!(
            records = tree.size(),
            read_on_start = scan.records,
            streams = scan.streams.len(),
            "store opened"
        );
        Ok(Self {
            dir: dir.to_path_buf(),
            segment_max,
            current,
            current_seg,
            current_len,
            readers: HashMap::new(),
            tree,
            records,
            streams: scan.streams,
            index,
            signer,
            policy,
            latest: scan.checkpoints.last().cloned(),
            last_checkpoint_at: Instant::now(),
            buf: Vec::with_capacity(1 << 20),
            pruned_starts: pruned
                .values()
                .map(|p| (p.first_index, p.segment))
                .collect(),
            pruned,
        })
    }

    pub fn len(&self) -> u64 {
        self.tree.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the log ends now (segment, length): what an online `verify` reads up to.
    pub fn end(&self) -> scan::ScanUntil {
        scan::ScanUntil {
            segment: self.current_seg,
            len: self.current_len,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The highest stored sequence of a stream.
    pub fn acked(&self, host: &str, boot: &str) -> Option<u64> {
        self.streams
            .get(&(host.to_string(), boot.to_string()))
            .and_then(|s| s.last_sequence)
    }

    /// Appends a batch of one stream. Lines at or below the stream's highest stored sequence are
    /// duplicates (retries) and skipped. The new records are on disk (fsynced) when this returns.
    /// Each line is read into its record once; `check` vets it (the service checks the host
    /// there).
    pub fn append(
        &mut self,
        host: &str,
        boot: &str,
        first_sequence: u64,
        lines: &[impl AsRef<[u8]>],
        check: impl Fn(&Record) -> Result<(), String>,
    ) -> Result<AppendOutcome, StoreError> {
        let key = (host.to_string(), boot.to_string());
        let mut state = self.streams.get(&key).cloned().unwrap_or_default();
        let mut out = AppendOutcome::default();
        let mut new_leaves = Vec::new();
        let mut new_offsets = Vec::new();
        self.buf.clear();
        if self.current_len >= self.segment_max {
            self.rotate()?;
        }
        let base_index = self.len();
        for (i, line) in lines.iter().enumerate() {
            let line = line.as_ref();
            let sequence = first_sequence + i as u64;
            if state.last_sequence.is_some_and(|last| sequence <= last) {
                out.duplicates += 1;
                continue;
            }
            if line.len() > MAX_LINE {
                return Err(StoreError::BadRecord {
                    sequence,
                    why: format!(
                        "{} bytes is above the {MAX_LINE} byte bound of a record",
                        line.len(),
                    ),
                });
            }
            let record = Record::parse(line).map_err(|e| StoreError::BadRecord {
                sequence,
                why: format!("not a record line: {e}"),
            })?;
            check(&record).map_err(|why| StoreError::BadRecord { sequence, why })?;
            let index = base_index + new_leaves.len() as u64;
            let offset = self.current_len + self.buf.len() as u64;
            let entry = Entry {
                index,
                host,
                boot,
                sequence,
                prev: state.last_leaf,
                line,
            };
            let leaf = entry.encode_frame(&mut self.buf);
            state.last_sequence = Some(sequence);
            state.last_leaf = leaf;
            state.records += 1;
            new_leaves.push(leaf);
            new_offsets.push(offset);
            out.stored.push(StoredRecord {
                index,
                host: host.to_string(),
                boot: boot.to_string(),
                sequence,
                prev: entry.prev,
                record,
                line: line.to_vec(),
            });
        }
        if !self.buf.is_empty() {
            let path = self.segment_path(self.current_seg);
            let written = self
                .current
                .write_all_at(&self.buf, self.current_len)
                .and_then(|()| self.current.sync_data());
            if let Err(e) = written {
                // Leave no partial batch behind: the next append starts where this one did.
                let _ = self.current.set_len(self.current_len);
                return Err(io(&path)(e));
            }
            self.current_len += self.buf.len() as u64;
        }
        for ((rec, leaf), offset) in out.stored.iter().zip(&new_leaves).zip(new_offsets) {
            self.tree.push(*leaf);
            let previous = self.index.add(rec.index, &rec.record);
            self.records.push(record_index::Place {
                segment: self.current_seg,
                offset,
                session_prev: previous.unwrap_or(record_index::NONE),
            });
        }
        out.acked_sequence = state.last_sequence;
        self.streams.insert(key, state);
        // The derived files need no fsync here: a crash leaves the segment as the truth, and a
        // start makes them again from it past the saved state.
        self.tree.flush(false)?;
        self.records.flush(false).map_err(io(self.records.path()))?;
        if self.len() - self.latest.as_ref().map_or(0, |c| c.tree_size) >= self.policy.every_records
        {
            self.checkpoint()?;
        }
        Ok(out)
    }

    fn segment_path(&self, seg: u32) -> PathBuf {
        self.dir.join(SEGMENT_DIR).join(segment::segment_name(seg))
    }

    fn rotate(&mut self) -> Result<(), StoreError> {
        let next = self.current_seg + 1;
        let path = self.segment_path(next);
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.write_all_at(HEADER, 0)
            .and_then(|()| file.sync_all())
            .map_err(io(&path))?;
        sync_dir(&self.dir.join(SEGMENT_DIR))?;
        self.current = file;
        self.current_seg = next;
        self.current_len = HEADER.len() as u64;
        Ok(())
    }

    /// Writes a signed checkpoint of the current tree if it grew since the last one.
    pub fn checkpoint(&mut self) -> Result<Option<Checkpoint>, StoreError> {
        self.last_checkpoint_at = Instant::now();
        if self
            .latest
            .as_ref()
            .is_some_and(|c| c.tree_size == self.len())
            || (self.is_empty() && self.latest.is_none())
        {
            return Ok(None);
        }
        let time = Timestamp::now().to_string();
        let cp = self.signer.sign(self.len(), &self.tree.root(), time);
        let path = self.dir.join(CHECKPOINTS_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let line = serde_json::to_string(&cp).unwrap_or_default();
        file.write_all(format!("{line}\n").as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(io(&path))?;
        self.latest = Some(cp.clone());
        self.save_state()?;
        Ok(Some(cp))
    }

    /// Saves the state a start resumes from: the derived files made durable first, so the
    /// state never names more than they hold.
    fn save_state(&mut self) -> Result<(), StoreError> {
        self.tree.flush(true)?;
        self.records.flush(true).map_err(io(self.records.path()))?;
        let state = SavedState {
            version: SavedState::version(),
            tree_size: self.len(),
            end_segment: self.current_seg,
            end_offset: self.current_len,
            streams: SavedState::saved_streams(&self.streams),
            sessions: self.index.summaries().cloned().collect(),
            host_gaps: self.index.host_gaps().to_vec(),
        };
        let dir = self.dir.join(record_index::INDEX_DIR);
        state.save(&self.dir).map_err(io(&dir))
    }

    /// A checkpoint if the time policy says one is due.
    pub fn checkpoint_if_due(&mut self) -> Result<Option<Checkpoint>, StoreError> {
        if self.last_checkpoint_at.elapsed() >= self.policy.every {
            return self.checkpoint();
        }
        Ok(None)
    }

    pub fn latest_checkpoint(&self) -> Option<&Checkpoint> {
        self.latest.as_ref()
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.signer.public_key()
    }

    pub fn sessions(&self) -> &SessionIndex {
        &self.index
    }

    /// Reads one record back from disk.
    pub fn read(&mut self, index: u64) -> Result<StoredRecord, StoreError> {
        if index >= self.len() {
            return Err(StoreError::NoSuchRecord(index));
        }
        let place = self
            .records
            .get(index)
            .map_err(io(self.records.path()))?
            .ok_or(StoreError::NoSuchRecord(index))?;
        let (seg, offset) = (place.segment, place.offset);
        let path = match self.pruned.get(&seg) {
            // A pruned segment reads from a copy brought back from its archive, if there is one.
            Some(entry) => {
                let restored = pruned::restored_path(&self.dir, seg);
                if !self.readers.contains_key(&seg) && !restored.exists() {
                    return Err(StoreError::Pruned {
                        index,
                        segment: seg,
                        archive: entry.archive.clone(),
                    });
                }
                restored
            }
            None => self.segment_path(seg),
        };
        let file = match self.readers.entry(seg) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(File::open(&path).map_err(io(&path))?)
            }
        };
        let mut len = [0u8; 4];
        file.read_exact_at(&mut len, offset).map_err(io(&path))?;
        let entry_len = u32::from_le_bytes(len) as usize;
        if entry_len > segment::MAX_ENTRY {
            return Err(StoreError::BadRecord {
                sequence: 0,
                why: format!("log index {index}: impossible frame length {entry_len}"),
            });
        }
        let total = 4 + entry_len + 32;
        let mut buf = vec![0u8; total];
        file.read_exact_at(&mut buf, offset).map_err(io(&path))?;
        let frame = segment::decode_frame(&buf).map_err(|e| StoreError::BadRecord {
            sequence: 0,
            why: format!("log index {index} unreadable: {e}"),
        })?;
        let mut stored =
            StoredRecord::from_entry(&frame.entry).map_err(|err| StoreError::BadRecord {
                sequence: frame.entry.sequence,
                why: format!("log index {index} is not a record line: {err}"),
            })?;
        // The place asked for, whatever the entry claims (`verify` reports a mismatch).
        stored.index = index;
        Ok(stored)
    }

    /// A session's records in log order, from the links back from its last record.
    pub fn session_records(&mut self, last_index: u64) -> Result<Vec<StoredRecord>, StoreError> {
        self.session_indexes(last_index)?
            .into_iter()
            .map(|i| self.read(i))
            .collect()
    }

    /// The log indexes of a session's records in log order (pruned ones included).
    pub fn session_indexes(&self, last_index: u64) -> Result<Vec<u64>, StoreError> {
        let mut indexes = vec![last_index];
        loop {
            let at = *indexes.last().unwrap_or(&last_index);
            let place = self
                .records
                .get(at)
                .map_err(io(self.records.path()))?
                .ok_or(StoreError::NoSuchRecord(at))?;
            if place.session_prev == record_index::NONE {
                break;
            }
            if place.session_prev >= at {
                return Err(StoreError::BadRecord {
                    sequence: 0,
                    why: format!(
                        "log index {at}: its session link points forward; rebuild the index (remove index/ and restart)"
                    ),
                });
            }
            indexes.push(place.session_prev);
        }
        indexes.reverse();
        Ok(indexes)
    }

    /// The leaf hash and audit path of a record in the tree of the first `tree_size` records,
    /// from O(log n) stored nodes; None if that tree does not hold it.
    pub fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<Option<(Hash, Vec<Hash>)>, StoreError> {
        if tree_size > self.len() {
            return Ok(None);
        }
        let Some(ranges) = merkle::inclusion_ranges(index, tree_size) else {
            return Ok(None);
        };
        let leaf = self.tree.node(NodeId { level: 0, index })?;
        Ok(Some((leaf, self.prove(&ranges)?)))
    }

    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Option<Vec<Hash>>, StoreError> {
        if new > self.len() {
            return Ok(None);
        }
        let Some(ranges) = merkle::consistency_ranges(old, new) else {
            return Ok(None);
        };
        Ok(Some(self.prove(&ranges)?))
    }

    fn prove(&self, ranges: &[(u64, u64)]) -> Result<Vec<Hash>, StoreError> {
        let nodes: HashMap<NodeId, Hash> = merkle::nodes_for(ranges)
            .into_iter()
            .map(|id| self.tree.node(id).map(|h| (id, h)))
            .collect::<Result<_, _>>()?;
        Ok(merkle::assemble(ranges, |id| nodes.get(&id).copied()).unwrap_or_default())
    }
}

/// What a start reads.
struct Loaded {
    tree: TreeFiles,
    records: RecordIndex,
    index: SessionIndex,
    scan: Scan,
}

/// The indexes from the saved state and the records after it; else from the whole log.
fn load(dir: &Path, key: &[u8]) -> Result<Loaded, StoreError> {
    if let Some(saved) = SavedState::load(dir)
        && let Some(loaded) = resume(dir, key, saved)?
    {
        return Ok(loaded);
    }
    tracing::info!(dir = %dir.display(), "reading the whole log to index it");
    TreeFiles::remove(dir)?;
    let mut loaded = Loaded {
        tree: TreeFiles::open(dir, 0)?,
        records: RecordIndex::create(dir).map_err(io(dir))?,
        index: SessionIndex::default(),
        scan: Scan::default(),
    };
    let mut failed = None;
    loaded.scan = scan::scan(dir, Some(key), |v| loaded.index_record(v, &mut failed))?;
    finish(loaded, failed)
}

fn resume(dir: &Path, key: &[u8], saved: SavedState) -> Result<Option<Loaded>, StoreError> {
    let Some(streams) = saved.streams() else {
        return Ok(None);
    };
    let tree = match TreeFiles::open(dir, saved.tree_size) {
        Ok(t) => t,
        Err(TreeError::Short { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(records) = RecordIndex::open(dir, saved.tree_size).map_err(io(dir))? else {
        return Ok(None);
    };
    let from = ScanFrom {
        segment: saved.end_segment,
        offset: saved.end_offset,
        frontier: tree.frontier().clone(),
        streams,
    };
    let mut loaded = Loaded {
        tree,
        records,
        index: SessionIndex::from_summaries(saved.sessions, saved.host_gaps),
        scan: Scan::default(),
    };
    let mut failed = None;
    loaded.scan = scan::scan_part(dir, Some(key), Some(from), None, |v| {
        loaded.index_record(v, &mut failed);
    })?;
    finish(loaded, failed).map(Some)
}

fn finish(mut loaded: Loaded, failed: Option<StoreError>) -> Result<Loaded, StoreError> {
    if let Some(e) = failed {
        return Err(e);
    }
    loaded.tree.flush(false)?;
    let path = loaded.records.path().to_path_buf();
    loaded.records.flush(false).map_err(io(&path))?;
    Ok(loaded)
}

impl Loaded {
    fn index_record(&mut self, v: &Visit<'_>, failed: &mut Option<StoreError>) {
        // A pruned record keeps its place in the tree; sessions no longer list it.
        let previous = match v.entry.map(|e| Record::parse(e.line)) {
            Some(Ok(record)) => self.index.add(v.index, &record),
            _ => None,
        };
        self.records.push(record_index::Place {
            segment: v.segment,
            offset: v.offset,
            session_prev: previous.unwrap_or(record_index::NONE),
        });
        self.tree.push(v.leaf);
        // Keep what waits to be written small on a long read.
        if v.index % 65_536 == 65_535 {
            if let Err(e) = self.tree.flush(false) {
                failed.get_or_insert(e.into());
            }
            if let Err(e) = self.records.flush(false) {
                failed.get_or_insert(io(self.records.path())(e));
            }
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests;
