//! Approval before execution, the collector's part. An agent holds an action (a process stopped
//! before an exec's first instruction or before a TLS write leaves) when one of its rules asks for
//! an operator's approval, and asks here; operators list what waits and decide.
//!
//! In memory only, on purpose: a hold lasts seconds to minutes and the agent denies by itself at
//! its deadline, so nothing here has to outlive the process. A restart forgets the requests; the
//! agents' next ask (same id) brings them back, announced again. In a group of collectors each
//! knows only the requests asked of it: operators decide on the collector the agent asked (the
//! approval webhook names it; `recorder approvals` asks every collector it is given).
//!
//! Requests are keyed by id alone, and an id stays bound to the host that first asked: another
//! agent can neither wait on it nor learn its decision.
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use recorder_api::{
    metrics::{Gauge, Registry},
    proto::v1,
};
use recorder_record::time::rfc3339_nanos;
use tokio::sync::watch;
use tonic::Status;

use crate::{metrics::CollectorMetrics, webhook::Queue};

/// A call answers "pending" after this long at most, so no proxy or load balancer in between
/// cuts it; the agent asks again.
const MAX_WAIT: Duration = Duration::from_secs(30);
const MAX_TEXT: usize = 64 * 1024;
/// Ids, identities, sessions, rules and reasons are short; a bound keeps memory bounded.
const MAX_FIELD: usize = 1024;
/// Decisions are kept this long, so an agent that lost its connection while the decision came
/// still learns it when it asks again...
const REMEMBER_NS: i64 = 3600 * 1_000_000_000;
/// ...but no more of them than this (and no more waiting requests), whatever agents send.
const MAX_REMEMBERED: usize = 10_000;
const MAX_PENDING: usize = 10_000;
const ACTIONS: [&str; 3] = ["exec", "sql", "k8s"];

type Decision = v1::ApprovalDecision;

/// The wall clock as the proto's times are: Unix nanoseconds.
pub(crate) fn now() -> i64 {
    recorder_record::time::now_unix_ns() as i64
}

struct Pending {
    request: v1::ApprovalRequest,
    /// Arrival order here: the list is oldest first whatever the agents' clocks say.
    arrival: u64,
    /// Every call waiting on this request holds a receiver; the decision wakes them all.
    decision: watch::Sender<Option<Decision>>,
}

enum Outcome {
    Decided(Decision),
    /// The agent denied it by itself at its deadline.
    Expired {
        deadline_unix_ns: i64,
    },
}

struct Done {
    host: String,
    outcome: Outcome,
}

#[derive(Default)]
struct Book {
    pending: HashMap<String, Pending>,
    done: HashMap<String, Done>,
    /// The ids in `done` in the order they were done, with when: the oldest are forgotten first.
    done_order: VecDeque<(String, i64)>,
    arrivals: u64,
    /// Expiries a sweep found, for the approval webhooks: queued by the next timed sweep,
    /// outside the lock (queueing syncs a file).
    expired_unannounced: Vec<serde_json::Value>,
}

/// What asking found.
enum Asked {
    /// Waiting; `true` if the request is new (to be announced).
    Wait(watch::Receiver<Option<Decision>>, bool),
    Decided(Decision),
    Expired,
}

pub(crate) struct Approvals {
    book: Mutex<Book>,
    /// The `[[approval_webhook]]` receivers: each new request is announced to them, and then
    /// its outcome (decided, or expired without a decision).
    webhooks: Vec<Queue>,
    /// This collector in announcements, so an operator of a group knows where to decide.
    collector: String,
    waiting: Gauge,
    /// Turns true when the collector stops: waiting calls answer at once instead of holding the
    /// shutdown up.
    stop: Option<watch::Receiver<bool>>,
}

