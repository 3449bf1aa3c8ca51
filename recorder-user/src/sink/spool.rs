//! `--collector`: every record goes to the spool first; the sender ships it from there.
use super::Sink;
use crate::{record::Record, spool::Spool};

pub struct SpoolSink {
    spool: Spool,
}

impl SpoolSink {
    pub fn new(spool: Spool) -> Self {
        Self { spool }
    }
}

impl Sink for SpoolSink {
    fn write(&mut self, record: &Record) -> anyhow::Result<()> {
        // A full spool drops and counts; the `loss` record follows when there is room.
        self.spool.append(record.to_line().as_bytes())?;
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(self.spool.flush()?)
    }
}
