//! The alert engine: every stored record is matched against the rules; each match is an alert,
//! sent on the watch stream and queued for every webhook. Evaluating never blocks ingest.
use std::sync::Arc;

use recorder_api::{metrics::Registry, proto::v1};
use recorder_record::Timestamp;
use recorder_store::StoredRecord;
use tokio::sync::broadcast;

use crate::{
    Event,
    rules::{Rule, Rules},
    webhook::Queue,
};

/// An alert raised by a rule.
#[derive(Debug, Clone)]
pub(crate) struct Alert {
    pub(crate) rule: String,
    pub(crate) severity: String,
    pub(crate) description: String,
    pub(crate) time: Timestamp,
    pub(crate) record: Arc<StoredRecord>,
}

impl Alert {
    pub(crate) fn to_proto(&self) -> v1::Alert {
        v1::Alert {
            rule: self.rule.clone(),
            severity: self.severity.clone(),
            description: self.description.clone(),
            record: Some(crate::wire::stored_record(&self.record)),
            time: self.time.to_string(),
        }
    }

    /// The webhook body: the alert and the record as stored.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let record: serde_json::Value =
            serde_json::from_slice(&self.record.line).unwrap_or(serde_json::Value::Null);
        serde_json::json!({
            "rule": self.rule,
            "severity": self.severity,
            "description": self.description,
            "time": self.time,
            "log_index": self.record.index,
            "record": record,
        })
    }
}

/// Matches records against the rules and hands alerts to the watch stream and the webhooks.
pub(crate) struct Engine {
    rules: Vec<Rule>,
    queues: Vec<Queue>,
}

impl Engine {
    /// Starts one delivery task per webhook (needs a tokio runtime).
    pub(crate) fn start(rules: Rules) -> Self {
        let queues = rules.webhooks.into_iter().map(Queue::start).collect();
        Self {
            rules: rules.rules,
            queues,
        }
    }

    /// Never blocks: webhook delivery is queued. `deliver` is false on the collectors of a group
    /// that do not sequence: they show alerts to their watchers, the sequencer sends them.
    pub(crate) fn evaluate(
        &self,
        rec: &Arc<StoredRecord>,
        events: &broadcast::Sender<Arc<Event>>,
        deliver: bool,
    ) {
        for rule in self.rules.iter().filter(|r| r.matches(&rec.record)) {
            let alert = Alert {
                rule: rule.name.clone(),
                severity: rule.severity.clone(),
                description: rule.description.clone(),
                time: Timestamp::now(),
                record: rec.clone(),
            };
            Registry::global()
                .counter(
                    "recorder_alerts_total",
                    "Alerts raised, by rule.",
                    &[("rule", &rule.name)],
                )
                .inc();
            tracing::info!(rule = %rule.name, index = rec.index, "alert");
            if deliver && !self.queues.is_empty() {
                let body = serde_json::to_vec(&alert.to_json()).unwrap_or_default();
                for q in &self.queues {
                    q.push(body.clone());
                }
            }
            let _ = events.send(Arc::new(Event::Alert(alert)));
        }
    }
}
