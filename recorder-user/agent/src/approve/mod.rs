//! Holds for approval. The kernel programs stop every exec (or TLS write) of an identity with
//! approval rules right after its event; here, on the capture thread, each such event is
//! matched against the rules. No rule met: the process is continued at once (after the ring
//! buffer is drained, so that a second held event of the same process is seen first). A rule
//! met: a `pending` approval record is written, the hold is saved to the holds file, and the
//! collector is asked ([`ask`]). The operator's decision continues (`SIGCONT`) or kills
//! (`SIGKILL`) the process, and a record says which, by whom, under which rule. No decision by
//! the deadline: killed, recorded as `timed_out`.
pub(crate) mod ask;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::mpsc as std_mpsc,
    time::{Duration, Instant},
};

use recorder_api::{
    metrics::{Counter, Registry},
    proto::v1::ApprovalRequest,
    tls::ClientTls,
};
use recorder_approval::{
    Action, Held, HoldsFile, OnRestart, Policy,
    holds::{Outcome, proc_stat, resolve_left, signal, start_ticks},
};
use recorder_common::{HOLD_EXEC, HOLD_TLS_WRITE};
use recorder_protocol::sql::{Protocol, lexer::Dialect};
use recorder_record::{Approval, Body, Record};
use tokio::sync::mpsc;

use crate::{capture::builder::RecordBuilder, identity::Identities};
use ask::{Decided, now_unix_ns};

/// `[approval]` checked at start.
pub(crate) struct ApprovalPlan {
    pub policy: Policy,
    pub targets: Vec<ClientTls>,
    pub holds_file: PathBuf,
    pub timeout: Duration,
    pub on_restart: OnRestart,
}

struct Pending {
    held: Held,
    since: Instant,
    deadline: Instant,
    /// The `pending` record as written (redacted): the decision's record is made from it.
    record: Record,
}

pub(crate) struct Holds {
    policy: Policy,
    file: HoldsFile,
    timeout: Duration,
    on_restart: OnRestart,
    /// Request ids are `host/run/n`: `run` tells this agent run from the others.
    prefix: String,
    next: u64,
    pending: HashMap<String, Pending>,
    asks: mpsc::UnboundedSender<ApprovalRequest>,
    decided: std_mpsc::Receiver<Decided>,
    /// Processes held for nothing, continued once the ring buffer is drained.
    released: Vec<u32>,
    outcomes: Vec<(&'static str, Counter)>,
}

const OUTCOMES: [&str; 7] = [
    "released",
    "approved",
    "denied",
    "timed_out",
    "ended",
    "bypassed",
    "resolved_at_restart",
];

/// A hold this old whose process is not stopped was continued by someone else (the stop lands
/// within microseconds of the event; this leaves room for a loaded machine).
const STOPPED_BY: Duration = Duration::from_millis(250);

/// Whether the held process runs (is neither stopped nor gone).
fn running(held: &Held) -> bool {
    match proc_stat(held.pid) {
        Some((state, ticks)) => {
            ticks == held.start_ticks && !matches!(state, 'T' | 't' | 'Z' | 'X')
        }
        None => false,
    }
}

impl Holds {
    /// Starts the asking thread and resolves what a previous run left held. Returns the holds
    /// and the records of what was resolved.
    pub(crate) fn start(
        plan: ApprovalPlan,
        builder: &RecordBuilder,
    ) -> std::io::Result<(Self, Vec<Record>)> {
        let (decided_tx, decided) = std_mpsc::channel();
        let asks = ask::spawn(plan.targets, decided_tx)?;
        let file = HoldsFile::new(plan.holds_file);
        let registry = Registry::global();
        let outcomes = OUTCOMES
            .iter()
            .map(|o| {
                (
                    *o,
                    registry.counter(
                        "recorder_approval_holds_total",
                        "Processes stopped for an approval rule, by how they went on.",
                        &[("outcome", o)],
                    ),
                )
            })
            .collect();
        let mut holds = Holds {
            policy: plan.policy,
            file,
            timeout: plan.timeout,
            on_restart: plan.on_restart,
            prefix: format!("{}/{:x}", builder.host, now_unix_ns()),
            next: 0,
            pending: HashMap::new(),
            asks,
            decided,
            released: Vec::new(),
            outcomes,
        };
        let records = holds.resolve_left(builder)?;
        Ok((holds, records))
    }

    /// What the kernel must stop, per identity index.
    pub(crate) fn kernel_flags(&self, identities: &Identities) -> Vec<(u32, u32)> {
        (0..identities.list.len() as u32)
            .map(|i| {
                let h = self.policy.kernel_holds(identities.name(i));
                let flags = if h.execs { HOLD_EXEC } else { 0 }
                    | if h.tls_writes { HOLD_TLS_WRITE } else { 0 };
                (i, flags)
            })
            .collect()
    }