impl Approvals {
    pub(crate) fn new(
        webhooks: Vec<Queue>,
        collector: String,
        stop: Option<watch::Receiver<bool>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            book: Mutex::default(),
            webhooks,
            collector,
            waiting: Registry::global().gauge(
                "recorder_approvals_pending",
                "Approval requests waiting for an operator on this collector.",
                &[],
            ),
            stop,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `RequestApproval` from the agent whose certificate names `caller`: waits for a decision
    /// up to the request's `wait_ms` (30 s at most), else answers "pending".
    pub(crate) async fn request(
        &self,
        caller: &str,
        req: v1::ApprovalRequest,
        now: i64,
    ) -> Result<Decision, Status> {
        check(caller, &req)?;
        let id = req.id.clone();
        let wait = Duration::from_millis(req.wait_ms.into()).min(MAX_WAIT);
        let (mut rx, new) = match self.ask(&req, now)? {
            Asked::Decided(d) => return Ok(d),
            Asked::Expired => {
                // Sit out the wait: an agent whose clock is behind ours would otherwise ask in
                // a tight loop until its own deadline.
                self.until_stop(tokio::time::sleep(wait)).await;
                return Ok(pending(id));
            }
            Asked::Wait(rx, new) => (rx, new),
        };
        if new {
            self.announce(&req);
        }
        let decided = async move {
            let decision = rx
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|d| Option::clone(&d));
            match decision {
                Some(d) => d,
                // Expired while waiting: nothing will come.
                None => std::future::pending().await,
            }
        };
        match tokio::time::timeout(wait, self.until_stop(decided)).await {
            Ok(Some(d)) => Ok(d),
            _ => Ok(pending(id)),
        }
    }

    /// Runs `f` unless the collector stops first.
    async fn until_stop<T>(&self, f: impl Future<Output = T>) -> Option<T> {
        let Some(mut stop) = self.stop.clone() else {
            return Some(f.await);
        };
        tokio::select! {
            v = f => Some(v),
            _ = stop.wait_for(|s| *s) => None,
        }
    }

    /// Finds the request (or adds it); the bookkeeping of `request`, without the waiting.
    fn ask(&self, req: &v1::ApprovalRequest, now: i64) -> Result<Asked, Status> {
        let mut book = self.lock();
        self.sweep_locked(&mut book, now);
        let other_host = |host: &str| {
            CollectorMetrics::rejected("wrong_host");
            Status::permission_denied(format!(
                "approval request {:?} belongs to host {host:?}, not {:?}",
                req.id, req.host
            ))
        };
        if let Some(p) = book.pending.get(&req.id) {
            if p.request.host != req.host {
                return Err(other_host(&p.request.host));
            }
            return Ok(Asked::Wait(p.decision.subscribe(), false));
        }
        if let Some(done) = book.done.get(&req.id) {
            if done.host != req.host {
                return Err(other_host(&done.host));
            }
            return Ok(match &done.outcome {
                Outcome::Decided(d) => Asked::Decided(d.clone()),
                Outcome::Expired { .. } => Asked::Expired,
            });
        }
        if req.deadline_unix_ns <= now {
            tracing::warn!(id = ?req.id, host = %req.host, deadline = %rfc3339_nanos(req.deadline_unix_ns.into()),
                "an approval request arrived after its deadline (are the agent's and the collector's clocks apart?); the agent denies it by itself");
            let outcome = Outcome::Expired {
                deadline_unix_ns: req.deadline_unix_ns,
            };
            remember(&mut book, &req.id, &req.host, outcome, now);
            return Ok(Asked::Expired);
        }
        if book.pending.len() >= MAX_PENDING {
            return Err(Status::resource_exhausted(format!(
                "{MAX_PENDING} approval requests are already waiting on this collector"
            )));
        }
        book.arrivals += 1;
        let (decision, rx) = watch::channel(None);
        let arrival = book.arrivals;
        book.pending.insert(
            req.id.clone(),
            Pending {
                request: req.clone(),
                arrival,
                decision,
            },
        );
        self.waiting.set(book.pending.len() as u64);
        Ok(Asked::Wait(rx, true))
    }

    /// Logs a new request and queues it for the approval webhooks (outside the book's lock:
    /// queueing syncs a file).
    fn announce(&self, req: &v1::ApprovalRequest) {
        count("requested");
        // Quoted (`?`): what an agent sends cannot start a line of the log.
        tracing::info!(id = ?req.id, host = %req.host, identity = ?req.identity, pid = req.pid,
            action = %req.action, rule = ?req.rule, text = ?req.text,
            deadline = %rfc3339_nanos(req.deadline_unix_ns.into()), "approval requested");
        if self.webhooks.is_empty() {
            return;
        }
        self.notify(&announcement(req, &self.collector));
    }

    /// Queues `body` for every approval webhook.
    fn notify(&self, body: &serde_json::Value) {
        let body = serde_json::to_vec(body).unwrap_or_default();
        for q in &self.webhooks {
            q.push(&body);
        }
    }

