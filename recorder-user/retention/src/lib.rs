//! Retention of the embedded store: which closed segments the `[retention]` rules let go
//! (`plan`), their copies in an archive on object storage (`archive`), and the task that
//! prunes them and restores them for reading (`prune`), each deletion signed in the store's
//! ledger.
pub mod archive;
pub mod config;
pub mod plan;
mod postgres;
pub mod prune;

pub use archive::{Archive, Manifest};
pub use config::{ArchiveConfig, RetentionConfig};
pub use prune::{ExportFloor, Pruner, Target};
#[cfg(test)]
mod tests;

// Named only to turn on its TLS for object_store's HTTP client.
use reqwest as _;
