//! Exporters: the collector's log delivered, in log order, to where teams already look (a
//! SIEM's syslog input, an OpenTelemetry receiver, an HTTP endpoint, files a shipper tails). Each exporter is its own task reading the
//! stored log from its own durable cursor, so ingest never waits for one, a receiver's outage
//! or a collector restart loses nothing, and a record is delivered at least once with a stable
//! event id (`host/boot/sequence`) receivers can drop duplicates by.
pub mod config;
pub mod cursor;
mod ecs;
mod file;
mod http;
mod otlp;
mod syslog;
pub mod webhook;

use std::{
    future::Future,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub use config::{ConfigError, ExportConfig, SinkConfig};
use cursor::{Cursor, Position};
use recorder_api::metrics::{Counter, Gauge, Registry};
use recorder_store::StoredRecord;
use tokio::sync::watch;

/// Records read from the log per batch.
const CHUNK: u64 = 1000;
/// Pause when the exporter has caught up with the log.
const IDLE: Duration = Duration::from_millis(100);
/// The cursor is saved at most this often while records flow (and whenever the exporter
/// stops or catches up); after a crash at most this much is sent again.
const SAVE_EVERY: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often a collector of a group that does not deliver looks whether it should.
const STANDBY: Duration = Duration::from_millis(500);

/// The log an exporter reads.
pub trait Source: Send + Sync + 'static {
    /// Records placed in the log so far.
    fn size(&self) -> u64;
    /// Placed records `from..to`.
    fn read(
        &self,
        from: u64,
        to: u64,
    ) -> impl Future<Output = Result<Vec<StoredRecord>, String>> + Send;
    /// Whether the log is shared by a group of collectors: then syslog, OTLP and webhook
    /// exporters deliver from the collector that sequences only, from a cursor the group
    /// shares (file exporters write on every collector, each its own files).
    fn shared(&self) -> bool {
        false
    }
    /// On a group: whether this collector delivers now.
    fn active(&self) -> bool {
        true
    }
    /// On a group: where exporter `name` has delivered up to.
    fn load_cursor(&self, _name: &str) -> impl Future<Output = Result<u64, String>> + Send {
        async { Ok(0) }
    }
    /// On a group: exporter `name` has delivered up to `next`.
    fn save_cursor(
        &self,
        _name: &str,
        _next: u64,
    ) -> impl Future<Output = Result<(), String>> + Send {
        async { Ok(()) }
    }
}

enum Sink {
    Syslog(syslog::SyslogSink),
    Otlp(otlp::OtlpSink),
    Webhook(Box<webhook::WebhookSink>),
    File(file::FileSink),
}

impl Sink {
    async fn send(
        &mut self,
        records: &[&StoredRecord],
        next: u64,
        cursor: &mut Cursor,
    ) -> Result<(), String> {
        match self {
            Sink::Syslog(s) => s.send(records, next).await,
            Sink::Otlp(o) => o.send(records, next).await,
            Sink::Webhook(w) => w.send(records, next).await,
            Sink::File(f) => f.send(records, next, cursor),
        }
    }

    fn confirmed(&mut self) -> Result<Option<Position>, String> {
        match self {
            Sink::Syslog(s) => s.confirmed(),
            Sink::Otlp(o) => Ok(o.confirmed()),
            Sink::Webhook(w) => Ok(w.confirmed()),
            Sink::File(f) => Ok(Some(f.confirmed())),
        }
    }

    fn reset(&mut self, at: Position, cfg: &SinkConfig) -> Result<(), String> {
        match (self, cfg) {
            (Sink::Syslog(s), _) => {
                s.reset();
                Ok(())
            }
            (Sink::Otlp(o), _) => {
                o.reset();
                Ok(())
            }
            (Sink::Webhook(w), _) => {
                w.reset();
                Ok(())
            }
            (sink @ Sink::File(_), SinkConfig::File(c)) => {
                *sink = Sink::File(file::FileSink::open(c, at)?);
                Ok(())
            }
            (Sink::File(_), _) => Ok(()),
        }
    }
}

