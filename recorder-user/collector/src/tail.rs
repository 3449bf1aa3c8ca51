//! On PostgreSQL every collector follows the log as the sequencer extends it, so that its
//! watchers see the records every collector of the group ingested, and its alert rules run on
//! them. Webhooks are sent by the sequencing collector only, so each alert is delivered once.
//! While nobody watches and no rule runs, it moves along the log's size without reading records.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use recorder_store_postgres::PgLog;
use tokio::sync::broadcast;

use crate::{Event, alerts::Engine, metrics::CollectorMetrics};

const POLL: Duration = Duration::from_millis(100);
const CHUNK: u64 = 1000;

pub(crate) fn spawn(
    pg: PgLog,
    from: u64,
    events: broadcast::Sender<Arc<Event>>,
    engine: Option<Arc<Engine>>,
    leading: Arc<AtomicBool>,
    metrics: CollectorMetrics,
) {
    tokio::spawn(async move {
        let mut next = from;
        let mut failing = false;
        loop {
            // Nobody to give records to: move past them without reading them.
            if events.receiver_count() == 0 && engine.is_none() {
                match pg.placed().await {
                    Ok(size) => {
                        failing = false;
                        next = next.max(size);
                        metrics.records.set(next);
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "cannot follow the log; retrying");
                            failing = true;
                        }
                    }
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
            match pg.read_range(next, next + CHUNK).await {
                Ok(records) => {
                    failing = false;
                    let full = records.len() as u64 == CHUNK;
                    for rec in records {
                        next = rec.index + 1;
                        let rec = Arc::new(rec);
                        let _ = events.send(Arc::new(Event::Record(rec.clone())));
                        if let Some(engine) = &engine {
                            engine.evaluate(&rec, &events, leading.load(Ordering::Relaxed));
                        }
                    }
                    metrics.records.set(next);
                    if full {
                        continue;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot follow the log; retrying");
                        failing = true;
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    });
}
