//! The web console's view of this collector's log and approval requests
//! ([`recorder_console::Source`]), and the records and alerts forwarded to its live view.
use std::sync::Arc;

use recorder_console::{
    AlertView, Answer, ApprovalView, DecideError, DecisionView, Filter, Live, SessionRecords,
    Source,
};
use recorder_store::{
    StoredRecord,
    index::{SessionFilter, SessionSummary},
    integrity::Hash,
};
use tokio::sync::broadcast;

use crate::{
    Event,
    approvals::{self, Approvals},
    log::{Log, lock, read_embedded},
};

pub(crate) struct LogView(pub Log, pub Arc<Approvals>);

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Source for LogView {
    fn sessions<'a>(&'a self, f: &'a Filter) -> Answer<'a, Vec<SessionSummary>> {
        Box::pin(async move {
            let filter = SessionFilter {
                identity: &f.identity,
                host: &f.host,
                since_unix_ns: f.since_unix_ns,
                namespace: &f.namespace,
                pod: &f.pod,
                until_unix_ns: f.until_unix_ns,
                failed: f.failed,
                gaps: f.gaps,
                ..SessionFilter::default()
            };
            self.0.sessions(&filter, 0).await.map_err(text)
        })
    }

    fn session<'a>(
        &'a self,
        host: &'a str,
        session: &'a str,
    ) -> Answer<'a, Option<SessionRecords>> {
        Box::pin(async move {
            let (summary, context) = match &self.0 {
                Log::Embedded(store, _) => {
                    let store = lock(store);
                    match store.sessions().find(session, host) {
                        Ok(Some(s)) => (s.clone(), store.sessions().context_gaps(s)),
                        Ok(None) => return Ok(None),
                        Err(hosts) => {
                            return Err(format!(
                                "session {session:?} exists on several hosts ({}): name one",
                                hosts.join(", ")
                            ));
                        }
                    }
                }
                Log::Postgres(pg, _) => {
                    let filter = SessionFilter {
                        host,
                        session,
                        ..SessionFilter::default()
                    };
                    let Some(s) = self.0.sessions(&filter, 1).await.map_err(text)?.pop() else {
                        return Ok(None);
                    };
                    let context = pg.context_gaps(&s).await.map_err(text)?;
                    (s, context)
                }
            };
            let records = self
                .0
                .session(session.to_string(), summary.host.clone())
                .await
                .map_err(|s| s.message().to_string())?;
            let context = match &self.0 {
                Log::Embedded(store, restorer) => read_embedded(store, restorer, context)
                    .await
                    .map_err(text)?,
                Log::Postgres(..) => {
                    let mut out = Vec::with_capacity(context.len());
                    for i in context {
                        let found = self.0.read_range(i, i + 1).await.map_err(text)?;
                        out.extend(found.into_iter().filter(|r| r.index == i));
                    }
                    out
                }
            };
            Ok(Some(SessionRecords {
                summary,
                records,
                context,
            }))
        })
    }

    fn records(&self, from: u64, to: u64) -> Answer<'_, Vec<StoredRecord>> {
        Box::pin(async move {
            let mut out = self.0.read_range(from, to).await.map_err(text)?;
            // A range past pruned records reaches further: keep to what was asked.
            out.retain(|r| r.index < to);
            Ok(out)
        })
    }

    fn size(&self) -> Answer<'_, u64> {
        Box::pin(async move {
            match &self.0 {
                Log::Embedded(store, _) => Ok(lock(store).len()),
                Log::Postgres(pg, _) => pg.placed().await.map_err(text),
            }
        })
    }

    fn checkpoint(&self) -> Answer<'_, Option<recorder_store::integrity::checkpoint::Checkpoint>> {
        Box::pin(async move { self.0.latest_checkpoint().await.map_err(text) })
    }

    fn proofs(&self, indexes: Vec<u64>, size: u64) -> Answer<'_, Vec<Option<Vec<Hash>>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(indexes.len());
            for i in indexes {
                let proof = self.0.inclusion_proof(i, size).await.map_err(text)?;
                out.push(proof.map(|(_, path)| path));
            }
            Ok(out)
        })
    }

    fn public_key(&self) -> Vec<u8> {
        self.0.public_key()
    }

    fn approvals(&self) -> Vec<ApprovalView> {
        self.1
            .list(approvals::now())
            .into_iter()
            .map(|r| ApprovalView {
                id: r.id,
                host: r.host,
                identity: r.identity,
                session: r.session,
                pid: r.pid,
                action: r.action,
                text: r.text,
                rule: r.rule,
                held_unix_ns: r.held_unix_ns,
                deadline_unix_ns: r.deadline_unix_ns,
            })
            .collect()
    }

    fn approvals_waiting(&self) -> usize {
        self.1.waiting(approvals::now())
    }

    fn decide(
        &self,
        id: &str,
        approve: bool,
        reason: &str,
        approver: &str,
    ) -> Result<DecisionView, DecideError> {
        match self
            .1
            .decide(id, approve, reason, approver, approvals::now())
        {
            Ok(d) => Ok(DecisionView {
                id: d.id,
                state: d.state,
                approver: d.approver,
                decided_unix_ns: d.decided_unix_ns,
                reason: d.reason,
            }),
            Err(s) => {
                let why = s.message().to_string();
                Err(match s.code() {
                    tonic::Code::NotFound => DecideError::NotFound(why),
                    tonic::Code::FailedPrecondition => DecideError::Conflict(why),
                    _ => DecideError::Invalid(why),
                })
            }
        }
    }
}

/// Passes what the collector stores and the alerts it raises on to the console.
pub(crate) fn forward(events: &broadcast::Sender<Arc<Event>>) -> broadcast::Sender<Live> {
    let (live, _) = broadcast::channel(4096);
    let mut from = events.subscribe();
    let to = live.clone();
    tokio::spawn(async move {
        loop {
            let event = match from.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "the console's live view fell behind");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let item = match &*event {
                Event::Record(r) => Live::Record(r.clone()),
                Event::Alert(a) => Live::Alert(Arc::new(AlertView {
                    host: a.record.host.clone(),
                    session: a.record.record.session.clone(),
                    index: a.record.index,
                    rule: a.rule.clone(),
                    severity: a.severity.clone(),
                    description: a.description.clone(),
                    detail: a.detail.clone(),
                    time: a.time.to_string(),
                })),
            };
            // No page open is not an error.
            let _ = to.send(item);
        }
    });
    live
}