    /// `ListApprovals`: what waits, oldest first.
    pub(crate) fn list(&self, now: i64) -> Vec<v1::ApprovalRequest> {
        let mut book = self.lock();
        self.sweep_locked(&mut book, now);
        let mut pending: Vec<&Pending> = book.pending.values().collect();
        pending.sort_by_key(|p| p.arrival);
        pending.into_iter().map(|p| p.request.clone()).collect()
    }

    /// How many requests wait (the console's header).
    pub(crate) fn waiting(&self, now: i64) -> usize {
        let mut book = self.lock();
        self.sweep_locked(&mut book, now);
        book.pending.len()
    }

    /// `DecideApproval` by the operator named `approver`; wakes the agent's waiting call.
    pub(crate) fn decide(
        &self,
        id: &str,
        approve: bool,
        reason: &str,
        approver: &str,
        now: i64,
    ) -> Result<Decision, Status> {
        if reason.len() > MAX_FIELD * 4 {
            return Err(Status::invalid_argument(format!(
                "the reason is longer than {} bytes",
                MAX_FIELD * 4
            )));
        }
        let mut book = self.lock();
        self.sweep_locked(&mut book, now);
        let Some(p) = book.pending.remove(id) else {
            return Err(match book.done.get(id).map(|d| &d.outcome) {
                Some(Outcome::Decided(d)) => Status::failed_precondition(format!(
                    "approval request {id:?} was already {} by {} at {}",
                    d.state,
                    d.approver,
                    rfc3339_nanos(d.decided_unix_ns.into())
                )),
                Some(Outcome::Expired { deadline_unix_ns }) => {
                    Status::failed_precondition(format!(
                        "approval request {id:?} expired at {}: the agent denied it by itself",
                        rfc3339_nanos((*deadline_unix_ns).into())
                    ))
                }
                None => Status::not_found(format!(
                    "no approval request {id:?} on this collector (in a group, decide on the \
                     collector the agent asked)"
                )),
            });
        };
        let decision = Decision {
            id: id.to_string(),
            state: if approve { "approved" } else { "denied" }.to_string(),
            approver: approver.to_string(),
            decided_unix_ns: now,
            reason: reason.to_string(),
        };
        p.decision.send_replace(Some(decision.clone()));
        let notice = (!self.webhooks.is_empty()).then(|| {
            outcome_notice(
                &p.request,
                &self.collector,
                &Outcome::Decided(decision.clone()),
            )
        });
        let host = p.request.host;
        remember(
            &mut book,
            id,
            &host,
            Outcome::Decided(decision.clone()),
            now,
        );
        self.waiting.set(book.pending.len() as u64);
        drop(book);
        count(&decision.state);
        tracing::info!(id, %host, approver, state = %decision.state, reason, "approval decided");
        if let Some(notice) = notice {
            self.notify(&notice);
        }
        Ok(decision)
    }

    /// Drops the requests whose deadline passed (the agent denied them by itself) and forgets
    /// old outcomes. Every call sweeps; the collector also sweeps on a timer, for the gauge.
    /// The timed sweep also tells the approval webhooks of the expiries found since the last.
    pub(crate) fn sweep(&self, now: i64) {
        let expired = {
            let mut book = self.lock();
            self.sweep_locked(&mut book, now);
            std::mem::take(&mut book.expired_unannounced)
        };
        for notice in &expired {
            self.notify(notice);
        }
    }

    fn sweep_locked(&self, book: &mut Book, now: i64) {
        let expired: Vec<String> = book
            .pending
            .iter()
            .filter(|(_, p)| p.request.deadline_unix_ns <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let Some(p) = book.pending.remove(&id) else {
                continue;
            };
            count("expired");
            tracing::info!(id, host = %p.request.host, "approval request expired without a decision: the agent denies it by itself");
            let outcome = Outcome::Expired {
                deadline_unix_ns: p.request.deadline_unix_ns,
            };
            if !self.webhooks.is_empty() {
                let notice = outcome_notice(&p.request, &self.collector, &outcome);
                book.expired_unannounced.push(notice);
            }
            remember(book, &id, &p.request.host, outcome, now);
            // Dropping `p.decision` ends the waiting calls' wait for a decision.
        }
        while let Some((id, at)) = book.done_order.front() {
            if book.done_order.len() <= MAX_REMEMBERED && now - at < REMEMBER_NS {
                break;
            }
            book.done.remove(id);
            book.done_order.pop_front();
        }
        self.waiting.set(book.pending.len() as u64);
    }
}

