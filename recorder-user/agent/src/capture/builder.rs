//! Giving kernel events their meaning: boot-unique exec ids and session ids, wall-clock times,
//! identity names, cgroup paths, and the notices that say where the record is incomplete.
use std::collections::HashSet;

use recorder_common::{
    DataHead, EXEC_ADOPTED, EXEC_ARGV_TRUNCATED, EXEC_ARGV_UNREADABLE, EXEC_OUTSIDE_IDENTITY,
    EventHeader, EventKind, ExecHead, ExitEvent, ProcKey, SHELL_TRUNCATED, ShellEvent,
};
use recorder_protocol::{
    http::Version,
    k8s::kubectl::{KubectlCommand, parse_kubectl},
    sql::{Protocol, Status},
};
use recorder_record::{
    Approval, Body, DbSystem, Exec, Exit, K8s, K8sSource, Loss, Notice, Record, Shell, Sql,
    SqlStatus, Timestamp, ids,
};

use super::text::{ExitStatus, command_line, exit_status, render_path, signal_name, split_argv};
use super::{
    conn::Origin, http::ApiOutput, sql::SqlOutput, unhooked::UnhookedTls,
    workloads::SessionWorkloads,
};
use crate::identity::Identities;

/// Converts boot-clock nanoseconds (what the probes stamp) to Unix-epoch nanoseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    offset_ns: i128,
}

impl Clock {
    /// Measures the offset between `CLOCK_REALTIME` and `CLOCK_BOOTTIME` now.
    pub(crate) fn now() -> Self {
        let read = |clock| {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime writes into the timespec we own.
            unsafe { libc::clock_gettime(clock, &raw mut ts) };
            i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
        };
        let real = read(libc::CLOCK_REALTIME);
        let boot = read(libc::CLOCK_BOOTTIME);
        Self {
            offset_ns: real - boot,
        }
    }

    /// A fixed offset, for records that must come out the same on every run.
    #[cfg(test)]
    pub(crate) fn fixed(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Boot-clock nanoseconds as a wall-clock time.
    pub(crate) fn time(&self, boot_ns: u64) -> Timestamp {
        Timestamp(i128::from(boot_ns) + self.offset_ns)
    }
}

/// The first 8 hex digits of the kernel's boot id: makes ids unique across reboots of a host.
pub(crate) fn boot_tag() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map_or_else(
        |_| "00000000".to_string(),
        |s| s.trim().replace('-', "").chars().take(8).collect(),
    )
}

/// Builds records from events. Holds the little state records need beyond the event itself.
pub(crate) struct RecordBuilder {
    pub host: String,
    boot: String,
    pub clock: Clock,
    /// (session, cgroup id) pairs already reported as a cgroup migration.
    migrations: HashSet<(ProcKey, u64)>,
    /// The Kubernetes workload of each session of an identity selected by pod.
    pub workloads: SessionWorkloads,
}

impl RecordBuilder {
    pub(crate) fn new(host: String, boot: String, clock: Clock) -> Self {
        Self {
            host,
            boot,
            clock,
            migrations: HashSet::new(),
            workloads: SessionWorkloads::default(),
        }
    }

    /// `exec_id` of an exec (empty for none).
    pub(crate) fn exec_id(&self, key: &ProcKey) -> String {
        if key.is_none() {
            return String::new();
        }
        ids::exec_id(&self.boot, key.pid, key.ktime)
    }

    /// Session id from the session root's exec (empty for none).
    pub(crate) fn session_id(&self, key: &ProcKey) -> String {
        if key.is_none() {
            return String::new();
        }
        ids::session_id(&self.boot, key.pid, key.ktime)
    }

    /// A record of `body` about the process `exec` of session `session` (both may be none).
    fn record(
        &self,
        boot_ns: u64,
        identity: &str,
        session: &ProcKey,
        pid: u32,
        exec: &ProcKey,
        body: Body,
    ) -> Record {
        Record {
            time: self.clock.time(boot_ns),
            host: self.host.clone(),
            identity: identity.to_string(),
            session: self.session_id(session),
            pid,
            exec_id: self.exec_id(exec),
            workload: self.workloads.get(session),
            redacted: Vec::new(),
            body,
        }
    }

