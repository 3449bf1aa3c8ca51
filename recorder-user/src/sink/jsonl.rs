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
        })
    }
}

impl Sink for JsonlSink {
    fn write(&mut self, record: &Record) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.out, record)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush().context("writing the JSONL output")
    }
}