fn remember(book: &mut Book, id: &str, host: &str, outcome: Outcome, now: i64) {
    let done = Done {
        host: host.to_string(),
        outcome,
    };
    if book.done.insert(id.to_string(), done).is_none() {
        book.done_order.push_back((id.to_string(), now));
    }
    while book.done_order.len() > MAX_REMEMBERED {
        if let Some((old, _)) = book.done_order.pop_front() {
            book.done.remove(&old);
        }
    }
}

fn pending(id: String) -> Decision {
    Decision {
        id,
        state: "pending".to_string(),
        ..Decision::default()
    }
}

fn count(state: &str) {
    Registry::global()
        .counter(
            "recorder_approvals_total",
            "Approval requests by what became of them: requested, approved, denied, expired.",
            &[("state", state)],
        )
        .inc();
}

/// What an agent may ask: for its own host, one of the actions it can hold, within bounds.
fn check(caller: &str, req: &v1::ApprovalRequest) -> Result<(), Status> {
    if req.host != caller {
        CollectorMetrics::rejected("wrong_host");
        tracing::warn!(cert = %caller, host = %req.host, "refused an approval request for another host");
        return Err(Status::permission_denied(format!(
            "the agent certificate for host {caller:?} may not ask approval for host {:?}",
            req.host
        )));
    }
    let invalid = |why: String| {
        CollectorMetrics::rejected("invalid");
        Err(Status::invalid_argument(why))
    };
    if req.id.is_empty() {
        return invalid("the approval request has no id".into());
    }
    if !ACTIONS.contains(&req.action.as_str()) {
        return invalid(format!(
            "approval request {:?}: action {:?} is not one of exec, sql, k8s",
            req.id, req.action
        ));
    }
    if req.text.len() > MAX_TEXT {
        return invalid(format!(
            "approval request {:?}: its text is longer than {MAX_TEXT} bytes",
            req.id
        ));
    }
    for (name, value) in [
        ("id", &req.id),
        ("identity", &req.identity),
        ("session", &req.session),
        ("rule", &req.rule),
    ] {
        if value.len() > MAX_FIELD {
            return invalid(format!(
                "approval request: its {name} is longer than {MAX_FIELD} bytes"
            ));
        }
    }
    if req.deadline_unix_ns <= 0 {
        return invalid(format!(
            "approval request {:?} has no deadline_unix_ns",
            req.id
        ));
    }
    Ok(())
}

/// A body for the approval webhooks about `req`: its `type`, what the request is, and where it
/// was asked (`collector`, when known).
fn webhook_body(kind: &str, req: &v1::ApprovalRequest, collector: &str) -> serde_json::Value {
    let mut body = serde_json::json!({
        "type": kind,
        "id": req.id,
        "host": req.host,
        "identity": req.identity,
        "session": req.session,
        "pid": req.pid,
        "action": req.action,
        "text": req.text,
        "rule": req.rule,
    });
    if !collector.is_empty() {
        body["collector"] = collector.into();
    }
    body
}

/// The body the approval webhooks receive for a new request.
fn announcement(req: &v1::ApprovalRequest, collector: &str) -> serde_json::Value {
    let mut body = webhook_body("approval_request", req, collector);
    body["held_at"] = rfc3339_nanos(req.held_unix_ns.into()).into();
    body["deadline"] = rfc3339_nanos(req.deadline_unix_ns.into()).into();
    body
}

