//! Where records go once built: the local JSON Lines file, and (with a collector) the spool
//! that feeds the collector. Every sink sees every record, in order.
pub(crate) mod jsonl;
pub(crate) mod spool;

use std::path::PathBuf;

use recorder_record::Record;

use crate::spool::SpoolError;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// A destination for records. `write` may buffer; `flush` is called at least every few hundred
/// milliseconds by the pipeline so records are visible within a second of the event.
pub(crate) trait Sink: Send {
    fn write(&mut self, record: &Record) -> Result<(), SinkError>;
    fn flush(&mut self) -> Result<(), SinkError>;
}
