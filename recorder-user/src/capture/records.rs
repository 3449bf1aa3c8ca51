//! Giving kernel events their meaning: boot-unique exec ids and session ids, wall-clock times,
//! identity names, cgroup paths, and the notices that say where the record is incomplete.
use std::collections::HashSet;

use recorder_common::{
    EXEC_ADOPTED, EXEC_ARGV_TRUNCATED, EXEC_ARGV_UNREADABLE, EXEC_OUTSIDE_IDENTITY, EventHeader,
    EventKind, ExecHead, ExitEvent, ProcKey, SHELL_TRUNCATED, ShellEvent,
};
use serde_json::{Map, Value, json};

use super::text::{ExitStatus, command_line, exit_status, render_path, signal_name, split_argv};
use super::{conn::Sender, http::ApiOutput, sql::SqlOutput, unhooked::UnhookedTls};
use crate::{
    identity::Identities,
    record::{Kind, Record, rfc3339_nanos},
};

/// Converts boot-clock nanoseconds (what the probes stamp) to Unix-epoch nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset_ns: i128,
}

impl Clock {
    /// Measures the offset between CLOCK_REALTIME and CLOCK_BOOTTIME now.
    pub fn now() -> Self {
        let read = |clock| {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime writes into the timespec we own.
            unsafe { libc::clock_gettime(clock, &mut ts) };
            ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
        };
        let real = read(libc::CLOCK_REALTIME);
        let boot = read(libc::CLOCK_BOOTTIME);
        Self {
            offset_ns: real - boot,
        }
    }

    pub fn fixed(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    pub fn unix_ns(&self, boot_ns: u64) -> i128 {
        boot_ns as i128 + self.offset_ns
    }

    /// Boot-clock nanoseconds as RFC 3339.
    pub fn rfc3339(&self, boot_ns: u64) -> String {
        rfc3339_nanos(self.unix_ns(boot_ns))
    }
}

/// The first 8 hex digits of the kernel's boot id: makes ids unique across reboots of a host.
pub fn boot_tag() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().replace('-', "").chars().take(8).collect())
        .unwrap_or_else(|_| "00000000".to_string())
}

/// Appends `value` in `radix` (10 or 16, lowercase), as `format!("{value}")` or `{value:x}`.
fn push_digits(out: &mut String, mut value: u64, radix: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b"0123456789abcdef"[(value % radix) as usize];
        value /= radix;
        if value == 0 {
            break;
        }
    }
    out.extend(digits[start..].iter().map(|&b| b as char));
}

/// Builds records from events. Holds the little state records need beyond the event itself.
pub struct RecordBuilder {
    pub host: String,
    boot: String,
    pub clock: Clock,
    /// (session, cgroup id) pairs already reported as a cgroup migration.
    migrations: HashSet<(ProcKey, u64)>,
}

impl RecordBuilder {
    pub fn new(host: String, boot: String, clock: Clock) -> Self {
        Self {
            host,
            boot,
            clock,
            migrations: HashSet::new(),
        }
    }

    /// `exec_id`: boot tag, pid and the exec's boot-clock time; unique per host across boots.
    pub fn exec_id(&self, key: &ProcKey) -> String {
        if key.is_none() {
            return String::new();
        }
        // Built by hand: every record carries two ids, and `format!` was an eighth of the
        // agent's work per SQL statement.
        let mut id = String::with_capacity(self.boot.len() + 32);
        id.push_str(&self.boot);
        id.push('-');
        push_digits(&mut id, key.pid.into(), 10);
        id.push('-');
        push_digits(&mut id, key.ktime, 10);
        id
    }

    /// Session id: derived from the session root's exec, opaque to users.
    pub fn session_id(&self, key: &ProcKey) -> String {
        if key.is_none() {
            return String::new();
        }
        let mut id = String::with_capacity(self.boot.len() + 32);
        id.push('s');
        id.push_str(&self.boot);
        id.push('-');
        push_digits(&mut id, key.ktime, 16);
        id.push('-');
        push_digits(&mut id, key.pid.into(), 10);
        id
    }

    fn record(
        &self,
        kind: Kind,
        boot_ns: u64,
        identity: &str,
        session: &ProcKey,
        pid: u32,
        exec: &ProcKey,
    ) -> Record {
        Record {
            kind,
            time: self.clock.rfc3339(boot_ns),
            host: self.host.clone(),
            identity: identity.to_string(),
            session: self.session_id(session),
            pid,
            exec_id: self.exec_id(exec),
            fields: Map::new(),
        }
    }

