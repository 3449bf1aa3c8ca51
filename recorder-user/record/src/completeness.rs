//! What a record says about the completeness of what was recorded around it, and whether the
//! action it records failed. The store counts both per session; a session's completeness
//! verdict lists the gaps in plain words.
use crate::{Body, Record, SqlStatus};

/// A place where the record may be missing something, and why, in an operator's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The `loss`/`notice` reason, or `adopted` for a process found already running.
    pub reason: String,
    pub what: String,
}

/// The gap a record reports, if it reports one: every `loss`, every `notice`, and an `exec` of a
/// process the agent found already running (the probes were attached, or the agent restarted,
/// after it began: what it did before is not recorded).
pub fn gap_of(record: &Record) -> Option<Gap> {
    let (reason, what) = match &record.body {
        Body::Loss(l) => {
            let kind = l.lost_kind.as_deref().unwrap_or("record");
            let what = match l.reason.as_str() {
                "ring_buffer_full" => format!(
                    "ring buffer loss: {} {kind} event(s) dropped in the kernel",
                    l.count
                ),
                "process_table_full" => format!(
                    "the kernel's process table was full: {} process(es) not tracked",
                    l.count
                ),
                "spool_full" => {
                    format!("spool overflow: {} record(s) dropped by the agent", l.count)
                }
                "record_too_large" => {
                    format!("{} record(s) too large to keep were dropped", l.count)
                }
                "spool_corrupt" => format!("{} damaged spool record(s) could not be sent", l.count),
                other => format!("{} {kind} event(s) lost ({other})", l.count),
            };
            (l.reason.clone(), what)
        }
        Body::Notice(n) => {
            let lead = match n.reason.as_str() {
                "tls_unhooked" => "TLS through a library the agent has not hooked",
                "tls_hooked_late" => "TLS probes attached after the connection began",
                "io_uring" => "io_uring: I/O through the ring is not captured",
                "cgroup_migration" => "a process left its identity's cgroup",
                "undecodable_event" => "a kernel event could not be decoded",
                _ => "",
            };
            let what = match (lead, n.detail.is_empty()) {
                ("", true) => n.reason.clone(),
                ("", false) => format!("{}: {}", n.reason, n.detail),
                (lead, true) => lead.to_string(),
                (lead, false) => format!("{lead} ({})", n.detail),
            };
            (n.reason.clone(), what)
        }
        Body::Exec(e) if e.adopted => (
            "adopted".to_string(),
            format!(
                "pid {} was already running when the agent began watching it (probes attached \
                 late, or the agent restarted): what it did before is not recorded",
                record.pid
            ),
        ),
        _ => return None,
    };
    Some(Gap { reason, what })
}

/// A session's completeness in a word or two, from how many gaps may concern it: `complete`,
/// `1 gap`, `3 gaps` (the session lists' column).
pub fn label(gaps: u64) -> String {
    match gaps {
        0 => "complete".into(),
        1 => "1 gap".into(),
        n => format!("{n} gaps"),
    }
}

/// Whether the recorded action failed: a process that exited non-zero or by a signal, an SQL
/// statement the server answered with an error, a Kubernetes API call answered 4xx or 5xx.
pub fn failed(record: &Record) -> bool {
    match &record.body {
        Body::Exit(x) => x.exit_code.is_some_and(|c| c != 0) || x.signal.is_some(),
        Body::Sql(s) => s.status == SqlStatus::Error,
        Body::K8s(k) => k.status.is_some_and(|s| s >= 400),
        _ => false,
    }
}

/// The text a search matches: the command line, the shell line, the SQL statement, or the
/// Kubernetes call's text and path.
pub fn search_text(record: &Record) -> [&str; 2] {
    match &record.body {
        Body::K8s(k) => [k.text.as_str(), k.path.as_deref().unwrap_or("")],
        Body::Exec(e) => [e.text.as_str(), ""],
        Body::Shell(s) => [s.text.as_str(), ""],
        Body::Sql(s) => [s.text.as_str(), ""],
        _ => ["", ""],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: &str, fields: &str) -> Record {
        let line = format!(
            r#"{{"kind":"{kind}","time":"2026-12-05T10:00:00.000000000Z","host":"h","identity":"claude","session":"s","pid":7,"exec_id":"e"{fields}}}"#
        );
        Record::parse(line.as_bytes()).unwrap()
    }

    #[test]
    fn gaps_and_failures() {
        let loss = rec(
            "loss",
            r#","count":3,"lost_kind":"exec","reason":"ring_buffer_full""#,
        );
        assert_eq!(
            gap_of(&loss).unwrap().what,
            "ring buffer loss: 3 exec event(s) dropped in the kernel"
        );
        let notice = rec(
            "notice",
            r#","reason":"tls_unhooked","detail":"pid 7 sent TLS""#,
        );
        assert_eq!(gap_of(&notice).unwrap().reason, "tls_unhooked");
        let adopted = rec(
            "exec",
            r#","adopted":true,"argv":["sh"],"argv_truncated":false,"cgroup":"/a","cwd":"/","exe":"/bin/sh","parent_exec_id":"","ppid":1,"text":"sh","uid":0"#,
        );
        assert_eq!(gap_of(&adopted).unwrap().reason, "adopted");
        let exec = rec(
            "exec",
            r#","argv":["sh"],"argv_truncated":false,"cgroup":"/a","cwd":"/","exe":"/bin/sh","parent_exec_id":"","ppid":1,"text":"sh","uid":0"#,
        );
        assert!(gap_of(&exec).is_none() && !failed(&exec));
        assert!(failed(&rec("exit", r#","duration_ms":1.0,"exit_code":2"#)));
        assert!(!failed(&rec("exit", r#","duration_ms":1.0,"exit_code":0"#)));
        assert!(failed(&rec(
            "exit",
            r#","duration_ms":1.0,"signal":9,"signal_name":"SIGKILL","core_dumped":false"#
        )));
        assert!(failed(&rec(
            "sql",
            r#","db.name":null,"db.server":"unix","db.system":"postgresql","db.user":null,"result":"ERROR 42P01","status":"error","text":"select 1","tls":false"#
        )));
    }
}
