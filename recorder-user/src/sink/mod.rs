//! Where records go once built: the local JSON Lines file, and (with `--collector`) the spool
//! that feeds the collector. Every sink sees every record, in order.
pub mod jsonl;
pub mod spool;

use crate::record::Record;

/// A destination for records. `write` may buffer; `flush` is called at least every few hundred
/// milliseconds by the pipeline so records are visible within a second of the event.
pub trait Sink: Send {
    fn write(&mut self, record: &Record) -> anyhow::Result<()>;
    fn flush(&mut self) -> anyhow::Result<()>;
}
