//! The agent's spool: a write-ahead log of every record before it is sent, so a collector that is
//! down, slow or restarting costs only delay. Records get consecutive sequence numbers that
//! persist across restarts (a segment's file name is the first sequence it holds); segments are
//! deleted only once the collector acknowledged everything in them. The size is bounded: a full
//! spool drops new records and, once there is room again, writes a `loss` record with the count.
//!
//! The writer side (`Spool::append`, `Spool::flush`) runs in the agent's pipeline; the shipper
//! reads durable records through a `Cursor` and calls `ack`. They share the segment list.
pub mod frame;

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{Read as _, Write as _},
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use recorder_api::metrics::{Counter, Gauge, Registry};
use recorder_record::{Body, Loss, MAX_LINE, Notice, Record, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spool {path}: the stream file is damaged ({why})")]
    Stream { path: PathBuf, why: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

const STREAM_FILE: &str = "stream";
/// The sequence after the last acknowledged one, rewritten (atomically) on every acknowledgement.
const ACKED_FILE: &str = "acked";
/// Segments are closed at this size so acknowledged data is freed in steps.
pub const DEFAULT_SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
struct Segment {
    first: u64,
    path: PathBuf,
    /// Bytes known to be on disk (fsynced for the open segment).
    durable_len: u64,
    /// Sequence after the last durable record.
    durable_next: u64,
}

#[derive(Debug)]
struct Shared {
    segments: VecDeque<Segment>,
    acked_next: u64,
    total_bytes: u64,
}

struct Metrics {
    records: Gauge,
    bytes: Gauge,
    dropped: Counter,
    acked: Counter,
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::global();
        Self {
            records: r.gauge(
                "recorder_spool_records",
                "Records in the spool not yet acknowledged by the collector.",
                &[],
            ),
            bytes: r.gauge("recorder_spool_bytes", "Bytes in the spool.", &[]),
            dropped: r.counter(
                "recorder_spool_dropped_total",
                "Records dropped because the spool was full.",
                &[],
            ),
            acked: r.counter(
                "recorder_spool_acked_total",
                "Records acknowledged as stored by the collector.",
                &[],
            ),
        }
    }
}

/// The writer's handle.
pub struct Spool {
    dir: PathBuf,
    host: String,
    boot: String,
    max_bytes: u64,
    segment_bytes: u64,
    shared: Arc<Mutex<Shared>>,
    file: File,
    /// Bytes appended but not yet written/fsynced to `file`.
    pending: Vec<u8>,
    file_len: u64,
    next_seq: u64,
    dropped: u64,
    notify: Arc<tokio::sync::Notify>,
    metrics: Metrics,
}

/// What `open` found wrong and repaired, as `notice` records already appended to the spool.
pub type Recovered = Vec<String>;

impl Spool {
    /// Opens the spool in `dir` (creating it), recovering every valid record. A damaged segment
    /// is cut after its last valid record (the unreadable bytes are kept beside it as
    /// `NAME.corrupt`) and a `notice` record with reason `spool_corrupt` is appended.
    pub fn open(dir: &Path, host: &str, max_bytes: u64) -> Result<(Self, Recovered), SpoolError> {
        Self::open_with(dir, host, max_bytes, DEFAULT_SEGMENT_BYTES)
    }

    pub fn open_with(
        dir: &Path,
        host: &str,
        max_bytes: u64,
        segment_bytes: u64,
    ) -> Result<(Self, Recovered), SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let boot = stream_id(dir)?;
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(first) = name
                .strip_suffix(".wal")
                .and_then(|n| n.parse::<u64>().ok())
            {
                names.push((first, entry.path()));
            }
        }
        names.sort();
        let mut problems = Vec::new();
        let mut segments = VecDeque::new();
        let mut next_seq = 1u64;
        let mut total = 0u64;
        for (first, path) in names {
            let (valid_len, next, problem) = recover_segment(&path, first)?;
            if let Some(p) = problem {
                problems.push(p);
            }
            next_seq = next_seq.max(next).max(first);
            total += valid_len;
            segments.push_back(Segment {
                first,
                path,
                durable_len: valid_len,
                durable_next: next.max(first),
            });
        }
        // What the collector acknowledged before (an optimisation: without it, the collector
        // recognises the resent records as duplicates).
        let persisted = fs::read_to_string(dir.join(ACKED_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let acked_next = segments
            .front()
            .map_or(next_seq, |s| s.first)
            .max(persisted)
            .min(next_seq);
        // Always write into a fresh segment: the old ones stay as found.
        let path = dir.join(format!("{next_seq:020}.wal"));
        let file = create_segment(&path)?;
        total += frame::HEADER.len() as u64;
        segments.push_back(Segment {
            first: next_seq,
            path,
            durable_len: frame::HEADER.len() as u64,
            durable_next: next_seq,
        });
        let mut shared = Shared {
            segments,
            acked_next,
            total_bytes: total,
        };
        prune(&mut shared)?;
        let shared = Arc::new(Mutex::new(shared));
        let mut spool = Self {
            dir: dir.to_path_buf(),
            host: host.to_string(),
            boot,
            max_bytes,
            segment_bytes,
            shared,
            file,
            pending: Vec::with_capacity(256 * 1024),
            file_len: frame::HEADER.len() as u64,
            next_seq,
            dropped: 0,
            notify: Arc::new(tokio::sync::Notify::new()),
            metrics: Metrics::new(),
        };
        for detail in &problems {
            tracing::warn!(%detail, "spool damaged; recovered what was valid");
            let notice = spool.report(Body::Notice(Notice {
                reason: "spool_corrupt".into(),
                detail: detail.clone(),
                cgroup: None,
            }));
            spool.append(notice.to_line().as_bytes())?;
        }
        spool.flush()?;
        Ok((spool, problems))
    }

    /// The sequence stream id (`boot` on the wire).
    pub fn boot(&self) -> &str {
        &self.boot
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The reader side for the sender.
    pub fn reader(&self) -> SpoolReader {
        SpoolReader {
            dir: self.dir.clone(),
            shared: self.shared.clone(),
            notify: self.notify.clone(),
            acked: self.metrics.acked.clone(),
        }
    }

    /// The next sequence number to be given.
    pub fn next_sequence(&self) -> u64 {
        self.next_seq
    }

    /// A record about the spool itself (no process).
    fn report(&self, body: Body) -> Record {
        Record {
            time: Timestamp::now(),
            host: self.host.clone(),
            identity: String::new(),
            session: String::new(),
            pid: 0,
            exec_id: String::new(),
            workload: None,
            redacted: Vec::new(),
            body,
        }
    }

    /// A `loss` record: `count` records dropped for `reason`.
    fn loss(&self, reason: &str, count: u64) -> Record {
        self.report(Body::Loss(Loss {
            count,
            lost_kind: None,
            reason: reason.into(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends one record line; it is durable after the next `flush`. Returns false if the spool
    /// is full and the record was dropped (counted, and reported by a later `loss` record).
    pub fn append(&mut self, line: &[u8]) -> Result<bool, SpoolError> {
        if line.len() > MAX_LINE {
            // Larger than any frame the spool or the collector accepts: report it, keep going.
            tracing::warn!(
                bytes = line.len(),
                "record too large to ship; a loss record says so"
            );
            self.metrics.dropped.inc();
            let loss = self.loss("record_too_large", 1);
            return self.append(loss.to_line().as_bytes()).map(|_| false);
        }
        let need = (frame::OVERHEAD + line.len()) as u64;
        let used = self.lock().total_bytes + self.pending.len() as u64;
        if self.dropped > 0 {
            let loss = self.loss("spool_full", self.dropped);
            let loss_line = loss.to_line();
            if used + need + (frame::OVERHEAD + loss_line.len()) as u64 > self.max_bytes {
                self.dropped += 1;
                self.metrics.dropped.inc();
                return Ok(false);
            }
            tracing::warn!(
                count = self.dropped,
                "spool had been full; records were dropped"
            );
            self.dropped = 0;
            self.push(loss_line.as_bytes())?;
        } else if used + need > self.max_bytes {
            self.dropped += 1;
            self.metrics.dropped.inc();
            return Ok(false);
        }
        self.push(line)?;
        Ok(true)
    }

    fn push(&mut self, line: &[u8]) -> Result<(), SpoolError> {
        if self.file_len + self.pending.len() as u64 >= self.segment_bytes {
            self.rotate()?;
        }
        frame::encode(self.next_seq, line, &mut self.pending);
        self.next_seq += 1;
        if self.pending.len() >= 1024 * 1024 {
            self.write_pending(false)?;
        }
        Ok(())
    }

    /// Writes buffered frames; with `sync`, fsyncs and publishes them to the sender.
    fn write_pending(&mut self, sync: bool) -> Result<(), SpoolError> {
        let path = self
            .lock()
            .segments
            .back()
            .map(|s| s.path.clone())
            .unwrap_or_default();
        if !self.pending.is_empty() {
            self.file
                .write_all_at(&self.pending, self.file_len)
                .map_err(io(&path))?;
            let n = self.pending.len() as u64;
            self.file_len += n;
            self.lock().total_bytes += n;
            self.pending.clear();
        }
        if sync {
            self.file.sync_data().map_err(io(&path))?;
            let mut shared = self.lock();
            if let Some(seg) = shared.segments.back_mut() {
                seg.durable_len = self.file_len;
                seg.durable_next = self.next_seq;
            }
            let records = self.next_seq - shared.acked_next;
            let bytes = shared.total_bytes;
            drop(shared);
            self.metrics.records.set(records);
            self.metrics.bytes.set(bytes);
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Makes everything appended durable and visible to the sender. If records were dropped and
    /// there is room again, the `loss` record is written first.
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        if self.dropped > 0 {
            let loss = self.loss("spool_full", self.dropped).to_line();
            let used = self.lock().total_bytes + self.pending.len() as u64;
            if used + (frame::OVERHEAD + loss.len()) as u64 <= self.max_bytes {
                tracing::warn!(
                    count = self.dropped,
                    "spool had been full; records were dropped"
                );
                self.dropped = 0;
                self.push(loss.as_bytes())?;
            }
        }
        self.write_pending(true)
    }

    fn rotate(&mut self) -> Result<(), SpoolError> {
        self.write_pending(true)?;
        let path = self.dir.join(format!("{:020}.wal", self.next_seq));
        self.file = create_segment(&path)?;
        self.file_len = frame::HEADER.len() as u64;
        let mut shared = self.lock();
        shared.total_bytes += self.file_len;
        shared.segments.push_back(Segment {
            first: self.next_seq,
            path,
            durable_len: frame::HEADER.len() as u64,
            durable_next: self.next_seq,
        });
        Ok(())
    }
}

impl Drop for Spool {
    /// What was appended reaches the disk even if the pipeline stops without a last flush.
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "cannot flush the spool on shutdown");
        }
    }
}

fn create_segment(path: &Path) -> Result<File, SpoolError> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .read(true)
        .open(path)
        .map_err(io(path))?;
    file.write_all(frame::HEADER)
        .and_then(|()| file.sync_all())
        .map_err(io(path))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(file)
}

/// The spool's stream id, drawn at random when the spool is created.
fn stream_id(dir: &Path) -> Result<String, SpoolError> {
    let path = dir.join(STREAM_FILE);
    match fs::read_to_string(&path) {
        Ok(s) => {
            let id = s.trim().to_string();
            if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(SpoolError::Stream {
                    path,
                    why: format!("{id:?} is not a stream id"),
                });
            }
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut raw = [0u8; 16];
            File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut raw))
                .map_err(io(Path::new("/dev/urandom")))?;
            let id = recorder_record::hex::encode(&raw);
            let tmp = dir.join("stream.tmp");
            fs::write(&tmp, format!("{id}\n"))
                .and_then(|()| fs::rename(&tmp, &path))
                .map_err(io(&path))?;
            Ok(id)
        }
        Err(e) => Err(io(&path)(e)),
    }
}

/// Checks a segment, cutting it after its last valid frame. Returns (valid length, sequence
/// after the last valid record, what was wrong).
fn recover_segment(path: &Path, first: u64) -> Result<(u64, u64, Option<String>), SpoolError> {
    let data = fs::read(path).map_err(io(path))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if data.len() < frame::HEADER.len() || &data[..frame::HEADER.len()] != frame::HEADER {
        if data.is_empty() {
            return Ok((0, first, None));
        }
        keep_corrupt(path, &data)?;
        fs::write(path, frame::HEADER).map_err(io(path))?;
        return Ok((
            frame::HEADER.len() as u64,
            first,
            Some(format!(
                "segment {name}: bad header; {} bytes unreadable, 0 records recovered",
                data.len()
            )),
        ));
    }
    let mut offset = frame::HEADER.len();
    let mut next = first;
    let mut records = 0u64;
    while offset < data.len() {
        match frame::decode(&data[offset..]) {
            Ok((seq, _, n)) if seq >= next => {
                next = seq + 1;
                offset += n;
                records += 1;
            }
            result => {
                let why = match result {
                    Ok((seq, _, _)) => format!("sequence {seq} out of order"),
                    Err(e) => e.to_string(),
                };
                keep_corrupt(path, &data[offset..])?;
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io(path))?;
                file.set_len(offset as u64)
                    .and_then(|()| file.sync_all())
                    .map_err(io(path))?;
                let detail = format!(
                    "segment {name}: record after sequence {} at byte {offset} unreadable ({why}); {} bytes cut, {records} records recovered",
                    next.saturating_sub(1),
                    data.len() - offset
                );
                // The cut bytes may have held records whose sequence numbers were already sent;
                // skip past every number they could have held so none is ever reused.
                let skip = ((data.len() - offset) / frame::OVERHEAD) as u64 + 1;
                return Ok((offset as u64, next + skip, Some(detail)));
            }
        }
    }
    Ok((offset as u64, next, None))
}