    /// A held exec: the `pending` record if a rule needs an approval for it; otherwise the
    /// process will be continued.
    pub(crate) fn exec_held(&mut self, exec: &Record, builder: &RecordBuilder) -> Option<Record> {
        let Body::Exec(e) = &exec.body else {
            return None;
        };
        let args = e.argv.get(1..).unwrap_or_default();
        let argv0 = e.argv.first().map(String::as_str).unwrap_or_default();
        // The program by its executable, or as argv[0] names it (a script runs as its
        // interpreter; a link runs as its target).
        let rule = [e.exe.as_str(), argv0]
            .into_iter()
            .filter(|p| !p.is_empty())
            .find_map(|program| self.policy.exec_rule(&exec.identity, program, args));
        if let Some(rule) = rule {
            let rule = rule.name.clone();
            return Some(self.pending_record(exec, Action::Exec, e.text.clone(), rule, builder));
        }
        self.released.push(exec.pid);
        None
    }

    /// A held TLS write of `template`'s process: the statements and requests it completes.
    pub(crate) fn write_held(
        &mut self,
        template: &Record,
        statements: Option<&(Protocol, Vec<String>)>,
        requests: &[(String, String)],
        builder: &RecordBuilder,
    ) -> Option<Record> {
        let identity = template.identity.as_str();
        let mut found = None;
        if let Some((protocol, texts)) = statements {
            let dialect = match protocol {
                Protocol::Postgresql => Dialect::Postgresql,
                Protocol::Mysql => Dialect::Mysql,
            };
            found = texts.iter().find_map(|t| {
                self.policy
                    .sql_rule(identity, t, dialect)
                    .map(|r| (Action::Sql, t.clone(), r.name.clone()))
            });
        }
        if found.is_none() {
            found = requests.iter().find_map(|(method, target)| {
                self.policy
                    .k8s_rule(identity, method, target)
                    .map(|r| (Action::K8s, format!("{method} {target}"), r.name.clone()))
            });
        }
        if let Some((action, text, rule)) = found {
            return Some(self.pending_record(template, action, text, rule, builder));
        }
        self.released.push(template.pid);
        None
    }

    fn pending_record(
        &mut self,
        template: &Record,
        action: Action,
        text: String,
        rule: String,
        builder: &RecordBuilder,
    ) -> Record {
        self.next += 1;
        Record {
            time: builder.now(),
            body: Body::Approval(Approval {
                action: action.as_str().into(),
                request: format!("{}/{}", self.prefix, self.next),
                rule,
                state: "pending".into(),
                text,
                ..Approval::default()
            }),
            redacted: Vec::new(),
            ..template.clone()
        }
    }

    /// Keeps the hold of `record` (a `pending` record as written, redacted) and asks for it.
    pub(crate) fn ask(&mut self, record: Record) {
        let Body::Approval(a) = &record.body else {
            return;
        };
        let held_unix_ns = now_unix_ns();
        let deadline_unix_ns = held_unix_ns + self.timeout.as_nanos() as i64;
        let held = Held {
            request: a.request.clone(),
            pid: record.pid,
            start_ticks: start_ticks(record.pid).unwrap_or(0),
            identity: record.identity.clone(),
            session: record.session.clone(),
            exec_id: record.exec_id.clone(),
            action: a.action.clone(),
            text: a.text.clone(),
            rule: a.rule.clone(),
            held_unix_ns,
        };
        tracing::info!(request = %held.request, pid = held.pid, identity = %held.identity, action = %held.action, rule = %held.rule, text = %held.text, "held for approval");
        let _ = self.asks.send(ApprovalRequest {
            id: held.request.clone(),
            host: record.host.clone(),
            identity: held.identity.clone(),
            session: held.session.clone(),
            pid: held.pid,
            action: held.action.clone(),
            text: held.text.clone(),
            rule: held.rule.clone(),
            held_unix_ns,
            deadline_unix_ns,
            wait_ms: 0,
        });
        let now = Instant::now();
        self.pending.insert(
            held.request.clone(),
            Pending {
                held,
                since: now,
                deadline: now + self.timeout,
                record,
            },
        );
        self.save();
    }

    /// After a drain: continues the processes held for nothing, unless a rule holds them too.
    pub(crate) fn release(&mut self) {
        for pid in std::mem::take(&mut self.released) {
            if !self.pending.values().any(|p| p.held.pid == pid) {
                signal(pid, libc::SIGCONT);
                self.count("released");
            }
        }
    }