struct Metrics {
    delivered: Counter,
    failed: Counter,
    lag: Gauge,
    cursor: Gauge,
}

impl Metrics {
    fn new(name: &str) -> Self {
        let r = Registry::global();
        let labels = [("export", name)];
        Self {
            delivered: r.counter(
                "recorder_export_delivered_total",
                "Records written to the exporter's receiver (again after an outage included).",
                &labels,
            ),
            failed: r.counter(
                "recorder_export_failed_total",
                "Failed attempts to reach or write to the exporter's receiver.",
                &labels,
            ),
            lag: r.gauge(
                "recorder_export_lag_records",
                "Records in the log not yet delivered by the exporter.",
                &labels,
            ),
            cursor: r.gauge(
                "recorder_export_cursor",
                "The log index the exporter has delivered up to.",
                &labels,
            ),
        }
    }
}

/// An exporter ready to run: its configuration checked, its cursor and receiver set up.
pub struct Exporter {
    cfg: ExportConfig,
    cursor: Cursor,
    /// The furthest the receiver has confirmed, saved to the cursor at intervals.
    confirmed: Position,
    sink: Sink,
    metrics: Metrics,
}

impl Exporter {
    /// Checks what can be checked before the collector starts (certificates, the directory,
    /// the cursor); the receiver is reached later, and retried.
    pub fn open(cfg: ExportConfig, cursors: &Path) -> Result<Self, ConfigError> {
        let bad = |why: String| ConfigError::Export {
            name: cfg.name.clone(),
            why,
        };
        let cursor = Cursor::open(cursors, &cfg.name).map_err(bad)?;
        let sink = match &cfg.sink {
            SinkConfig::Syslog(c) => Sink::Syslog(syslog::SyslogSink::new(c).map_err(bad)?),
            SinkConfig::Otlp(c) => Sink::Otlp(otlp::OtlpSink::new(c, &cfg.name).map_err(bad)?),
            SinkConfig::Webhook(c) => {
                Sink::Webhook(Box::new(webhook::WebhookSink::new(c).map_err(bad)?))
            }
            SinkConfig::File(c) => {
                Sink::File(file::FileSink::open(c, cursor.position).map_err(bad)?)
            }
        };
        let metrics = Metrics::new(&cfg.name);
        metrics.cursor.set(cursor.position.next);
        Ok(Self {
            cfg,
            confirmed: cursor.position,
            cursor,
            sink,
            metrics,
        })
    }

    /// Where exporters keep their cursors, under the collector's data directory.
    pub fn cursor_dir(data: &Path) -> PathBuf {
        data.join("exports")
    }

