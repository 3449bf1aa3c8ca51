//! `--jsonl PATH`: one JSON object per line, appended.
use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use recorder_record::Record;

use super::{Sink, SinkError};

pub(crate) struct JsonlSink {
    path: PathBuf,
    out: BufWriter<File>,
    /// The line being built, reused between records.
    line: Vec<u8>,
}

impl JsonlSink {
    /// Opens (creating or appending to) `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, SinkError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| SinkError::Io {
                what: "cannot open the JSONL output",
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(256 * 1024, file),
            line: Vec::with_capacity(4096),
        })
    }

    fn io_error(&self, source: std::io::Error) -> SinkError {
        SinkError::Io {
            what: "writing the JSONL output",
            path: self.path.clone(),
            source,
        }
    }
}

impl Sink for JsonlSink {
    fn write(&mut self, record: &Record) -> Result<(), SinkError> {
        // One write_all per whole line: BufWriter then never splits a line across two writes to
        // the file, so a reader tailing it never sees half a record (a 1 MB statement included).
        self.line.clear();
        record.write_line(&mut self.line);
        self.line.push(b'\n');
        self.out.write_all(&self.line).map_err(|e| self.io_error(e))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.io_error(e))
    }
}