    /// An exec event becomes an `exec` record, preceded by a `cgroup_migration` notice the first
    /// time a session is seen running outside its identity's cgroups in a given cgroup.
    pub fn exec(
        &mut self,
        head: &ExecHead,
        argv_area: &[u8],
        identities: &mut Identities,
    ) -> Vec<Record> {
        let h = head.header;
        let identity = identities.name(h.identity).to_string();
        let cgroup = identities.cgroup_path(h.cgroup_id);
        let mut out = Vec::with_capacity(2);
        if head.flags & EXEC_OUTSIDE_IDENTITY != 0
            && self.migrations.insert((head.session, h.cgroup_id))
        {
            let mut notice = self.record(
                Kind::Notice,
                h.ktime,
                &identity,
                &head.session,
                h.pid,
                &head.exec,
            );
            notice
                .fields
                .insert("reason".into(), json!("cgroup_migration"));
            notice.fields.insert(
                "detail".into(),
                json!(format!(
                    "pid {} runs in cgroup {cgroup}, outside the cgroups of identity {identity}; \
                     it descends from a process of that identity and stays recorded under it",
                    h.pid
                )),
            );
            notice.fields.insert("cgroup".into(), json!(cgroup));
            out.push(notice);
        }

        let argv = split_argv(argv_area);
        let kubectl = crate::kube::kubectl::parse_kubectl(&argv);
        let truncated = head.flags & EXEC_ARGV_TRUNCATED != 0;
        let mut rec = self.record(
            Kind::Exec,
            h.ktime,
            &identity,
            &head.session,
            h.pid,
            &head.exec,
        );
        let f = &mut rec.fields;
        f.insert("ppid".into(), json!(head.ppid));
        f.insert(
            "parent_exec_id".into(),
            json!(self.exec_id(&head.parent_exec)),
        );
        f.insert("uid".into(), json!(head.uid));
        f.insert("exe".into(), json!(render_path(&head.exe)));
        f.insert("text".into(), json!(command_line(&argv)));
        f.insert("argv".into(), Value::from(argv));
        f.insert("argv_truncated".into(), json!(truncated));
        if truncated {
            // How long the real argv was, so a reader knows how much is missing.
            f.insert("argv_bytes".into(), json!(head.argv_total));
        }
        if head.flags & EXEC_ARGV_UNREADABLE != 0 {
            f.insert("argv_unreadable".into(), json!(true));
        }
        f.insert("cwd".into(), json!(render_path(&head.cwd)));
        f.insert("cgroup".into(), json!(cgroup));
        if head.flags & EXEC_ADOPTED != 0 {
            // Found already running (it forked inside a watched cgroup): this is its state then,
            // not at its exec.
            f.insert("adopted".into(), json!(true));
        }
        out.push(rec);
        if let Some(cmd) = kubectl {
            out.push(self.kubectl(&out[out.len() - 1], &cmd));
        }
        out
    }

    /// The `k8s` record of a kubectl invocation, next to its `exec` record.
    fn kubectl(&self, exec: &Record, cmd: &crate::kube::kubectl::KubectlCommand) -> Record {
        let mut rec = exec.clone();
        rec.kind = Kind::K8s;
        rec.fields = Map::new();
        let f = &mut rec.fields;
        f.insert("text".into(), exec.fields["text"].clone());
        f.insert("source".into(), json!("kubectl"));
        f.insert("verb".into(), json!(cmd.verb));
        f.insert("resource".into(), json!(cmd.resource));
        f.insert("namespace".into(), json!(cmd.namespace));
        f.insert("name".into(), json!(cmd.names.first()));
        if cmd.names.len() > 1 {
            f.insert("names".into(), json!(cmd.names));
        }
        if cmd.all_namespaces {
            f.insert("all_namespaces".into(), json!(true));
        }
        f.insert("context".into(), json!(cmd.context));
        f.insert("kubeconfig".into(), json!(cmd.kubeconfig));
        f.insert("files".into(), json!(cmd.files));
        // What the API calls of this command carry; kubectl's own calls come as `source: api`.
        f.insert("method".into(), Value::Null);
        f.insert("path".into(), Value::Null);
        f.insert("status".into(), Value::Null);
        rec
    }