    /// Decisions that came in, and holds past their deadline: their records.
    pub(crate) fn poll(&mut self, builder: &RecordBuilder) -> Vec<Record> {
        let mut out = Vec::new();
        while let Ok(d) = self.decided.try_recv() {
            let Some(p) = self.pending.remove(&d.id) else {
                continue;
            };
            let (state, sig) = if d.approved {
                ("approved", libc::SIGCONT)
            } else {
                ("denied", libc::SIGKILL)
            };
            out.push(self.resolve(p, state, sig, d.approver, d.reason, builder));
        }
        let now = Instant::now();
        // Someone sent the held process SIGCONT (its own parent can): it is killed at once,
        // and the record says the hold was bypassed.
        let bypassed: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.since) >= STOPPED_BY && running(&p.held))
            .map(|(id, _)| id.clone())
            .collect();
        for id in bypassed {
            if let Some(p) = self.pending.remove(&id) {
                let why =
                    "continued by another process before a decision (SIGCONT): killed".to_string();
                out.push(self.resolve(p, "bypassed", libc::SIGKILL, String::new(), why, builder));
            }
        }
        let late: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(id, _)| id.clone())
            .collect();
        for id in late {
            if let Some(p) = self.pending.remove(&id) {
                let why = format!("no decision within {} s: denied", self.timeout.as_secs());
                out.push(self.resolve(p, "timed_out", libc::SIGKILL, String::new(), why, builder));
            }
        }
        if !out.is_empty() {
            self.save();
        }
        out
    }

    /// The process ended while held (killed by someone else): its holds are over.
    pub(crate) fn on_exit(&mut self, pid: u32, builder: &RecordBuilder) -> Vec<Record> {
        let ids: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.held.pid == pid)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in ids {
            if let Some(p) = self.pending.remove(&id) {
                let why = "the process ended while held".to_string();
                out.push(self.resolve(p, "ended", 0, String::new(), why, builder));
            }
        }
        if !out.is_empty() {
            self.save();
        }
        out
    }

    /// The agent stops: every hold is resolved as `on_restart` says, now, rather than left to
    /// the next run.
    pub(crate) fn shutdown(&mut self, builder: &RecordBuilder) -> Vec<Record> {
        let (sig, outcome) = match self.on_restart {
            OnRestart::Deny => (libc::SIGKILL, "killed"),
            OnRestart::Approve => (libc::SIGCONT, "continued"),
        };
        let all: Vec<Pending> = self.pending.drain().map(|(_, p)| p).collect();
        let out = all
            .into_iter()
            .map(|p| {
                let why = format!(
                    "the agent stopped while holding it: {outcome} (on_restart = \"{}\")",
                    self.on_restart.as_str()
                );
                self.resolve(p, "resolved_at_restart", sig, String::new(), why, builder)
            })
            .collect();
        self.save();
        self.release();
        out
    }

    /// Signals the process and writes the decision's record.
    fn resolve(
        &mut self,
        p: Pending,
        state: &'static str,
        sig: i32,
        approver: String,
        detail: String,
        builder: &RecordBuilder,
    ) -> Record {
        let still_held = self.pending.values().any(|q| q.held.pid == p.held.pid);
        // The same process, held again for another action: it goes on only when every hold of
        // it is approved.
        if sig != 0
            && !(sig == libc::SIGCONT && still_held)
            && start_ticks(p.held.pid) == Some(p.held.start_ticks)
        {
            signal(p.held.pid, sig);
        }
        self.count(state);
        tracing::info!(request = %p.held.request, pid = p.held.pid, state, approver = %approver, "approval resolved");
        let mut record = p.record;
        record.time = builder.now();
        if let Body::Approval(a) = &mut record.body {
            a.state = state.into();
            a.approver = approver;
            a.detail = detail;
            a.held_ms = p.since.elapsed().as_millis() as u64;
        }
        record
    }

    /// Resolves the holds a previous run left in the holds file.
    fn resolve_left(&mut self, builder: &RecordBuilder) -> std::io::Result<Vec<Record>> {
        let left = resolve_left(&self.file, self.on_restart).map_err(std::io::Error::other)?;
        Ok(left
            .into_iter()
            .map(|(held, outcome)| {
                self.count("resolved_at_restart");
                let detail = match outcome {
                    Outcome::Killed => "held when the agent stopped; killed at its restart (on_restart = \"deny\")",
                    Outcome::Continued => "held when the agent stopped; continued at its restart (on_restart = \"approve\")",
                    Outcome::Gone => "held when the agent stopped; the process was gone at its restart",
                };
                tracing::warn!(request = %held.request, pid = held.pid, detail, "resolved a hold left by the previous run");
                builder.approval_record(
                    &held.identity,
                    &held.session,
                    held.pid,
                    &held.exec_id,
                    Approval {
                        action: held.action.clone(),
                        detail: detail.into(),
                        held_ms: (now_unix_ns() - held.held_unix_ns).max(0) as u64 / 1_000_000,
                        request: held.request.clone(),
                        rule: held.rule.clone(),
                        state: "resolved_at_restart".into(),
                        text: held.text.clone(),
                        ..Approval::default()
                    },
                )
            })
            .collect())
    }

    fn save(&self) {
        let held: Vec<Held> = self.pending.values().map(|p| p.held.clone()).collect();
        if let Err(e) = self.file.save(&held) {
            tracing::error!(error = %e, "cannot save the held processes: if the agent dies now, they stay stopped");
        }
    }

    fn count(&self, outcome: &str) {
        if let Some((_, c)) = self.outcomes.iter().find(|(o, _)| *o == outcome) {
            c.inc();
        }
    }
}
