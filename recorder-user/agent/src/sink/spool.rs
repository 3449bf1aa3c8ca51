//! With a collector: every record goes to the spool first; the shipper sends it from there.
use recorder_record::Record;

use super::{Sink, SinkError};
use crate::spool::Spool;

pub(crate) struct SpoolSink {
    spool: Spool,
    /// The line being built, reused between records.
    line: Vec<u8>,
}

impl SpoolSink {
    pub(crate) fn new(spool: Spool) -> Self {
        Self {
            spool,
            line: Vec::with_capacity(4096),
        }
    }
}

impl Sink for SpoolSink {
    fn write(&mut self, record: &Record) -> Result<(), SinkError> {
        // A full spool drops and counts; the `loss` record follows when there is room.
        self.line.clear();
        record.write_line(&mut self.line);
        self.spool.append(&self.line)?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(self.spool.flush()?)
    }
}