fn keep_corrupt(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".corrupt");
    let dest = PathBuf::from(name);
    fs::write(&dest, bytes).map_err(io(&dest))
}

/// Consecutive records read for sending: (first sequence, lines).
pub type Batch = (u64, Vec<Vec<u8>>);

/// Deletes the segments whose records are all acknowledged (never the one being written).
fn prune(shared: &mut Shared) -> Result<(), SpoolError> {
    while shared.segments.len() > 1 {
        let done = shared
            .segments
            .get(1)
            .is_some_and(|next| next.first <= shared.acked_next);
        if !done {
            break;
        }
        let Some(seg) = shared.segments.pop_front() else {
            break;
        };
        match fs::remove_file(&seg.path) {
            Ok(()) => shared.total_bytes = shared.total_bytes.saturating_sub(seg.durable_len),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                shared.segments.push_front(seg.clone());
                return Err(io(&seg.path)(e));
            }
        }
    }
    Ok(())
}

/// Where the sender is in the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub next: u64,
    /// Where `next` starts: (segment's first sequence, byte offset), so reading goes on from
    /// there instead of from the segment's start.
    at: Option<(u64, u64)>,
}

/// The sender's handle: reads durable records, acknowledges them.
#[derive(Clone)]
pub struct SpoolReader {
    dir: PathBuf,
    shared: Arc<Mutex<Shared>>,
    notify: Arc<tokio::sync::Notify>,
    acked: Counter,
}

