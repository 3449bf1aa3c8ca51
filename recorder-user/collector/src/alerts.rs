//! The alert engine: every stored record is matched against the rules; each match is an alert,
//! sent on the watch stream and queued for every webhook. Evaluating never blocks ingest.
use std::sync::{Arc, Mutex};

use recorder_api::{metrics::Registry, proto::v1};
use recorder_record::Timestamp;
use recorder_store::StoredRecord;
use tokio::sync::broadcast;

use crate::{
    Event,
    rules::{Rule, Rules},
    triggers::State,
    webhook::Queue,
};

/// An alert raised by a rule.
#[derive(Debug, Clone)]
pub(crate) struct Alert {
    pub(crate) rule: String,
    pub(crate) severity: String,
    pub(crate) description: String,
    pub(crate) time: Timestamp,
    /// The record that made the rule fire.
    pub(crate) record: Arc<StoredRecord>,
    /// Why, for rules that look at more than one record (empty for a plain match).
    pub(crate) detail: String,
    /// The log indices of every record that made it fire.
    pub(crate) records: Vec<u64>,
}

impl Alert {
    pub(crate) fn to_proto(&self) -> v1::Alert {
        v1::Alert {
            rule: self.rule.clone(),
            severity: self.severity.clone(),
            description: self.description.clone(),
            record: Some(crate::wire::stored_record(&self.record)),
            time: self.time.to_string(),
            detail: self.detail.clone(),
            records: self.records.clone(),
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
            "detail": self.detail,
            "records": self.records,
            "record": record,
        })
    }
}

/// Matches records against the rules and hands alerts to the watch stream and the webhooks.
pub(crate) struct Engine {
    rules: Vec<Rule>,
    /// What each rule's trigger remembers (windows, values seen), by rule.
    states: Mutex<Vec<State>>,
    queues: Vec<Queue>,
}

impl Engine {
    /// Starts one delivery task per webhook (needs a tokio runtime), each with its queue on
    /// disk under `queues`.
    pub(crate) fn start(rules: Rules, queues: &std::path::Path) -> Result<Self, String> {
        let queues = rules
            .webhooks
            .into_iter()
            .map(|hook| Queue::start(hook, queues))
            .collect::<Result<_, _>>()?;
        Ok(Self::new(rules.rules, queues))
    }

    /// An engine without webhooks (`recorder alerts test`).
    pub(crate) fn new(rules: Vec<Rule>, queues: Vec<Queue>) -> Self {
        Self {
            states: Mutex::new(rules.iter().map(|_| State::default()).collect()),
            rules,
            queues,
        }
    }

    /// Whether a rule learns from the stored log (`first_seen`): then the collector reads the
    /// log through `learn` before it evaluates new records.
    pub(crate) fn learns(&self) -> bool {
        self.rules.iter().any(|r| r.trigger.learns())
    }

    /// Feeds a stored record to the rules' memory without raising anything.
    pub(crate) fn learn(&self, rec: &StoredRecord) {
        let mut states = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (rule, state) in self.rules.iter().zip(states.iter_mut()) {
            if rule.trigger.learns() && rule.matches(&rec.record) {
                let _ = rule.trigger.fire(state, rec.index, &rec.record, true);
            }
        }
    }

    /// The alerts `rec` raises, updating the rules' memory.
    pub(crate) fn alerts(&self, rec: &Arc<StoredRecord>) -> Vec<Alert> {
        let mut states = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = Vec::new();
        for (rule, state) in self.rules.iter().zip(states.iter_mut()) {
            if !rule.matches(&rec.record) {
                continue;
            }
            if let Some(fired) = rule.trigger.fire(state, rec.index, &rec.record, false) {
                out.push(Alert {
                    rule: rule.name.clone(),
                    severity: rule.severity.clone(),
                    description: rule.description.clone(),
                    time: Timestamp::now(),
                    record: rec.clone(),
                    detail: fired.detail,
                    records: fired.records,
                });
            }
        }
        out
    }

    /// Never blocks: webhook delivery is queued. `deliver` is false on the collectors of a group
    /// that do not sequence: they show alerts to their watchers, the sequencer sends them.
    pub(crate) fn evaluate(
        &self,
        rec: &Arc<StoredRecord>,
        events: &broadcast::Sender<Arc<Event>>,
        deliver: bool,
    ) {
        for alert in self.alerts(rec) {
            Registry::global()
                .counter(
                    "recorder_alerts_total",
                    "Alerts raised, by rule.",
                    &[("rule", &alert.rule)],
                )
                .inc();
            tracing::info!(rule = %alert.rule, index = rec.index, detail = %alert.detail, "alert");
            if deliver && !self.queues.is_empty() {
                let body = serde_json::to_vec(&alert.to_json()).unwrap_or_default();
                for q in &self.queues {
                    q.push(&body);
                }
            }
            let _ = events.send(Arc::new(Event::Alert(alert)));
        }
    }
}
