//! On PostgreSQL every collector follows the log as the sequencer extends it, so that its
//! watchers see the records every collector of the group ingested, and its alert rules run on
//! them. Webhooks are sent by the sequencing collector only, so each alert is delivered once.
//!
//! While this collector sequences, its sequencer hands each committed round to the tail, which
//! then need not read back what was just written; any gap in log indices (a round that did not
//! fit the channel, another collector's rounds) is read from the database.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use recorder_store::StoredRecord;
use recorder_store_postgres::PgLog;
use tokio::sync::{broadcast, mpsc};

use crate::{Event, alerts::Engine, metrics::CollectorMetrics};

/// How often the database is asked for records placed by another collector.
const POLL: Duration = Duration::from_millis(100);
/// How often while this collector sequences: its own rounds arrive through the channel, the
/// database is asked only in case another collector took over unseen.
const POLL_LEADING: Duration = Duration::from_secs(1);
const CHUNK: u64 = 1000;
/// Rounds the sequencer may hand over before the tail takes them. One: each round held is up
/// to 5,000 parsed records (several MiB); with 8 the collector's RSS grew by 16 MiB between
/// 10^5 and 10^6 records under load (`collector_scale`).
pub(crate) const FEED_ROUNDS: usize = 1;

struct Tail {
    pg: PgLog,
    next: u64,
    events: broadcast::Sender<Arc<Event>>,
    engine: Option<Arc<Engine>>,
    leading: Arc<AtomicBool>,
    metrics: CollectorMetrics,
    failing: bool,
}

pub(crate) fn spawn(
    pg: PgLog,
    from: u64,
    events: broadcast::Sender<Arc<Event>>,
    engine: Option<Arc<Engine>>,
    leading: Arc<AtomicBool>,
    metrics: CollectorMetrics,
    mut feed: mpsc::Receiver<Vec<StoredRecord>>,
) {
    let mut tail = Tail {
        pg,
        next: from,
        events,
        engine,
        leading,
        metrics,
        failing: false,
    };
    tokio::spawn(async move {
        loop {
            tail.catch_up().await;
            let pause = if tail.leading.load(Ordering::Relaxed) {
                POLL_LEADING
            } else {
                POLL
            };
            let deadline = tokio::time::Instant::now() + pause;
            // Take the sequencer's rounds while they follow on; anything else means a gap.
            loop {
                tokio::select! {
                    round = feed.recv() => match round {
                        // Records read from the database meanwhile are skipped.
                        Some(round) if round.first().is_some_and(|r| r.index <= tail.next) => {
                            tail.deliver(round);
                        }
                        // A gap: read it from the database.
                        Some(_) => break,
                        None => {
                            tokio::time::sleep_until(deadline).await;
                            break;
                        }
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
    });
}

impl Tail {
    /// Reads from the database until nothing more is placed.
    async fn catch_up(&mut self) {
        loop {
            match self.pg.read_range(self.next, self.next + CHUNK).await {
                Ok(records) => {
                    self.failing = false;
                    let full = records.len() as u64 == CHUNK;
                    self.deliver(records);
                    if !full {
                        return;
                    }
                }
                Err(e) => {
                    if !self.failing {
                        tracing::warn!(error = %e, "cannot follow the log; retrying");
                        self.failing = true;
                    }
                    return;
                }
            }
        }
    }

    fn deliver(&mut self, records: Vec<StoredRecord>) {
        let leading = self.leading.load(Ordering::Relaxed);
        for rec in records {
            if rec.index < self.next {
                continue;
            }
            self.next = rec.index + 1;
            let rec = Arc::new(rec);
            let _ = self.events.send(Arc::new(Event::Record(rec.clone())));
            if let Some(engine) = &self.engine {
                engine.evaluate(&rec, &self.events, leading);
            }
        }
        self.metrics.records.set(self.next);
    }
}
