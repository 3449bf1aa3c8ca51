//! The alerts the console shows: those raised since the collector started (alerts are sent to
//! webhooks and watchers, not stored in the log), kept per session up to a bound.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::broadcast;

use crate::{AlertView, Live};

/// More than this many alerts: the oldest sessions' alerts are forgotten first.
const MAX_ALERTS: usize = 100_000;

#[derive(Default)]
pub(crate) struct AlertBook {
    inner: Mutex<Book>,
}

#[derive(Default)]
struct Book {
    by_session: HashMap<(String, String), Vec<Arc<AlertView>>>,
    order: std::collections::VecDeque<(String, String)>,
    count: usize,
}

impl AlertBook {
    /// Keeps every alert the collector raises from now on.
    pub(crate) fn follow(self: &Arc<Self>, mut live: broadcast::Receiver<Live>) {
        let book = self.clone();
        tokio::spawn(async move {
            loop {
                match live.recv().await {
                    Ok(Live::Alert(a)) => book.add(a),
                    Ok(Live::Record(_)) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            missed = n,
                            "the console fell behind the live stream; some alerts are not shown"
                        );
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    fn add(&self, alert: Arc<AlertView>) {
        let mut b = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (alert.host.clone(), alert.session.clone());
        if !b.by_session.contains_key(&key) {
            b.order.push_back(key.clone());
        }
        b.by_session.entry(key).or_default().push(alert);
        b.count += 1;
        while b.count > MAX_ALERTS {
            let Some(oldest) = b.order.pop_front() else {
                break;
            };
            let dropped = b.by_session.remove(&oldest).map_or(0, |v| v.len());
            b.count -= dropped;
        }
    }

    pub(crate) fn of(&self, host: &str, session: &str) -> Vec<Arc<AlertView>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_session
            .get(&(host.to_string(), session.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn count(&self, host: &str, session: &str) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_session
            .get(&(host.to_string(), session.to_string()))
            .map_or(0, Vec::len)
    }
}
