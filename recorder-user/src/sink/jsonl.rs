//! `--jsonl PATH`: one JSON object per line, appended.
use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, Write},
    path::Path,
};

use anyhow::Context as _;

use super::Sink;
use crate::record::Record;

pub struct JsonlSink {
    out: BufWriter<File>,
    /// The line being built, reused between records.
    line: Vec<u8>,
}

impl JsonlSink {
    /// Opens (creating or appending to) `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the JSONL output {}", path.display()))?;
        Ok(Self {
            out: BufWriter::with_capacity(256 * 1024, file),
            line: Vec::with_capacity(4096),
        })
    }
}

impl Sink for JsonlSink {
    fn write(&mut self, record: &Record) -> anyhow::Result<()> {
        // One write_all per whole line: BufWriter then never splits a line across two writes to
        // the file, so a reader tailing it never sees half a record (a 1 MB statement included).
        self.line.clear();
        serde_json::to_writer(&mut self.line, record)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush().context("writing the JSONL output")
    }
}
