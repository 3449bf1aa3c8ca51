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

use recorder_store_postgres::{PgError, PgLog};
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
            match follow(&pg, &mut next, &events, engine.as_deref(), &leading).await {
                Ok(more) => {
                    failing = false;
                    metrics.records.set(next);
                    if more {
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

/// One look at the log past `next`: its records given to the watchers and alert rules, or,
/// while nobody listens, passed over unread. True when more are there to read at once.
async fn follow(
    pg: &PgLog,
    next: &mut u64,
    events: &broadcast::Sender<Arc<Event>>,
    engine: Option<&Engine>,
    leading: &AtomicBool,
) -> Result<bool, PgError> {
    if events.receiver_count() == 0 && engine.is_none() {
        *next = (*next).max(pg.placed().await?);
        return Ok(false);
    }
    let records = pg.read_range(*next, *next + CHUNK).await?;
    let full = records.len() as u64 == CHUNK;
    for rec in records {
        *next = rec.index + 1;
        let rec = Arc::new(rec);
        let _ = events.send(Arc::new(Event::Record(rec.clone())));
        if let Some(engine) = engine {
            engine.evaluate(&rec, events, leading.load(Ordering::Relaxed));
        }
    }
    Ok(full)
}
