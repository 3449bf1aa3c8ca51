//! The embedded store: an append-only log of segment files under the data directory, every
//! record stored once, with the integrity structures (see `segment` for the format, `scan` for
//! the checks) and the session index. Appends are written as one buffer per batch and fsynced
//! before the batch is acknowledged.
pub mod index;
pub mod integrity;
pub mod scan;
pub mod segment;

use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions},
    io::Write as _,
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use index::SessionIndex;
use recorder_record::{MAX_LINE, Record, Timestamp};
use scan::{CHECKPOINTS_FILE, SEGMENT_DIR, ScanError, StreamState};
use segment::{Entry, HEADER};

use crate::integrity::{
    Hash,
    checkpoint::{Checkpoint, CheckpointError, Signer},
    merkle::{self, Frontier},
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
    leaves: Vec<Hash>,
    positions: Vec<(u32, u64)>,
    frontier: Frontier,
    streams: HashMap<(String, String), StreamState>,
    index: SessionIndex,
    signer: Signer,
    policy: CheckpointPolicy,
    latest: Option<Checkpoint>,
    last_checkpoint_at: Instant,
    buf: Vec<u8>,
}

impl Store {
    /// Opens (or creates) the store in `dir`, checking the whole log first. A log that fails any
    /// check is refused; an incomplete last record (a crash in the middle of a write, so never
    /// acknowledged) is cut off.
    pub fn open(
        dir: &Path,
        segment_max: u64,
        policy: CheckpointPolicy,
    ) -> Result<Self, StoreError> {
        let seg_dir = dir.join(SEGMENT_DIR);
        fs::create_dir_all(&seg_dir).map_err(io(&seg_dir))?;
        let signer = Signer::load_or_create(dir)?;
        let mut index = SessionIndex::default();
        let scan = scan::scan(dir, Some(&signer.public_key()), |i, entry| {
            if let Ok(record) = Record::parse(entry.line) {
                index.add(i, &record);
            }
        })?;
        if let Some(first) = scan.problems.first() {
            return Err(StoreError::Damaged {
                dir: dir.to_path_buf(),
                first: first.to_string(),
            });
        }
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
        let mut frontier = Frontier::default();
        for leaf in &scan.leaves {
            frontier.push(*leaf);
        }
        tracing::info!(
            records = scan.leaves.len(),
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
            leaves: scan.leaves,
            positions: scan.positions,
            frontier,
            streams: scan.streams,
            index,
            signer,
            policy,
            latest: scan.checkpoints.last().cloned(),
            last_checkpoint_at: Instant::now(),
            buf: Vec::with_capacity(1 << 20),
        })
    }

    pub fn len(&self) -> u64 {
        self.leaves.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
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
        let mut new_positions = Vec::new();
        self.buf.clear();
        if self.current_len >= self.segment_max {
            self.rotate()?;
        }
        let base_index = self.leaves.len() as u64;
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
            new_positions.push((self.current_seg, offset));
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
        for (rec, leaf) in out.stored.iter().zip(&new_leaves) {
            self.frontier.push(*leaf);
            self.index.add(rec.index, &rec.record);
        }
        self.leaves.extend(new_leaves);
        self.positions.extend(new_positions);
        out.acked_sequence = state.last_sequence;
        self.streams.insert(key, state);
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
        let cp = self.signer.sign(self.len(), &self.frontier.root(), time);
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
        Ok(Some(cp))
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
        let &(seg, offset) = self
            .positions
            .get(index as usize)
            .ok_or(StoreError::NoSuchRecord(index))?;
        let path = self.segment_path(seg);
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
        let e = frame.entry;
        let record = Record::parse(e.line).map_err(|err| StoreError::BadRecord {
            sequence: e.sequence,
            why: format!("log index {index} is not a record line: {err}"),
        })?;
        Ok(StoredRecord {
            index,
            host: e.host.to_string(),
            boot: e.boot.to_string(),
            sequence: e.sequence,
            prev: e.prev,
            record,
            line: e.line.to_vec(),
        })
    }

    /// The audit path of a record in the tree of the first `tree_size` records.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Option<(Hash, Vec<Hash>)> {
        let leaves = self.leaves.get(..tree_size as usize)?;
        Some((
            *leaves.get(index as usize)?,
            merkle::inclusion_proof(leaves, index)?,
        ))
    }

    pub fn consistency_proof(&self, old: u64, new: u64) -> Option<Vec<Hash>> {
        merkle::consistency_proof(self.leaves.get(..new as usize)?, old)
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests;
