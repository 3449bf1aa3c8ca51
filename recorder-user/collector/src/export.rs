//! The exporters configured for this collector, each reading the log from its own cursor.
use recorder_export::{ExportConfig, Exporter, Source};
use recorder_store::StoredRecord;
use tokio::{sync::watch, task::JoinHandle};

use crate::{CollectorError, log::Log, metrics::CollectorMetrics};

/// The log as exporters read it: its size as the collector knows it (the embedded store's
/// length, or the tail's position on PostgreSQL), and ranges of placed records.
struct LogSource {
    log: Log,
    metrics: CollectorMetrics,
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
}

/// Opens every exporter (a bad certificate or directory stops the collector here, before it
/// listens), then starts them.
pub(crate) fn start(
    configs: &[ExportConfig],
    data: &std::path::Path,
    log: &Log,
    metrics: &CollectorMetrics,
    stop: &watch::Receiver<bool>,
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
            };
            tokio::spawn(exporter.run(source, stop.clone()))
        })
        .collect())
}
