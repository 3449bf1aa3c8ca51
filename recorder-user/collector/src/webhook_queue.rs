//! A webhook's queue on disk, so alerts survive a collector killed before it could deliver
//! them: `DATA/webhooks/<id>.queue` holds the bodies, one JSON line each, appended and synced
//! before the push returns; `<id>.delivered` the byte offset delivered up to, replaced
//! atomically after each 2xx. A start resumes from there. Once everything is delivered and the
//! file is large, it is emptied (the file first, then the offset: a crash between the two
//! finds an offset beyond the file and starts from 0, since nothing was pending).
use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{BufRead as _, BufReader, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
};

/// Empty the file once everything is delivered and it is larger than this.
const COMPACT_BYTES: u64 = 1 << 20;

pub(crate) struct DiskQueue {
    file: File,
    path: PathBuf,
    delivered_path: PathBuf,
    /// Offset of the end of the file.
    len: u64,
    /// Bodies not yet delivered, with the offset just past each.
    pending: VecDeque<(u64, Vec<u8>)>,
}

impl DiskQueue {
    /// Opens (or creates) the queue `id` under `dir` with what was not yet delivered.
    pub(crate) fn open(dir: &Path, id: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(format!("{id}.queue"));
        let delivered_path = dir.join(format!("{id}.delivered"));
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(fail)?;
        let len = file.metadata().map_err(fail)?.len();
        let delivered = std::fs::read_to_string(&delivered_path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&d| d <= len)
            .unwrap_or(0);
        file.seek(SeekFrom::Start(delivered)).map_err(fail)?;
        let mut pending = VecDeque::new();
        let mut at = delivered;
        let mut reader = BufReader::new(&file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(fail)?;
            if n == 0 {
                break;
            }
            if line.last() != Some(&b'\n') {
                // A torn last append: it was never acknowledged to anyone, drop it.
                file.set_len(at).map_err(fail)?;
                break;
            }
            at += n as u64;
            line.pop();
            pending.push_back((at, line.clone()));
        }
        Ok(Self {
            file,
            path,
            delivered_path,
            len: at,
            pending,
        })
    }

    /// Appends `body` (one line, no newline inside) and syncs it.
    pub(crate) fn push(&mut self, body: &[u8]) -> Result<(), String> {
        let mut entry = Vec::with_capacity(body.len() + 1);
        entry.extend(body.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
        entry.push(b'\n');
        self.file
            .write_all(&entry)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        self.len += entry.len() as u64;
        entry.pop();
        self.pending.push_back((self.len, entry));
        Ok(())
    }

    pub(crate) fn front(&self) -> Option<&[u8]> {
        self.pending.front().map(|(_, b)| b.as_slice())
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// The front body is delivered (or given up on).
    pub(crate) fn pop(&mut self) -> Result<(), String> {
        let Some((end, _)) = self.pending.pop_front() else {
            return Ok(());
        };
        let fail = |e: std::io::Error| format!("{}: {e}", self.delivered_path.display());
        if self.pending.is_empty() && self.len > COMPACT_BYTES {
            self.file.set_len(0).map_err(fail)?;
            self.file.sync_all().map_err(fail)?;
            self.len = 0;
            return write_atomic(&self.delivered_path, 0).map_err(fail);
        }
        write_atomic(&self.delivered_path, end).map_err(fail)
    }
}

fn write_atomic(path: &Path, offset: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("delivered.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(offset.to_string().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_not_delivered_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = DiskQueue::open(dir.path(), "h").unwrap();
        for body in [&b"{\"a\":1}"[..], b"{\"a\":2}", b"{\"a\":3}"] {
            q.push(body).unwrap();
        }
        q.pop().unwrap();
        drop(q);
        let mut q = DiskQueue::open(dir.path(), "h").unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q.front(), Some(&b"{\"a\":2}"[..]));
        q.pop().unwrap();
        q.pop().unwrap();
        q.pop().unwrap();
        drop(q);
        assert_eq!(DiskQueue::open(dir.path(), "h").unwrap().len(), 0);
    }

    #[test]
    fn a_torn_append_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = DiskQueue::open(dir.path(), "h").unwrap();
        q.push(b"{\"a\":1}").unwrap();
        drop(q);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("h.queue"))
            .unwrap();
        f.write_all(b"{\"a\":").unwrap();
        let mut q = DiskQueue::open(dir.path(), "h").unwrap();
        assert_eq!(q.len(), 1);
        q.push(b"{\"a\":2}").unwrap();
        drop(q);
        let q = DiskQueue::open(dir.path(), "h").unwrap();
        assert_eq!(q.len(), 2);
    }
}