    /// A line typed into an interactive shell.
    pub fn shell(&self, ev: &ShellEvent, line: &[u8], identities: &Identities) -> Record {
        let h = ev.header;
        let mut rec = self.record(
            Kind::Shell,
            h.ktime,
            identities.name(h.identity),
            &ev.session,
            h.pid,
            &ev.exec,
        );
        rec.fields
            .insert("text".into(), json!(String::from_utf8_lossy(line)));
        if ev.flags & SHELL_TRUNCATED != 0 {
            rec.fields.insert("truncated".into(), json!(true));
        }
        rec
    }

    /// A Kubernetes API call (or a decoding notice) from the HTTP tracker.
    pub fn api(&self, output: &ApiOutput, identities: &Identities) -> Record {
        match output {
            ApiOutput::Call {
                sender,
                server,
                tls,
                exchange,
                request,
            } => {
                let mut rec = self.sender_record(sender, Kind::K8s, identities);
                let f = &mut rec.fields;
                f.insert(
                    "text".into(),
                    json!(format!("{} {}", exchange.method, exchange.target)),
                );
                f.insert("source".into(), json!("api"));
                f.insert("verb".into(), json!(request.verb));
                f.insert("resource".into(), json!(request.resource));
                if let Some(sub) = &request.subresource {
                    f.insert("subresource".into(), json!(sub));
                }
                f.insert("namespace".into(), json!(request.namespace));
                f.insert("name".into(), json!(request.name));
                f.insert("method".into(), json!(exchange.method));
                f.insert("path".into(), json!(exchange.target));
                f.insert("status".into(), json!(exchange.status));
                f.insert("server".into(), json!(server));
                f.insert("tls".into(), json!(tls));
                f.insert(
                    "http".into(),
                    json!(match exchange.version {
                        crate::protocol::http::Version::Http1 => "1.1",
                        crate::protocol::http::Version::Http2 => "2",
                    }),
                );
                if exchange.truncated {
                    f.insert("truncated".into(), json!(true));
                }
                rec
            }
            ApiOutput::Notice {
                sender,
                reason,
                detail,
            } => self.sender_notice(sender, reason, detail, identities),
        }
    }

    /// A TLS connection whose plaintext no probe delivers, or delivered only from some point.
    pub fn unhooked_tls(&self, u: &UnhookedTls, identities: &Identities) -> Record {
        let (reason, detail) = if u.late {
            (
                "tls_hooked_late",
                format!(
                    "the TLS probes for pid {} were attached after its connection to {} had \
                     already sent encrypted data; what it sent before is not recorded",
                    u.sender.pid, u.server
                ),
            )
        } else {
            (
                "tls_unhooked",
                format!(
                    "pid {} sent TLS-encrypted data to {} through a TLS library the agent has \
                     not hooked; what it sent is not recorded",
                    u.sender.pid, u.server
                ),
            )
        };
        self.sender_notice(&u.sender, reason, &detail, identities)
    }

    pub fn exit(&self, ev: &ExitEvent, identities: &Identities) -> Record {
        let h = ev.header;
        let mut rec = self.record(
            Kind::Exit,
            h.ktime,
            identities.name(h.identity),
            &ev.session,
            h.pid,
            &ev.exec,
        );
        let f = &mut rec.fields;
        match exit_status(ev.exit_code) {
            ExitStatus::Code(code) => {
                f.insert("exit_code".into(), json!(code));
            }
            ExitStatus::Signal {
                signal,
                core_dumped,
            } => {
                f.insert("signal".into(), json!(signal));
                f.insert("signal_name".into(), json!(signal_name(signal)));
                f.insert("core_dumped".into(), json!(core_dumped));
            }
        }
        let duration_ns = h.ktime.saturating_sub(ev.exec.ktime);
        f.insert("duration_ms".into(), json!(duration_ns as f64 / 1e6));
        rec
    }

    /// A `loss` record: `count` events of `kind` for `identity` were dropped in the kernel.
    pub fn loss(&self, now_boot_ns: u64, identity: &str, kind: EventKind, count: u64) -> Record {
        let mut rec = self.record(
            Kind::Loss,
            now_boot_ns,
            identity,
            &ProcKey::NONE,
            0,
            &ProcKey::NONE,
        );
        // The kernel's table of tracked processes is the only loss that is not the ring buffer.
        let reason = if kind == EventKind::Track {
            "process_table_full"
        } else {
            "ring_buffer_full"
        };
        let what = kind.name();
        rec.fields.insert("count".into(), json!(count));
        rec.fields.insert("reason".into(), json!(reason));
        rec.fields.insert("lost_kind".into(), json!(what));
        rec
    }