    /// Delivers the log from the cursor on, until `stop` turns true.
    pub async fn run(mut self, source: impl Source, mut stop: watch::Receiver<bool>) {
        let name = self.cfg.name.clone();
        let shared = source.shared() && !matches!(self.cfg.sink, SinkConfig::File(_));
        tracing::info!(export = %name, kind = self.cfg.sink.kind(), from = self.cursor.position.next, shared, "exporter started");
        let mut sent = self.cursor.position.next;
        let mut saved_at = Instant::now();
        let mut outage: Option<(Instant, Duration)> = None;
        let mut delivering = !shared;
        while !*stop.borrow() {
            if shared && !source.active() {
                if delivering {
                    tracing::info!(export = %name, "another collector delivers now");
                    let _ = self.sink.reset(self.cursor.position, &self.cfg.sink);
                    delivering = false;
                }
                sleep_or_stop(STANDBY, &mut stop).await;
                continue;
            }
            if !delivering {
                match source.load_cursor(&name).await {
                    Ok(next) => {
                        tracing::info!(export = %name, from = next, "this collector delivers now");
                        self.cursor.position = Position {
                            next,
                            file_offset: None,
                        };
                        self.confirmed = self.cursor.position;
                        sent = next;
                        delivering = true;
                    }
                    Err(e) => {
                        tracing::warn!(export = %name, error = %e, "cannot read the group's cursor");
                        sleep_or_stop(STANDBY, &mut stop).await;
                        continue;
                    }
                }
            }
            let size = source.size();
            let step = self.step(&source, &mut sent, size).await;
            let result = match step.and_then(|()| self.confirm(sent >= size, &mut saved_at)) {
                Ok(Some(next)) if shared => source.save_cursor(&name, next).await,
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    if let Some((since, _)) = outage.take() {
                        tracing::info!(export = %name, after = ?since.elapsed(), "exporter delivering again");
                    }
                }
                Err(e) => {
                    self.metrics.failed.inc();
                    let backoff =
                        outage.map_or(Duration::from_secs(1), |(_, b)| (b * 2).min(BACKOFF_MAX));
                    if outage.is_none() {
                        tracing::warn!(export = %name, error = %e, "exporter cannot deliver; records wait in the log and are sent again from the cursor");
                    }
                    outage = Some((outage.map_or_else(Instant::now, |(s, _)| s), backoff));
                    if let Err(e) = self.sink.reset(self.cursor.position, &self.cfg.sink) {
                        tracing::warn!(export = %name, error = %e, "exporter cannot reopen its output");
                    }
                    self.confirmed = self.cursor.position;
                    sent = self.cursor.position.next;
                    sleep_or_stop(backoff, &mut stop).await;
                    continue;
                }
            }
            self.metrics
                .lag
                .set(source.size().saturating_sub(self.cursor.position.next));
            if sent >= source.size() {
                sleep_or_stop(IDLE, &mut stop).await;
            }
        }
        // Deliveries confirmed by now are kept; the rest is sent again next time.
        if delivering {
            if let Ok(Some(at)) = self.sink.confirmed() {
                self.confirmed = at;
            }
            if self.confirmed != self.cursor.position {
                let _ = self.cursor.save(self.confirmed);
                if shared {
                    let _ = source.save_cursor(&name, self.confirmed.next).await;
                }
            }
        }
        tracing::info!(export = %name, cursor = self.cursor.position.next, "exporter stopped");
    }

    /// Sends the next chunk of the log, if any.
    async fn step(
        &mut self,
        source: &impl Source,
        sent: &mut u64,
        size: u64,
    ) -> Result<(), String> {
        if *sent >= size {
            return Ok(());
        }
        let to = size.min(*sent + CHUNK);
        let records = source
            .read(*sent, to)
            .await
            .map_err(|e| format!("reading the log: {e}"))?;
        let Some(last) = records.last() else {
            return Ok(());
        };
        let next = last.index + 1;
        let chosen: Vec<&StoredRecord> = records
            .iter()
            .filter(|r| self.cfg.filter.matches(&r.record))
            .collect();
        self.sink.send(&chosen, next, &mut self.cursor).await?;
        self.metrics.delivered.add(chosen.len() as u64);
        *sent = next;
        Ok(())
    }

    /// Saves what the receiver has confirmed, at most every `SAVE_EVERY` unless caught up.
    /// Returns the position saved, if it was.
    fn confirm(&mut self, caught_up: bool, saved_at: &mut Instant) -> Result<Option<u64>, String> {
        if let Some(at) = self.sink.confirmed()? {
            self.confirmed = at;
        }
        let at = self.confirmed;
        if at == self.cursor.position {
            return Ok(None);
        }
        if caught_up || saved_at.elapsed() >= SAVE_EVERY {
            self.cursor
                .save(at)
                .map_err(|e| format!("cannot save the cursor: {e}"))?;
            self.metrics.cursor.set(at.next);
            *saved_at = Instant::now();
            return Ok(Some(at.next));
        }
        Ok(None)
    }
}

async fn sleep_or_stop(pause: Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(pause) => {}
        _ = stop.changed() => {}
    }
}
