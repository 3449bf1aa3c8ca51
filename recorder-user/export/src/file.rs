//! The file exporter: JSON Lines for Filebeat, Vector, Fluent Bit or the Splunk forwarder to
//! tail. `PREFIX.jsonl` is written; when it reaches its size or age it is renamed to
//! `PREFIX-<UTC time>.jsonl` and compressed to `.jsonl.gz`, and a new `PREFIX.jsonl` starts.
//!
//! Exactly once: the cursor keeps the open file's length at the last synced record, and a
//! start after a crash cuts the file back to that length before writing again, so a record is
//! in the files once whatever moment the collector died at.
use std::{
    fs::{File, OpenOptions},
    io::{self, Write as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use recorder_record::Timestamp;
use recorder_store::StoredRecord;

use crate::{
    config::FileConfig,
    cursor::{Cursor, Position},
    ecs,
};

pub(crate) struct FileSink {
    cfg: FileConfig,
    current: PathBuf,
    file: Option<File>,
    len: u64,
    opened: Instant,
    /// The log index after the last record written to the files.
    next: u64,
    buf: Vec<u8>,
}

impl FileSink {
    /// Opens the exporter's directory at the cursor: leftover closed files are compressed,
    /// the open file is cut back to the cursor's length.
    pub(crate) fn open(cfg: &FileConfig, at: Position) -> Result<Self, String> {
        let dir = &cfg.dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let current = dir.join(format!("{}.jsonl", cfg.prefix));
        let mut sink = Self {
            cfg: cfg.clone(),
            current,
            file: None,
            len: 0,
            opened: Instant::now(),
            next: at.next,
            buf: Vec::new(),
        };
        sink.compress_leftovers()?;
        match std::fs::metadata(&sink.current) {
            Ok(meta) => match at.file_offset {
                Some(offset) if meta.len() >= offset => {
                    let file = OpenOptions::new()
                        .append(true)
                        .open(&sink.current)
                        .map_err(|e| format!("cannot open {}: {e}", sink.current.display()))?;
                    if meta.len() > offset {
                        tracing::info!(
                            file = %sink.current.display(),
                            from = meta.len(),
                            to = offset,
                            "cutting records written after the last cursor (they are written again)"
                        );
                        file.set_len(offset)
                            .and_then(|()| file.sync_all())
                            .map_err(|e| format!("cannot cut {}: {e}", sink.current.display()))?;
                    }
                    sink.len = offset;
                    sink.file = Some(file);
                }
                // Not ours at this cursor (shorter than what we wrote, or no cursor): set it
                // aside untouched and start a new file.
                _ => {
                    tracing::warn!(
                        file = %sink.current.display(),
                        "the open file does not match the exporter's cursor; closing it as it is"
                    );
                    sink.close_current()?;
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", sink.current.display())),
        }
        Ok(sink)
    }

    /// Writes `records` (the chosen ones of the log up to `next`) and syncs them; rotates
    /// first when the open file is due.
    pub(crate) fn send(
        &mut self,
        records: &[&StoredRecord],
        next: u64,
        cursor: &mut Cursor,
    ) -> Result<(), String> {
        let due = self.len >= self.cfg.max_mib * 1024 * 1024
            || self.opened.elapsed() >= Duration::from_secs(self.cfg.max_age_secs);
        if self.file.is_some() && due {
            self.rotate(cursor)?;
        }
        if records.is_empty() {
            self.next = next;
            return Ok(());
        }
        self.buf.clear();
        for rec in records {
            if self.cfg.ecs {
                ecs::write_line(rec, &mut self.buf);
            } else {
                self.buf.extend_from_slice(&rec.line);
            }
            self.buf.push(b'\n');
        }
        if self.file.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.current)
                .map_err(|e| format!("cannot create {}: {e}", self.current.display()))?;
            self.opened = Instant::now();
            self.len = 0;
            self.file = Some(f);
        }
        let Some(file) = self.file.as_mut() else {
            return Err("no open file".into());
        };
        file.write_all(&self.buf)
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("cannot write {}: {e}", self.current.display()))?;
        self.len += self.buf.len() as u64;
        self.next = next;
        Ok(())
    }

    /// Everything written is synced when `send` returns.
    pub(crate) fn confirmed(&self) -> Position {
        Position {
            next: self.next,
            file_offset: Some(self.len),
        }
    }

    /// Closes the open file: the cursor first says the records are in it, then it gets its
    /// closed name, then the cursor says the new file is empty; a crash between two steps
    /// leaves a state `open` understands.
    fn rotate(&mut self, cursor: &mut Cursor) -> Result<(), String> {
        cursor
            .save(self.confirmed())
            .map_err(|e| format!("cannot save the cursor: {e}"))?;
        self.close_current()?;
        cursor
            .save(Position {
                next: self.next,
                file_offset: Some(0),
            })
            .map_err(|e| format!("cannot save the cursor: {e}"))
    }

    fn close_current(&mut self) -> Result<(), String> {
        self.file = None;
        self.len = 0;
        let name = format!(
            "{}-{}.jsonl",
            self.cfg.prefix,
            Timestamp::now().to_string().replace(':', "")
        );
        let closed = self.cfg.dir.join(name);
        std::fs::rename(&self.current, &closed)
            .map_err(|e| format!("cannot rename {}: {e}", self.current.display()))?;
        sync_dir(&self.cfg.dir);
        if self.cfg.compress {
            compress(&closed)?;
        }
        Ok(())
    }

    /// Closed files a crash left uncompressed.
    fn compress_leftovers(&self) -> Result<(), String> {
        if !self.cfg.compress {
            return Ok(());
        }
        let start = format!("{}-", self.cfg.prefix);
        let entries = std::fs::read_dir(&self.cfg.dir)
            .map_err(|e| format!("cannot list {}: {e}", self.cfg.dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Our own names: the extension is always lower case.
            #[allow(clippy::case_sensitive_file_extension_comparisons)]
            if name.starts_with(&start) && name.ends_with(".jsonl") {
                compress(&entry.path())?;
            }
        }
        Ok(())
    }
}

/// `FILE` → `FILE.gz` (written aside, synced, renamed), then `FILE` removed.
fn compress(path: &Path) -> Result<(), String> {
    let fail = |e: io::Error| format!("cannot compress {}: {e}", path.display());
    let gz = path.with_extension("jsonl.gz");
    let tmp = path.with_extension("jsonl.gz.tmp");
    let mut input = File::open(path).map_err(fail)?;
    let out = File::create(&tmp).map_err(fail)?;
    let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    io::copy(&mut input, &mut encoder).map_err(fail)?;
    encoder.finish().and_then(|f| f.sync_all()).map_err(fail)?;
    std::fs::rename(&tmp, &gz).map_err(fail)?;
    std::fs::remove_file(path).map_err(fail)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