/// The body the approval webhooks receive when a request they were told of ends: `state`
/// `approved` or `denied` (with `approver`, `reason`, `decided_at`), or `expired` (no decision
/// by the deadline: the agent denies it by itself).
fn outcome_notice(
    req: &v1::ApprovalRequest,
    collector: &str,
    outcome: &Outcome,
) -> serde_json::Value {
    let mut body = webhook_body("approval_outcome", req, collector);
    match outcome {
        Outcome::Decided(d) => {
            body["state"] = d.state.clone().into();
            body["approver"] = d.approver.clone().into();
            body["reason"] = d.reason.clone().into();
            body["decided_at"] = rfc3339_nanos(d.decided_unix_ns.into()).into();
        }
        Outcome::Expired { deadline_unix_ns } => {
            body["state"] = "expired".into();
            body["deadline"] = rfc3339_nanos((*deadline_unix_ns).into()).into();
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    const T0: i64 = 1_800_000_000 * S;

    fn req(id: &str, deadline: i64, wait_ms: u32) -> v1::ApprovalRequest {
        v1::ApprovalRequest {
            id: id.into(),
            host: "web-1".into(),
            identity: "claude".into(),
            session: "s1".into(),
            pid: 42,
            action: "exec".into(),
            text: "rm -rf /srv/data".into(),
            rule: "rm".into(),
            held_unix_ns: T0,
            deadline_unix_ns: deadline,
            wait_ms,
        }
    }

    fn book() -> Arc<Approvals> {
        Approvals::new(Vec::new(), "c1:7443".into(), None)
    }

    #[tokio::test]
    async fn a_new_request_waits_and_is_listed() {
        let a = book();
        let d = a
            .request("web-1", req("web-1/b/1", T0 + 60 * S, 0), T0)
            .await
            .unwrap();
        assert_eq!((d.id.as_str(), d.state.as_str()), ("web-1/b/1", "pending"));
        let listed = a.list(T0);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].text, "rm -rf /srv/data");
        assert_eq!(a.waiting(T0), 1);
    }

    #[tokio::test]
    async fn asking_again_waits_on_the_same_request() {
        let a = book();
        assert!(matches!(
            a.ask(&req("x", T0 + 60 * S, 0), T0),
            Ok(Asked::Wait(_, true))
        ));
        // Asked again (another text does not make it another request): not announced again.
        let mut again = req("x", T0 + 60 * S, 0);
        again.text = "something else".into();
        assert!(matches!(a.ask(&again, T0 + S), Ok(Asked::Wait(_, false))));
        let listed = a.list(T0 + S);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].text, "rm -rf /srv/data");
        // Another host may not use the id.
        let mut other = req("x", T0 + 60 * S, 0);
        other.host = "web-2".into();
        let e = a.request("web-2", other, T0).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
    }

    #[tokio::test]
    async fn a_decision_wakes_the_waiting_call() {
        let a = book();
        let waiter = {
            let a = a.clone();
            tokio::spawn(async move { a.request("web-1", req("x", T0 + 60 * S, 20_000), T0).await })
        };
        while a.list(T0).is_empty() {
            tokio::task::yield_now().await;
        }
        let started = std::time::Instant::now();
        let d = a.decide("x", true, "looks fine", "alice", T0 + S).unwrap();
        let woke = waiter.await.unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(woke, d);
        assert_eq!(
            (
                woke.state.as_str(),
                woke.approver.as_str(),
                woke.reason.as_str()
            ),
            ("approved", "alice", "looks fine")
        );
        assert_eq!(woke.decided_unix_ns, T0 + S);
        assert!(a.list(T0 + S).is_empty());
        // Asking again (after a reconnect) gets the decision at once.
        let again = a
            .request("web-1", req("x", T0 + 60 * S, 20_000), T0 + 2 * S)
            .await
            .unwrap();
        assert_eq!(again, d);
    }

    #[tokio::test]
    async fn a_request_is_decided_once() {
        let a = book();
        a.request("web-1", req("x", T0 + 60 * S, 0), T0)
            .await
            .unwrap();
        a.decide("x", false, "", "bob", T0 + S).unwrap();
        let e = a.decide("x", true, "", "alice", T0 + 2 * S).unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(
            e.message().contains("already denied by bob"),
            "{}",
            e.message()
        );
        let e = a.decide("nope", true, "", "alice", T0).unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
    }

    #[tokio::test]
    async fn a_request_past_its_deadline_is_dropped() {
        let a = book();
        a.request("web-1", req("x", T0 + 10 * S, 0), T0)
            .await
            .unwrap();
        a.request("web-1", req("y", T0 + 60 * S, 0), T0)
            .await
            .unwrap();
        let listed: Vec<String> = a.list(T0 + 11 * S).into_iter().map(|r| r.id).collect();
        assert_eq!(listed, ["y"]);
        let e = a.decide("x", true, "", "alice", T0 + 12 * S).unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(e.message().contains("expired"), "{}", e.message());
        // Asking again after the deadline: pending, not listed again.
        let d = a
            .request("web-1", req("x", T0 + 10 * S, 0), T0 + 13 * S)
            .await
            .unwrap();
        assert_eq!(d.state, "pending");
        assert_eq!(a.list(T0 + 13 * S).len(), 1);
        // A waiting call ends when its request expires (after its wait, not before).
        let waiter = {
            let a = a.clone();
            tokio::spawn(async move { a.request("web-1", req("z", T0 + 20 * S, 200), T0).await })
        };
        while a.list(T0).iter().all(|r| r.id != "z") {
            tokio::task::yield_now().await;
        }
        a.sweep(T0 + 21 * S);
        assert_eq!(waiter.await.unwrap().unwrap().state, "pending");
    }

    #[tokio::test]
    async fn memory_is_bounded() {
        let a = book();
        for i in 0..MAX_REMEMBERED + 10 {
            let id = format!("r{i}");
            a.ask(&req(&id, T0 + 60 * S, 0), T0).unwrap();
            a.decide(&id, true, "", "alice", T0).unwrap();
        }
        {
            let book = a.lock();
            assert_eq!(book.done.len(), MAX_REMEMBERED);
            assert_eq!(book.done_order.len(), MAX_REMEMBERED);
            assert!(!book.done.contains_key("r0"));
            assert!(book.done.contains_key(&format!("r{}", MAX_REMEMBERED + 9)));
        }
        // An hour later every decision is forgotten.
        a.sweep(T0 + REMEMBER_NS);
        assert!(a.lock().done.is_empty());
        // Waiting requests are bounded too.
        for i in 0..MAX_PENDING {
            a.ask(
                &req(&format!("p{i}"), T0 + REMEMBER_NS + 60 * S, 0),
                T0 + REMEMBER_NS,
            )
            .unwrap();
        }
        let e = a
            .request(
                "web-1",
                req("one-more", T0 + REMEMBER_NS + 60 * S, 0),
                T0 + REMEMBER_NS,
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    }

    #[tokio::test]
    async fn bad_requests_are_refused() {
        let a = book();
        let mut r = req("x", T0 + 60 * S, 0);
        r.host = "web-2".into();
        let e = a.request("web-1", r, T0).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        for broken in [
            |r: &mut v1::ApprovalRequest| r.id.clear(),
            |r: &mut v1::ApprovalRequest| r.action = "shell".into(),
            |r: &mut v1::ApprovalRequest| r.text = "x".repeat(MAX_TEXT + 1),
            |r: &mut v1::ApprovalRequest| r.deadline_unix_ns = 0,
        ] {
            let mut r = req("x", T0 + 60 * S, 0);
            broken(&mut r);
            let e = a.request("web-1", r, T0).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
        }
        assert!(a.list(T0).is_empty());
    }

    #[test]
    fn the_outcome_says_how_it_ended() {
        let r = req("web-1/b/7", T0 + 60 * S, 0);
        let decided = Outcome::Decided(Decision {
            id: r.id.clone(),
            state: "denied".into(),
            approver: "alice".into(),
            decided_unix_ns: T0 + 5 * S,
            reason: "not during the freeze".into(),
        });
        let body = outcome_notice(&r, "c1:7443", &decided);
        assert_eq!(body["type"], "approval_outcome");
        assert_eq!(body["id"], "web-1/b/7");
        assert_eq!(body["state"], "denied");
        assert_eq!(body["approver"], "alice");
        assert_eq!(body["reason"], "not during the freeze");
        assert_eq!(body["decided_at"], "2027-01-15T08:00:05.000000000Z");
        assert_eq!(body["text"], r.text);
        assert_eq!(body["collector"], "c1:7443");
        let expired = Outcome::Expired {
            deadline_unix_ns: r.deadline_unix_ns,
        };
        let body = outcome_notice(&r, "", &expired);
        assert_eq!(body["state"], "expired");
        assert_eq!(body["deadline"], "2027-01-15T08:01:00.000000000Z");
        assert!(body.get("approver").is_none() && body.get("collector").is_none());
    }

    #[test]
    fn the_announcement_says_what_waits_and_where() {
        let body = announcement(&req("web-1/b/7", T0 + 60 * S, 0), "c1:7443");
        assert_eq!(body["type"], "approval_request");
        assert_eq!(body["id"], "web-1/b/7");
        assert_eq!(body["pid"], 42);
        assert_eq!(body["held_at"], "2027-01-15T08:00:00.000000000Z");
        assert_eq!(body["deadline"], "2027-01-15T08:01:00.000000000Z");
        assert_eq!(body["collector"], "c1:7443");
        assert!(
            announcement(&req("x", T0, 0), "")
                .get("collector")
                .is_none()
        );
    }
}