    /// An exec event becomes an `exec` record, preceded by a `cgroup_migration` notice the first
    /// time a session is seen running outside its identity's cgroups in a given cgroup, and
    /// followed by a `k8s` record when it is a `kubectl` command.
    pub(crate) fn exec(
        &mut self,
        head: &ExecHead,
        argv_area: &[u8],
        identities: &mut Identities,
    ) -> Vec<Record> {
        let h = head.header;
        let identity = identities.name(h.identity).to_string();
        let cgroup = identities.cgroup_path(h.cgroup_id);
        // The first exec seen of a session (its root's, normally) says where the session runs.
        if !head.session.is_none()
            && !self.workloads.knows(&head.session)
            && let Some(workload) = identities.workload(h.cgroup_id)
        {
            self.workloads.insert(head.session, workload);
        }
        let mut out = Vec::with_capacity(2);
        if head.flags & EXEC_OUTSIDE_IDENTITY != 0
            && self.migrations.insert((head.session, h.cgroup_id))
        {
            let detail = format!(
                "pid {} runs in cgroup {cgroup}, outside the cgroups of identity {identity}; \
                 it descends from a process of that identity and stays recorded under it",
                h.pid
            );
            out.push(self.record(
                h.ktime,
                &identity,
                &head.session,
                h.pid,
                &head.exec,
                Body::Notice(Notice {
                    cgroup: Some(cgroup.clone()),
                    detail,
                    reason: "cgroup_migration".into(),
                }),
            ));
        }

        let argv = split_argv(argv_area);
        let kubectl = parse_kubectl(&argv);
        let truncated = head.flags & EXEC_ARGV_TRUNCATED != 0;
        let exec = Exec {
            // Found already running (it forked inside a watched cgroup): this is its state then,
            // not at its exec.
            adopted: head.flags & EXEC_ADOPTED != 0,
            text: command_line(&argv),
            argv,
            // How long the real argv was, so a reader knows how much is missing.
            argv_bytes: truncated.then_some(head.argv_total),
            argv_truncated: truncated,
            argv_unreadable: head.flags & EXEC_ARGV_UNREADABLE != 0,
            cgroup,
            cwd: render_path(&head.cwd),
            exe: render_path(&head.exe),
            parent_exec_id: self.exec_id(&head.parent_exec),
            ppid: head.ppid,
            uid: head.uid,
        };
        let k8s = kubectl.map(|cmd| kubectl_body(&exec.text, cmd));
        let rec = self.record(
            h.ktime,
            &identity,
            &head.session,
            h.pid,
            &head.exec,
            Body::Exec(exec),
        );
        if let Some(k8s) = k8s {
            // The same process and time as its exec record.
            let k8s = Record {
                body: Body::K8s(k8s),
                ..rec.clone()
            };
            out.push(rec);
            out.push(k8s);
        } else {
            out.push(rec);
        }
        out
    }

    /// A line typed into an interactive shell.
    pub(crate) fn shell(&self, ev: &ShellEvent, line: &[u8], identities: &Identities) -> Record {
        let h = ev.header;
        self.record(
            h.ktime,
            identities.name(h.identity),
            &ev.session,
            h.pid,
            &ev.exec,
            Body::Shell(Shell {
                text: String::from_utf8_lossy(line).into_owned(),
                truncated: ev.flags & SHELL_TRUNCATED != 0,
            }),
        )
    }

