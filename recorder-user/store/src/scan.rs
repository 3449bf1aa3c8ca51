//! Reads the log back and checks it: frames, stored leaf hashes, log indexes, the hash chain of
//! every (host, boot) stream, and every signed checkpoint against the Merkle tree of the records
//! below it. `verify` reads it all and prints what it finds; the collector, on start, reads
//! only what was appended after its last saved state ([`ScanFrom`]) and refuses a damaged
//! log; an online `verify` stops where the log ended when it began ([`ScanUntil`]), so ingest
//! goes on meanwhile. Memory stays flat: the tree is a frontier, not the leaves.
use std::{
    collections::HashMap,
    fmt, fs,
    path::{Path, PathBuf},
};

use recorder_record::hex;

use crate::{
    integrity::{
        Hash,
        checkpoint::{Checkpoint, PUBLIC_KEY_FILE},
        merkle::Frontier,
    },
    pruned::{self, PRUNED_DIR, PrunedSegment},
    segment::{self, Entry, Frame, FrameError, HEADER},
};

pub const SEGMENT_DIR: &str = "segments";
pub const CHECKPOINTS_FILE: &str = "checkpoints.jsonl";

/// Where a record is: segment file, record number within it, byte offset, log index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub segment: String,
    /// The record's number in its segment (None when a scan began inside the segment).
    pub record: Option<u64>,
    pub offset: u64,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.record {
            Some(record) => write!(
                f,
                "{}/{} record {record} (byte offset {})",
                SEGMENT_DIR, self.segment, self.offset
            ),
            None => write!(
                f,
                "{}/{} byte offset {}",
                SEGMENT_DIR, self.segment, self.offset
            ),
        }
    }
}

/// One thing found wrong, worded for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem(pub String);

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The state of one (host, boot) stream after the scan.
#[derive(Debug, Clone, Default)]
pub struct StreamState {
    pub last_sequence: Option<u64>,
    pub last_leaf: Hash,
    pub records: u64,
}

/// Where a scan starts when it does not start at the beginning: the end of the log as a saved
/// state knew it, with the tree and the streams as they were there.
#[derive(Debug, Clone)]
pub struct ScanFrom {
    pub segment: u32,
    pub offset: u64,
    pub frontier: Frontier,
    pub streams: HashMap<(String, String), StreamState>,
}

/// Where a scan stops: the end of the log when an online `verify` began.
#[derive(Debug, Clone, Copy)]
pub struct ScanUntil {
    pub segment: u32,
    pub len: u64,
}

/// One record as the scan reads it.
pub struct Visit<'a> {
    pub index: u64,
    /// None for a record of a pruned segment: only its leaf hash is left.
    pub entry: Option<&'a Entry<'a>>,
    /// Its leaf hash, recomputed from the entry.
    pub leaf: Hash,
    pub segment: u32,
    pub offset: u64,
}