impl SpoolReader {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A cursor at the first record not yet acknowledged.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            next: self.lock().acked_next,
            at: None,
        }
    }

    /// Wakes when the writer made new records durable.
    pub fn notify(&self) -> Arc<tokio::sync::Notify> {
        self.notify.clone()
    }

    /// The sequence after the last durable record.
    pub fn durable_next(&self) -> u64 {
        self.lock().segments.back().map_or(0, |s| s.durable_next)
    }

    pub fn acked_next(&self) -> u64 {
        self.lock().acked_next
    }

    /// Up to `max_records` / about `max_bytes` durable records from the cursor, as (first
    /// sequence, lines). Sequences are consecutive within a batch; a gap (records lost to spool
    /// damage) ends the batch, and the next one starts after the gap.
    pub fn read(
        &self,
        cursor: &mut Cursor,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Option<Batch>, SpoolError> {
        let segments: Vec<Segment> = self.lock().segments.iter().cloned().collect();
        let mut lines = Vec::new();
        let mut first = None;
        let mut bytes = 0usize;
        for seg in &segments {
            if seg.durable_next <= cursor.next {
                continue;
            }
            if cursor.next < seg.first {
                if first.is_some() {
                    break;
                }
                cursor.next = seg.first;
            }
            let start = match cursor.at {
                Some((seg_first, offset))
                    if seg_first == seg.first && offset <= seg.durable_len =>
                {
                    offset
                }
                _ => frame::HEADER.len() as u64,
            };
            let file = File::open(&seg.path).map_err(io(&seg.path))?;
            let mut data = vec![0u8; (seg.durable_len - start) as usize];
            file.read_exact_at(&mut data, start)
                .map_err(io(&seg.path))?;
            let mut offset = 0;
            while offset < data.len() && lines.len() < max_records && bytes < max_bytes {
                let Ok((seq, line, n)) = frame::decode(&data[offset..]) else {
                    break;
                };
                if seq < cursor.next {
                    offset += n;
                    continue;
                }
                if let Some(f) = first
                    && seq != f + lines.len() as u64
                {
                    cursor.at = Some((seg.first, start + offset as u64));
                    return Ok(Some((f, lines)));
                }
                offset += n;
                first.get_or_insert(seq);
                bytes += line.len();
                lines.push(line.to_vec());
                cursor.next = seq + 1;
            }
            cursor.at = Some((seg.first, start + offset as u64));
            if lines.len() >= max_records || bytes >= max_bytes {
                break;
            }
        }
        Ok(first.map(|f| (f, lines)))
    }

    /// The collector stored everything up to `sequence`: delete the segments it covers (never the
    /// one being written).
    pub fn ack(&self, sequence: u64) -> Result<(), SpoolError> {
        let mut shared = self.lock();
        if sequence >= shared.acked_next {
            self.acked.add(sequence + 1 - shared.acked_next);
            shared.acked_next = sequence + 1;
            let tmp = self.dir.join("acked.tmp");
            let path = self.dir.join(ACKED_FILE);
            fs::write(&tmp, format!("{}\n", shared.acked_next))
                .and_then(|()| fs::rename(&tmp, &path))
                .map_err(io(&path))?;
        }
        prune(&mut shared)
    }

    /// Records durable but not acknowledged.
    pub fn depth(&self) -> u64 {
        let shared = self.lock();
        shared
            .segments
            .back()
            .map_or(0, |s| s.durable_next)
            .saturating_sub(shared.acked_next)
    }
}

#[cfg(test)]
mod tests;