    /// A Kubernetes API call (or a decoding notice) from the HTTP tracker.
    pub(crate) fn api(&self, output: &ApiOutput, identities: &Identities) -> Record {
        match output {
            ApiOutput::Call {
                origin,
                server,
                tls,
                exchange,
                request,
            } => self.origin_record(
                origin,
                identities,
                Body::K8s(K8s {
                    text: format!("{} {}", exchange.method, exchange.target),
                    source: K8sSource::Api,
                    verb: request.verb.clone(),
                    resource: request.resource.clone(),
                    subresource: request.subresource.clone(),
                    namespace: request.namespace.clone(),
                    name: request.name.clone(),
                    method: Some(exchange.method.clone()),
                    path: Some(exchange.target.clone()),
                    status: exchange.status,
                    server: Some(server.clone()),
                    tls: Some(*tls),
                    http: Some(
                        match exchange.version {
                            Version::Http1 => "1.1",
                            Version::Http2 => "2",
                        }
                        .into(),
                    ),
                    truncated: exchange.truncated,
                    ..K8s::default()
                }),
            ),
            ApiOutput::Notice {
                origin,
                reason,
                detail,
            } => self.origin_notice(origin, reason, detail, identities),
        }
    }

    /// A TLS connection whose plaintext no probe delivers, or delivered only from some point.
    pub(crate) fn unhooked_tls(&self, u: &UnhookedTls, identities: &Identities) -> Record {
        let (reason, detail) = if u.late {
            (
                "tls_hooked_late",
                format!(
                    "the TLS probes for pid {} were attached after its connection to {} had \
                     already sent encrypted data; what it sent before is not recorded",
                    u.origin.pid, u.server
                ),
            )
        } else {
            (
                "tls_unhooked",
                format!(
                    "pid {} sent TLS-encrypted data to {} through a TLS library the agent has \
                     not hooked; what it sent is not recorded",
                    u.origin.pid, u.server
                ),
            )
        };
        self.origin_notice(&u.origin, reason, &detail, identities)
    }

    pub(crate) fn exit(&self, ev: &ExitEvent, identities: &Identities) -> Record {
        let h = ev.header;
        let duration_ns = h.ktime.saturating_sub(ev.exec.ktime);
        let mut exit = Exit {
            duration_ms: duration_ns as f64 / 1e6,
            ..Exit::default()
        };
        match exit_status(ev.exit_code) {
            ExitStatus::Code(code) => exit.exit_code = Some(code),
            ExitStatus::Signal {
                signal,
                core_dumped,
            } => {
                exit.signal = Some(signal);
                exit.signal_name = Some(signal_name(signal));
                exit.core_dumped = Some(core_dumped);
            }
        }
        self.record(
            h.ktime,
            identities.name(h.identity),
            &ev.session,
            h.pid,
            &ev.exec,
            Body::Exit(exit),
        )
    }

    /// A `loss` record: `count` events of `kind` for `identity` were dropped in the kernel.
    pub(crate) fn loss(
        &self,
        now_boot_ns: u64,
        identity: &str,
        kind: EventKind,
        count: u64,
    ) -> Record {
        // The kernel's table of tracked processes is the only loss that is not the ring buffer.
        let reason = if kind == EventKind::Track {
            "process_table_full"
        } else {
            "ring_buffer_full"
        };
        self.record(
            now_boot_ns,
            identity,
            &ProcKey::NONE,
            0,
            &ProcKey::NONE,
            Body::Loss(Loss {
                count,
                lost_kind: Some(kind.name().into()),
                reason: reason.into(),
            }),
        )
    }

    /// A statement (or a decoding notice) from the SQL tracker.
    /// Takes the output by value: its strings (a statement can be 1 MiB) move into the record.
    pub(crate) fn sql(&self, output: SqlOutput, identities: &Identities) -> Record {
        match output {
            SqlOutput::Statement {
                origin,
                server,
                tls,
                protocol,
                event,
            } => self.origin_record(
                &origin,
                identities,
                Body::Sql(Sql {
                    db_name: event.database,
                    db_server: server,
                    db_system: match protocol {
                        Protocol::Postgresql => DbSystem::Postgresql,
                        Protocol::Mysql => DbSystem::Mysql,
                    },
                    db_user: event.user,
                    params: (!event.params.is_empty()).then_some(event.params),
                    result: event.result,
                    status: match event.status {
                        Status::Ok => SqlStatus::Ok,
                        Status::Error => SqlStatus::Error,
                        Status::Unknown => SqlStatus::Unknown,
                    },
                    text: event.text,
                    tls,
                    truncated: event.truncated,
                }),
            ),
            SqlOutput::Notice {
                origin,
                reason,
                detail,
            } => self.origin_notice(&origin, &reason, &detail, identities),
        }
    }