/// The log as found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Records read (from the start, or from `ScanFrom`), pruned ones included.
    pub records: u64,
    /// Of them, records of pruned segments (their leaf hashes only).
    pub pruned_records: u64,
    /// The pruned segments met, as their signed ledger entries say.
    pub pruned: Vec<PrunedSegment>,
    /// The tree of every record up to where the scan ended.
    pub frontier: Frontier,
    /// Where the log ends: segment number and length.
    pub end: (u32, u64),
    pub streams: HashMap<(String, String), StreamState>,
    pub segments: Vec<u32>,
    pub checkpoints: Vec<Checkpoint>,
    pub problems: Vec<Problem>,
    /// An incomplete last frame at the end of the last segment (segment, offset): what a crash
    /// in the middle of a write leaves. It was never acknowledged.
    pub torn_tail: Option<(u32, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a collector data directory (no {SEGMENT_DIR}/ in it)")]
    NotADataDir(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ScanError + '_ {
    move |source| ScanError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The segment numbers present, in order.
pub fn list_segments(dir: &Path) -> Result<Vec<u32>, ScanError> {
    let seg_dir = dir.join(SEGMENT_DIR);
    if !seg_dir.is_dir() {
        return Err(ScanError::NotADataDir(dir.to_path_buf()));
    }
    let mut out = Vec::new();
    for entry in fs::read_dir(&seg_dir).map_err(io(&seg_dir))? {
        let entry = entry.map_err(io(&seg_dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_suffix(".log")
            .and_then(|n| n.parse::<u32>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Scans the data directory from the start. `visit` sees every readable entry (the store
/// builds its indexes from it). `public_key` pins the checkpoint key; by default the one in the
/// data directory is used.
pub fn scan(
    dir: &Path,
    public_key: Option<&[u8]>,
    visit: impl FnMut(&Visit<'_>),
) -> Result<Scan, ScanError> {
    scan_part(dir, public_key, None, None, visit)
}

/// Scans from `from` (the start if None) to `until` (the end if None). Checkpoints above
/// `until` are left out; those below `from` are checked for their signature only.
pub fn scan_part(
    dir: &Path,
    public_key: Option<&[u8]>,
    from: Option<ScanFrom>,
    until: Option<ScanUntil>,
    mut visit: impl FnMut(&Visit<'_>),
) -> Result<Scan, ScanError> {
    let mut out = Scan {
        segments: list_segments(dir)?,
        ..Scan::default()
    };
    if let Some(until) = until {
        out.segments.retain(|&s| s <= until.segment);
    }
    let (start_seg, start_offset) = match &from {
        Some(f) => (f.segment, f.offset),
        None => (0, 0),
    };
    if let Some(f) = from {
        out.frontier = f.frontier;
        out.streams = f.streams;
    }
    let mut roots = RootCheck::load(dir, public_key, &mut out)?;
    roots.at(&mut out);
    let mut ledger = load_pruned(dir, roots.key.as_deref(), &mut out)?;
    let all = all_segments(&mut out, &ledger, until);
    let seg_dir = dir.join(SEGMENT_DIR);
    let mut last_place: HashMap<(String, String), (Place, u64)> = HashMap::new();
    for (si, &seg) in all.iter().enumerate() {
        let is_last = si + 1 == all.len();
        let name = segment::segment_name(seg);
        let path = seg_dir.join(&name);
        if seg < start_seg {
            continue;
        }
        if let Some(entry) = ledger.remove(&seg) {
            let Some(leaves) = read_leaves(dir, &entry, &mut out) else {
                // Without its leaves the tree cannot go on: the rest cannot be checked.
                break;
            };
            if !continue_past_pruned(&mut out, &entry, &leaves, &mut roots, &mut visit) {
                break;
            }
            last_place.retain(|k, _| !entry.streams.iter().any(|s| s.host == k.0 && s.boot == k.1));
            out.pruned.push(entry);
            continue;
        }
        let mut data = fs::read(&path).map_err(io(&path))?;
        if let Some(until) = until
            && until.segment == seg
        {
            data.truncate(until.len as usize);
        }
        out.end = (seg, data.len() as u64);
        if data.len() < HEADER.len() || &data[..HEADER.len()] != HEADER {
            if data.is_empty() && is_last {
                continue;
            }
            out.problems.push(Problem(format!(
                "{SEGMENT_DIR}/{name}: not a log segment (bad header)"
            )));
            continue;
        }
        let mut offset = HEADER.len();
        let mut record = Some(0u64);
        if seg == start_seg && start_offset > offset as u64 {
            offset = start_offset as usize;
            // Records before it in this segment are not counted: the place names the offset.
            record = None;
        }
        while offset < data.len() {
            let place = Place {
                segment: name.clone(),
                record,
                offset: offset as u64,
            };
            let frame = match segment::decode_frame(&data[offset..]) {
                Ok(f) => f,
                Err(FrameError::Truncated { .. }) if is_last => {
                    out.torn_tail = Some((seg, offset as u64));
                    break;
                }
                Err(e) => {
                    out.problems.push(Problem(format!(
                        "{place}: unreadable ({e}); the rest of this segment ({} bytes) cannot be read",
                        data.len() - offset
                    )));
                    break;
                }
            };
            let index = out.frontier.size();
            let leaf = check_record(&mut out, &mut last_place, place, &frame);
            visit(&Visit {
                index,
                entry: Some(&frame.entry),
                leaf,
                segment: seg,
                offset: offset as u64,
            });
            out.frontier.push(leaf);
            out.records += 1;
            roots.at(&mut out);
            offset += frame.len;
            record = record.map(|r| r + 1);
        }
    }
    roots.finish(until.is_some(), &mut out);
    Ok(out)
}

/// Every segment number in order, on disk or pruned (up to `until`); a number missing from both
/// is a problem. A segment both in the ledger and on disk is one whose deletion a crash
/// interrupted: it counts as pruned (the store finishes the deletion at start).
fn all_segments(
    out: &mut Scan,
    ledger: &std::collections::BTreeMap<u32, PrunedSegment>,
    until: Option<ScanUntil>,
) -> Vec<u32> {
    out.segments.retain(|s| !ledger.contains_key(s));
    let mut all: Vec<u32> = out.segments.iter().chain(ledger.keys()).copied().collect();
    all.sort_unstable();
    if let Some(until) = until {
        all.retain(|&s| s <= until.segment);
    }
    for pair in all.windows(2) {
        if pair[0] + 1 != pair[1] {
            out.problems.push(Problem(format!(
                "{SEGMENT_DIR}/{}: missing before it (segment files are numbered without gaps, and no pruned segment has this number)",
                segment::segment_name(pair[1] - 1)
            )));
        }
    }
    all
}

/// The ledger of pruned segments, each entry's signature checked.
fn load_pruned(
    dir: &Path,
    key: Option<&[u8]>,
    out: &mut Scan,
) -> Result<std::collections::BTreeMap<u32, PrunedSegment>, ScanError> {
    let ledger_path = dir.join(PRUNED_DIR).join(pruned::LEDGER_FILE);
    let mut found = std::collections::BTreeMap::new();
    for (line, entry) in pruned::load_ledger(dir).map_err(io(&ledger_path))? {
        let place = format!("{PRUNED_DIR}/{} line {line}", pruned::LEDGER_FILE);
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                out.problems
                    .push(Problem(format!("{place}: unreadable entry ({e})")));
                continue;
            }
        };
        if let Some(key) = key
            && !entry.verify(key)
        {
            out.problems.push(Problem(format!(
                "{place} (segment {}, log index {}..{}): bad signature: the record of this deletion was altered",
                entry.segment, entry.first_index, entry.end_index
            )));
        }
        if found.insert(entry.segment, entry).is_some() {
            out.problems.push(Problem(format!(
                "{place}: a second entry for the same segment"
            )));
        }
    }
    Ok(found)
}

/// A pruned segment's leaf hashes, checked against its ledger entry; None (and a problem) when
/// they cannot be had: the scan cannot go on past it.
fn read_leaves(dir: &Path, entry: &PrunedSegment, out: &mut Scan) -> Option<Vec<Hash>> {
    let place = format!(
        "the ledger entry of pruned segment {} ({PRUNED_DIR}/{})",
        entry.segment,
        pruned::LEDGER_FILE
    );
    let path = pruned::leaves_path(dir, entry.segment);
    match fs::read(&path) {
        Ok(bytes) if pruned::sha256_hex(&bytes) != entry.leaves_sha256 => {
            out.problems.push(Problem(format!(
                "{}: changed since the segment was pruned (its hash differs from {place})",
                path.display()
            )));
            None
        }
        Ok(bytes) => match pruned::parse_leaves(&bytes) {
            Some(l) if l.len() as u64 == entry.records() => Some(l),
            _ => {
                out.problems.push(Problem(format!(
                    "{}: holds {} bytes, not the {} leaf hashes of {place}",
                    path.display(),
                    bytes.len(),
                    entry.records()
                )));
                None
            }
        },
        Err(e) => {
            out.problems.push(Problem(format!(
                "{}: {e}; the tree cannot be checked past log index {}",
                path.display(),
                entry.first_index
            )));
            None
        }
    }
}

/// Carries the tree and the streams across a pruned segment: its leaves extend the tree (so
/// every checkpoint is still checked against a full tree), its streams' ends continue their
/// chains. False if it does not start where the log is (the scan cannot go on).
fn continue_past_pruned(
    out: &mut Scan,
    entry: &PrunedSegment,
    leaves: &[Hash],
    roots: &mut RootCheck,
    visit: &mut impl FnMut(&Visit<'_>),
) -> bool {
    let place = format!(
        "pruned segment {} (log index {}..{})",
        entry.segment, entry.first_index, entry.end_index
    );
    if entry.first_index != out.frontier.size() {
        out.problems.push(Problem(format!(
            "{place}: starts at log index {} but the log before it ends at {}",
            entry.first_index,
            out.frontier.size()
        )));
        return false;
    }
    for s in &entry.streams {
        let key = (s.host.clone(), s.boot.clone());
        let state = out.streams.entry(key).or_default();
        if hex::encode(&state.last_leaf) != s.first_prev
            || state
                .last_sequence
                .is_some_and(|last| s.first_sequence <= last)
        {
            out.problems.push(Problem(format!(
                "{place}, host {} stream {}: its chain does not continue from the stream's previous record",
                s.host, s.boot
            )));
        }
        state.last_sequence = Some(s.last_sequence);
        state.last_leaf = hex::decode(&s.last_leaf)
            .and_then(|h| h.try_into().ok())
            .unwrap_or_default();
        state.records += s.records;
    }
    for leaf in leaves {
        visit(&Visit {
            index: out.frontier.size(),
            entry: None,
            leaf: *leaf,
            segment: entry.segment,
            offset: 0,
        });
        out.frontier.push(*leaf);
        out.records += 1;
        out.pruned_records += 1;
        roots.at(out);
    }
    true
}

/// Checks the record at `place` against what the scan has seen before it (its stored leaf hash,
/// its log index, its stream's hash chain and sequence), noting each problem, and moves its
/// stream on to it. Returns its leaf hash.
fn check_record(
    out: &mut Scan,
    last_place: &mut HashMap<(String, String), (Place, u64)>,
    place: Place,
    frame: &Frame<'_>,
) -> Hash {
    let entry = &frame.entry;
    let index = out.frontier.size();
    let leaf = frame.computed_leaf();
    let stream = format!(
        "host {} stream {} sequence {}",
        entry.host, entry.boot, entry.sequence
    );
    if leaf != frame.stored_leaf {
        out.problems.push(Problem(format!(
            "{place}, log index {index}, {stream}: content changed (it no longer matches its stored hash)"
        )));
    }
    if entry.index != index {
        out.problems.push(Problem(format!(
            "{place}, {stream}: says it is log index {} but is at log index {index} (records deleted, inserted or reordered before it)",
            entry.index
        )));
    }
    let key = (entry.host.to_string(), entry.boot.to_string());
    let state = out.streams.entry(key.clone()).or_default();
    if entry.prev != state.last_leaf {
        let before = match last_place.get(&key) {
            Some((p, s)) => format!(
                "the stream's previous stored record (sequence {s}, {p}) hashes to {}",
                short(&state.last_leaf)
            ),
            None if state.records == 0 => "it is the first stored record of its stream".to_string(),
            None => format!(
                "the stream's previous stored record hashes to {}",
                short(&state.last_leaf)
            ),
        };
        out.problems.push(Problem(format!(
            "{place}, log index {index}, {stream}: hash chain broken: it links to {}, but {before} (records deleted, changed or reordered)",
            short(&entry.prev)
        )));
    }
    if let Some(prev_seq) = state.last_sequence
        && entry.sequence <= prev_seq
    {
        out.problems.push(Problem(format!(
            "{place}, log index {index}, {stream}: sequence not after the stream's previous one ({prev_seq})"
        )));
    }
    state.last_sequence = Some(entry.sequence);
    state.last_leaf = leaf;
    state.records += 1;
    last_place.insert(key, (place, entry.sequence));
    leaf
}

/// The first 8 bytes of a hash, enough to tell two apart in a message.
fn short(h: &Hash) -> String {
    format!("{}…", hex::encode(&h[..8]))
}

/// The checkpoints, read first and checked as the scan's tree reaches each one's size:
/// signature, growing sizes and times, and the Merkle root of the first `tree_size` records as
/// stored now.
struct RootCheck {
    /// (place in the file, checkpoint), by growing tree size.
    pending: std::collections::VecDeque<(String, Checkpoint)>,
    /// The checkpoint key, which signs the ledger of pruned segments too.
    key: Option<Vec<u8>>,
}

impl RootCheck {
    fn load(dir: &Path, public_key: Option<&[u8]>, out: &mut Scan) -> Result<Self, ScanError> {
        let path = dir.join(CHECKPOINTS_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(&path)(e)),
        };
        let key = match public_key {
            Some(k) => Some(k.to_vec()),
            None => fs::read_to_string(dir.join(PUBLIC_KEY_FILE))
                .ok()
                .and_then(|s| hex::decode(&s)),
        };
        if key.is_none() && !text.trim().is_empty() {
            out.problems.push(Problem(format!(
                "{PUBLIC_KEY_FILE}: missing or unreadable, checkpoint signatures cannot be checked"
            )));
        }
        let mut pending = std::collections::VecDeque::new();
        let mut prev: Option<Checkpoint> = None;
        for (n, line) in text.lines().enumerate() {
            let place = format!("{CHECKPOINTS_FILE} line {}", n + 1);
            if line.trim().is_empty() {
                continue;
            }
            // A line being written while an online verify reads: not a checkpoint yet.
            if n + 1 == text.lines().count() && !text.ends_with('\n') {
                break;
            }
            let cp: Checkpoint = match serde_json::from_str(line) {
                Ok(cp) => cp,
                Err(e) => {
                    out.problems
                        .push(Problem(format!("{place}: unreadable checkpoint ({e})")));
                    continue;
                }
            };
            if let Some(key) = &key
                && !cp.verify(key)
            {
                out.problems.push(Problem(format!(
                    "{place} (tree size {}): bad signature",
                    cp.tree_size
                )));
            }
            if let Some(p) = &prev
                && (cp.tree_size < p.tree_size || cp.time < p.time)
            {
                out.problems.push(Problem(format!(
                    "{place}: tree size or time goes backwards from the previous checkpoint"
                )));
            }
            prev = Some(cp.clone());
            out.checkpoints.push(cp.clone());
            pending.push_back((place, cp));
        }
        Ok(Self { pending, key })
    }

    /// Checks the checkpoints of the tree's current size; drops those below it (a scan that
    /// starts at a saved state leaves the older ones to `verify`).
    fn at(&mut self, out: &mut Scan) {
        let tree = &out.frontier;
        let size = tree.size();
        while let Some((place, cp)) = self.pending.front() {
            if cp.tree_size > size {
                break;
            }
            if cp.tree_size == size && Some(tree.root()) != cp.root_hash() {
                out.problems.push(Problem(format!(
                    "{place} (tree size {}, {}): Merkle root differs from the records stored now: a record at log index 0..{} was changed, removed or moved",
                    cp.tree_size,
                    cp.time,
                    cp.tree_size.saturating_sub(1)
                )));
            }
            self.pending.pop_front();
        }
    }

    /// Checkpoints beyond the end: records removed from the end, unless the scan stopped early
    /// on purpose (they were signed after it began).
    fn finish(self, stopped_early: bool, out: &mut Scan) {
        if stopped_early {
            return;
        }
        for (place, cp) in self.pending {
            out.problems.push(Problem(format!(
                "{place}: signed tree size {} but the log holds {} records (records removed from the end)",
                cp.tree_size,
                out.frontier.size()
            )));
        }
    }
}
