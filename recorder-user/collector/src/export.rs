//! The exporters configured for this collector, each reading the log from its own cursor.
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use recorder_export::{ExportConfig, Exporter, Source};
use recorder_store::StoredRecord;
use tokio::{sync::watch, task::JoinHandle};

use crate::{CollectorError, log::Log, metrics::CollectorMetrics};

/// The log as exporters read it: its size as the collector knows it (the embedded store's
/// length, or the tail's position on PostgreSQL), and ranges of placed records.
struct LogSource {
    log: Log,
    metrics: CollectorMetrics,
    /// On PostgreSQL: whether this collector sequences the group's log.
    leading: Arc<AtomicBool>,
}

impl Source for LogSource {
    fn size(&self) -> u64 {
        self.metrics.records.get()
    }

    async fn read(&self, from: u64, to: u64) -> Result<Vec<StoredRecord>, String> {
        self.log
            .read_range(from, to)
            .await
            .map_err(|e| e.to_string())
    }

    fn shared(&self) -> bool {
        matches!(self.log, Log::Postgres(..))
    }

    fn active(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    async fn load_cursor(&self, name: &str) -> Result<u64, String> {
        match &self.log {
            Log::Postgres(pg, _) => pg.export_cursor(name).await.map_err(|e| e.to_string()),
            Log::Embedded(..) => Ok(0),
        }
    }

    async fn save_cursor(&self, name: &str, next: u64) -> Result<(), String> {
        match &self.log {
            Log::Postgres(pg, _) => pg
                .save_export_cursor(name, next)
                .await
                .map_err(|e| e.to_string()),
            Log::Embedded(..) => Ok(()),
        }
    }
}

/// Opens every exporter (a bad certificate or directory stops the collector here, before it
/// listens), then starts them.
pub(crate) fn start(
    configs: &[ExportConfig],
    data: &std::path::Path,
    log: &Log,
    metrics: &CollectorMetrics,
    stop: &watch::Receiver<bool>,
    leading: &Arc<AtomicBool>,
) -> Result<Vec<JoinHandle<()>>, CollectorError> {
    let cursors = Exporter::cursor_dir(data);
    let exporters = configs
        .iter()
        .map(|c| Exporter::open(c.clone(), &cursors))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(exporters
        .into_iter()
        .map(|exporter| {
            let source = LogSource {
                log: log.clone(),
                metrics: metrics.clone(),
                leading: leading.clone(),
            };
            tokio::spawn(exporter.run(source, stop.clone()))
        })
        .collect())
}