    /// A statement (or a decoding notice) from the SQL tracker.
    /// Takes the output by value: its strings (a statement can be 1 MiB) move into the record.
    pub fn sql(&self, output: SqlOutput, identities: &Identities) -> Record {
        match output {
            SqlOutput::Statement {
                sender,
                server,
                tls,
                protocol,
                event,
            } => {
                let mut rec = self.sender_record(&sender, Kind::Sql, identities);
                let f = &mut rec.fields;
                f.insert("text".into(), Value::String(event.text));
                f.insert("db.system".into(), json!(protocol.as_str()));
                f.insert("db.server".into(), Value::String(server));
                f.insert(
                    "db.user".into(),
                    event.user.map_or(Value::Null, Value::String),
                );
                f.insert(
                    "db.name".into(),
                    event.database.map_or(Value::Null, Value::String),
                );
                f.insert("tls".into(), Value::Bool(tls));
                if !event.params.is_empty() {
                    let params = event.params.into_iter();
                    let params = params.map(|p| p.map_or(Value::Null, Value::String));
                    f.insert("params".into(), Value::Array(params.collect()));
                }
                f.insert("status".into(), json!(event.status.as_str()));
                f.insert("result".into(), Value::String(event.result));
                if event.truncated {
                    f.insert("truncated".into(), Value::Bool(true));
                }
                rec
            }
            SqlOutput::Notice {
                sender,
                reason,
                detail,
            } => self.sender_notice(&sender, &reason, &detail, identities),
        }
    }

    /// A `notice` about the process that sent some bytes.
    fn sender_notice(
        &self,
        sender: &Sender,
        reason: &str,
        detail: &str,
        identities: &Identities,
    ) -> Record {
        let mut rec = self.sender_record(sender, Kind::Notice, identities);
        rec.fields.insert("reason".into(), json!(reason));
        rec.fields.insert("detail".into(), json!(detail));
        rec
    }

    fn sender_record(&self, sender: &Sender, kind: Kind, identities: &Identities) -> Record {
        self.record(
            kind,
            sender.ktime,
            identities.name(sender.identity),
            &sender.session,
            sender.pid,
            &sender.exec,
        )
    }

    /// A `notice` about one process.
    pub fn process_notice(
        &self,
        header: &EventHeader,
        exec: &ProcKey,
        session: &ProcKey,
        identities: &Identities,
        reason: &str,
        detail: String,
    ) -> Record {
        let mut rec = self.record(
            Kind::Notice,
            header.ktime,
            identities.name(header.identity),
            session,
            header.pid,
            exec,
        );
        rec.fields.insert("reason".into(), json!(reason));
        rec.fields.insert("detail".into(), json!(detail));
        rec
    }

    /// A `notice` about no particular process.
    pub fn notice(&self, now_boot_ns: u64, identity: &str, reason: &str, detail: String) -> Record {
        let mut rec = self.record(
            Kind::Notice,
            now_boot_ns,
            identity,
            &ProcKey::NONE,
            0,
            &ProcKey::NONE,
        );
        rec.fields.insert("reason".into(), json!(reason));
        rec.fields.insert("detail".into(), json!(detail));
        rec
    }
}

/// The boot clock now, in nanoseconds (the probes' time base).
pub fn boot_ns_now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_as_their_formatted_parts() {
        let builder = RecordBuilder::new("h".into(), "789155ce".into(), Clock::now());
        for (pid, ktime) in [
            (1, 1),
            (32749, 34_628_784_871_227),
            (u32::MAX, u64::MAX),
            (4_194_304, 0x1f7e_a46b_d73b),
        ] {
            let key = ProcKey {
                ktime,
                pid,
                _pad: 0,
            };
            assert_eq!(builder.exec_id(&key), format!("789155ce-{pid}-{ktime}"));
            assert_eq!(
                builder.session_id(&key),
                format!("s789155ce-{ktime:x}-{pid}")
            );
        }
        assert_eq!(builder.exec_id(&ProcKey::default()), "");
        assert_eq!(builder.session_id(&ProcKey::default()), "");
    }
}
