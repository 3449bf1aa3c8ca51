//! Where each record is, by log index, on disk (`index/records`): 20 bytes per record, the
//! segment number (u32 LE), the frame's byte offset (u64 LE) and the log index of the previous
//! record of the same session (u64 LE; all ones for a session's first record or a record of no
//! session), so a session is read back by following its links from its last record. Derived
//! from the log like the tree files.
use std::{
    fs::{self, File, OpenOptions},
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
};

pub const INDEX_DIR: &str = "index";
const RECORDS_FILE: &str = "records";
const ENTRY: u64 = 20;
/// No previous record in the session.
pub const NONE: u64 = u64::MAX;

pub struct RecordIndex {
    path: PathBuf,
    file: File,
    len: u64,
    pending: Vec<u8>,
}

/// One record's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub segment: u32,
    pub offset: u64,
    pub session_prev: u64,
}

impl RecordIndex {
    /// Opens the index of the first `size` records; None if the file holds fewer (it is then
    /// made again from the log).
    pub fn open(data: &Path, size: u64) -> std::io::Result<Option<Self>> {
        let dir = data.join(INDEX_DIR);
        fs::create_dir_all(&dir)?;
        let path = dir.join(RECORDS_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        let need = size * ENTRY;
        let have = file.metadata()?.len();
        if have < need {
            return Ok(None);
        }
        if have > need {
            file.set_len(need)?;
        }
        Ok(Some(Self {
            path,
            file,
            len: need,
            pending: Vec::new(),
        }))
    }

    /// An empty index (the old one, if any, is cut to nothing).
    pub fn create(data: &Path) -> std::io::Result<Self> {
        let dir = data.join(INDEX_DIR);
        fs::create_dir_all(&dir)?;
        let path = dir.join(RECORDS_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        Ok(Self {
            path,
            file,
            len: 0,
            pending: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn push(&mut self, place: Place) {
        self.pending.extend_from_slice(&place.segment.to_le_bytes());
        self.pending.extend_from_slice(&place.offset.to_le_bytes());
        self.pending
            .extend_from_slice(&place.session_prev.to_le_bytes());
    }

    pub fn flush(&mut self, sync: bool) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            self.file.write_all_at(&self.pending, self.len)?;
            self.len += self.pending.len() as u64;
            self.pending.clear();
        }
        if sync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// The place of record `index`, None if it is not in the index.
    pub fn get(&self, index: u64) -> std::io::Result<Option<Place>> {
        let at = index * ENTRY;
        let mut e = [0u8; ENTRY as usize];
        if at + ENTRY <= self.len {
            self.file.read_exact_at(&mut e, at)?;
        } else {
            let from = (at - self.len) as usize;
            match self.pending.get(from..from + ENTRY as usize) {
                Some(bytes) => e.copy_from_slice(bytes),
                None => return Ok(None),
            }
        }
        let u64_at = |i: usize| u64::from_le_bytes(e[i..i + 8].try_into().unwrap_or_default());
        Ok(Some(Place {
            segment: u32::from_le_bytes(e[..4].try_into().unwrap_or_default()),
            offset: u64_at(4),
            session_prev: u64_at(12),
        }))
    }
}