    /// A `notice` about the process that sent some bytes.
    fn origin_notice(
        &self,
        origin: &Origin,
        reason: &str,
        detail: &str,
        identities: &Identities,
    ) -> Record {
        self.origin_record(origin, identities, notice(reason, detail.to_string()))
    }

    fn origin_record(&self, origin: &Origin, identities: &Identities, body: Body) -> Record {
        self.record(
            origin.ktime,
            identities.name(origin.identity),
            &origin.session,
            origin.pid,
            &origin.exec,
            body,
        )
    }

    /// A `notice` about one process.
    pub(crate) fn process_notice(
        &self,
        header: &EventHeader,
        exec: &ProcKey,
        session: &ProcKey,
        identities: &Identities,
        reason: &str,
        detail: String,
    ) -> Record {
        self.record(
            header.ktime,
            identities.name(header.identity),
            session,
            header.pid,
            exec,
            notice(reason, detail),
        )
    }

    /// Now, as a record time.
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.time(boot_ns_now())
    }

    /// An `approval` record about the process of a data event (the common fields; the caller
    /// fills the body).
    pub(crate) fn data_process(&self, head: &DataHead, identities: &Identities) -> Record {
        self.record(
            head.header.ktime,
            identities.name(head.header.identity),
            &head.session,
            head.header.pid,
            &head.exec,
            Body::Approval(Approval::default()),
        )
    }

    /// An `approval` record about a process known only by its ids (a hold left by a previous
    /// run of the agent).
    pub(crate) fn approval_record(
        &self,
        identity: &str,
        session: &str,
        pid: u32,
        exec_id: &str,
        approval: Approval,
    ) -> Record {
        Record {
            time: self.now(),
            host: self.host.clone(),
            identity: identity.to_string(),
            session: session.to_string(),
            pid,
            exec_id: exec_id.to_string(),
            workload: None,
            redacted: Vec::new(),
            body: Body::Approval(approval),
        }
    }

    /// A `notice` about no particular process.
    pub(crate) fn notice(
        &self,
        now_boot_ns: u64,
        identity: &str,
        reason: &str,
        detail: String,
    ) -> Record {
        self.record(
            now_boot_ns,
            identity,
            &ProcKey::NONE,
            0,
            &ProcKey::NONE,
            notice(reason, detail),
        )
    }
}

fn notice(reason: &str, detail: String) -> Body {
    Body::Notice(Notice {
        cgroup: None,
        detail,
        reason: reason.into(),
    })
}

/// The `k8s` record of a kubectl invocation, next to its `exec` record. The fields of its API
/// calls are null here: kubectl's own calls come as `source: api` records.
fn kubectl_body(text: &str, cmd: KubectlCommand) -> K8s {
    let mut names = cmd.names;
    let name = names.first().cloned();
    K8s {
        text: text.to_string(),
        source: K8sSource::Kubectl,
        verb: cmd.verb,
        resource: cmd.resource,
        namespace: cmd.namespace,
        name,
        names: (names.len() > 1).then(|| std::mem::take(&mut names)),
        all_namespaces: cmd.all_namespaces,
        context: Some(cmd.context),
        kubeconfig: Some(cmd.kubeconfig),
        files: Some(cmd.files),
        ..K8s::default()
    }
}

/// The boot clock now, in nanoseconds (the probes' time base).
pub(crate) fn boot_ns_now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
