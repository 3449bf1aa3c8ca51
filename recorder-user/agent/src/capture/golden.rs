//! Golden records: every kind and variant of record the agent builds, from fixed kernel events
//! and tracker outputs, compared byte for byte with `tests/fixtures/records/golden.jsonl`. The
//! JSON form of a record is a contract (docs/records.md): any change to it shows up here.
//! `RECORDER_BLESS=1 cargo test golden` rewrites the file after a deliberate change.
use recorder_common::{
    EXEC_ADOPTED, EXEC_ARGV_TRUNCATED, EXEC_ARGV_UNREADABLE, EXEC_OUTSIDE_IDENTITY, EventHeader,
    EventKind, ExecHead, ExitEvent, PATH_COMPONENT, PATH_DEPTH, PATH_TOO_DEEP, PATH_UNLINKED,
    ProcKey, RawPath, SHELL_LINE_MAX, SHELL_TRUNCATED, ShellEvent,
};

use super::{
    builder::{Clock, RecordBuilder},
    conn::Origin,
    http::ApiOutput,
    sql::SqlOutput,
    unhooked::UnhookedTls,
};
use recorder_protocol::{
    http::{Exchange, Version},
    k8s::api::ApiRequest,
    sql::{MALFORMED, NO_RESPONSE, Protocol, SqlEvent, Status},
};
use recorder_record::Record;

use crate::identity::Identities;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/records/golden.jsonl"
);

/// 2026-11-28T10:00:00Z minus a boot time of 1000 s.
const OFFSET_NS: i128 = 1_795_860_000_000_000_000 - 1_000_000_000_000;

/// A signal whose default action dumps core.
const SIGSEGV: u32 = 11;

fn key(pid: u32, ktime: u64) -> ProcKey {
    ProcKey {
        ktime,
        pid,
        _pad: 0,
    }
}

fn header(kind: EventKind, identity: u32, pid: u32, ktime: u64, cgroup_id: u64) -> EventHeader {
    EventHeader {
        kind: kind as u32,
        identity,
        pid,
        _pad: 0,
        ktime,
        cgroup_id,
    }
}

/// A kernel path from its components, root first (the kernel sends them leaf first).
fn path(parts: &[&str], flags: u32) -> RawPath {
    let mut out = RawPath {
        depth: parts.len() as u32,
        flags,
        components: [[0; PATH_COMPONENT]; PATH_DEPTH],
    };
    for (slot, part) in out.components.iter_mut().zip(parts.iter().rev()) {
        slot[..part.len()].copy_from_slice(part.as_bytes());
    }
    out
}

struct Exec<'a> {
    pid: u32,
    ktime: u64,
    parent: ProcKey,
    session: ProcKey,
    flags: u32,
    /// The executable's path components, root first, and its `PATH_*` flags (a `RawPath` is
    /// built from them when the event is: a list of them would take a large stack frame).
    exe: (&'a [&'a str], u32),
    argv: &'a [&'a str],
}

fn exec_head(e: &Exec<'_>, identity: u32, cgroup_id: u64) -> (ExecHead, Vec<u8>) {
    let mut argv = Vec::new();
    for a in e.argv {
        argv.extend_from_slice(a.as_bytes());
        argv.push(0);
    }
    let head = ExecHead {
        header: header(EventKind::Exec, identity, e.pid, e.ktime, cgroup_id),
        exec: key(e.pid, e.ktime),
        parent_exec: e.parent,
        session: e.session,
        ppid: e.parent.pid,
        uid: 1000,
        flags: e.flags,
        argv_len: argv.len() as u32,
        argv_total: if e.flags & EXEC_ARGV_TRUNCATED != 0 {
            200_000
        } else {
            argv.len() as u64
        },
        exe: path(e.exe.0, e.exe.1),
        cwd: path(&["home", "agent"], 0),
    };
    (head, argv)
}

fn origin(pid: u32, ktime: u64, session: ProcKey) -> Origin {
    Origin {
        identity: 0,
        pid,
        exec: key(pid, 1_000_000_000),
        session,
        ktime,
    }
}

fn sql(text: &str, params: Vec<Option<String>>, user: Option<&str>, status: Status) -> SqlEvent {
    SqlEvent {
        text: text.into(),
        params,
        db_system: Protocol::Postgresql,
        user: user.map(Into::into),
        database: user.map(|_| "shop".into()),
        status,
        result: match status {
            Status::Ok => "UPDATE 2".into(),
            Status::Error => "ERROR 42P01: relation \"nope\" does not exist".into(),
            Status::Unknown => NO_RESPONSE.into(),
        },
        truncated: status == Status::Unknown,
    }
}

fn api(
    version: Version,
    method: &str,
    target: &str,
    status: Option<u16>,
    request: ApiRequest,
) -> (Box<Exchange>, Box<ApiRequest>) {
    (
        Box::new(Exchange {
            version,
            method: method.into(),
            target: target.into(),
            authority: Some("10.0.0.1:6443".into()),
            status,
            stream_id: Some(1),
            truncated: status.is_none(),
        }),
        Box::new(request),
    )
}

/// Every record variant, in a fixed order.
fn records() -> Vec<Record> {
    let mut ids = Identities::fixed(
        &["claude", "ops-bot"],
        &[(7001, "/agents/claude"), (7002, "/elsewhere/moved")],
    );
    let mut b = RecordBuilder::new("web-1".into(), "789155ce".into(), Clock::fixed(OFFSET_NS));
    let root = key(500, 1_000_000_000);
    let mut out = exec_records(&mut b, &mut ids, root);
    out.extend(shell_and_exit_records(&b, &ids, root));
    out.push(b.loss(1_003_000_000, "claude", EventKind::Data, 17));
    out.push(b.loss(1_003_000_000, "ops-bot", EventKind::Track, 2));
    out.extend(sql_records(&b, &ids, root));
    out.extend(api_records(&b, &ids, root));
    out.extend(notice_records(&b, &ids, root));
    out
}

/// A session's execs: inside and outside its identity, truncated, adopted, unreadable, kubectl.
fn exec_records(b: &mut RecordBuilder, ids: &mut Identities, root: ProcKey) -> Vec<Record> {
    let mut out = Vec::new();
    let execs = [
        Exec {
            pid: 500,
            ktime: 1_000_000_000,
            parent: ProcKey::NONE,
            session: root,
            flags: 0,
            exe: (&["usr", "bin", "bash"], 0),
            argv: &["bash", "-c", "ls /; sh -c \"exit 3\""],
        },
        Exec {
            pid: 501,
            ktime: 1_000_100_000,
            parent: root,
            session: root,
            flags: EXEC_OUTSIDE_IDENTITY,
            exe: (&["usr", "bin", "ls"], 0),
            argv: &["ls", "-l", "it's a file", ""],
        },
        Exec {
            pid: 502,
            ktime: 1_000_200_000,
            parent: root,
            session: root,
            flags: EXEC_OUTSIDE_IDENTITY,
            exe: (&["usr", "bin", "ls"], 0),
            argv: &["ls", "again"],
        },
        Exec {
            pid: 503,
            ktime: 1_000_300_000,
            parent: root,
            session: root,
            flags: EXEC_ARGV_TRUNCATED | EXEC_ADOPTED,
            exe: (&["memfd:payload"], PATH_UNLINKED),
            argv: &["payload", "a\u{e9}b", "tab\there"],
        },
        Exec {
            pid: 504,
            ktime: 1_000_400_000,
            parent: root,
            session: root,
            flags: EXEC_ARGV_UNREADABLE,
            exe: (&["deep", "er"], PATH_TOO_DEEP),
            argv: &[],
        },
        Exec {
            pid: 505,
            ktime: 1_000_500_000,
            parent: root,
            session: root,
            flags: 0,
            exe: (&["usr", "bin", "kubectl"], 0),
            argv: &[
                "kubectl",
                "--context",
                "prod",
                "delete",
                "pod",
                "web-1",
                "web-2",
                "-n",
                "shop",
                "-f",
                "a.yaml,b.yaml",
            ],
        },
        Exec {
            pid: 506,
            ktime: 1_000_600_000,
            parent: root,
            session: root,
            flags: 0,
            exe: (&["usr", "bin", "kubectl"], 0),
            argv: &["kubectl", "get", "pods", "-A"],
        },
    ];
    for (i, e) in execs.iter().enumerate() {
        let cgroup = if e.flags & EXEC_OUTSIDE_IDENTITY != 0 {
            7002
        } else {
            7001
        };
        let (head, argv) = exec_head(e, (i % 2) as u32, cgroup);
        out.extend(b.exec(&head, &argv, ids));
    }
    out
}

/// Shell lines, and exits by code, by signal and with a core dump.
fn shell_and_exit_records(b: &RecordBuilder, ids: &Identities, root: ProcKey) -> Vec<Record> {
    let mut out = Vec::new();
    for (line, flags) in [("cd /tmp && export X=1", 0), ("echo long", SHELL_TRUNCATED)] {
        let ev = ShellEvent {
            header: header(EventKind::Shell, 0, 500, 1_001_000_000, 0),
            exec: root,
            session: root,
            flags,
            len: line.len() as u32,
            line: [0; SHELL_LINE_MAX],
        };
        out.push(b.shell(&ev, line.as_bytes(), ids));
    }
    for (pid, code) in [(501, 3 << 8), (502, 0), (503, 9), (504, 0x80 | SIGSEGV)] {
        let ev = ExitEvent {
            header: header(EventKind::Exit, 0, pid, 1_002_345_678, 0),
            exec: key(pid, 1_000_100_000),
            session: root,
            exit_code: code,
            _pad: 0,
        };
        out.push(b.exit(&ev, ids));
    }
    out
}

/// SQL statements (succeeded, failed, unanswered) and a malformed-stream notice.
fn sql_records(b: &RecordBuilder, ids: &Identities, root: ProcKey) -> Vec<Record> {
    let mut out = Vec::new();
    let statements = [
        (
            Protocol::Postgresql,
            true,
            sql(
                "UPDATE t SET a = $1 WHERE id = $2",
                vec![Some("x".into()), None],
                Some("app"),
                Status::Ok,
            ),
        ),
        (
            Protocol::Postgresql,
            false,
            sql("SELECT * FROM nope", vec![], Some("app"), Status::Error),
        ),
        (
            Protocol::Mysql,
            false,
            sql("SELECT 1", vec![], None, Status::Unknown),
        ),
    ];
    for (protocol, tls, event) in statements {
        out.push(b.sql(
            SqlOutput::Statement {
                origin: origin(500, 1_004_000_000, root),
                server: "127.0.0.1:5432".into(),
                tls,
                protocol,
                event,
            },
            ids,
        ));
    }
    out.push(b.sql(
        SqlOutput::Notice {
            origin: origin(500, 1_004_500_000, root),
            reason: MALFORMED.into(),
            detail: "PostgreSQL client startup packet with length 3".into(),
        },
        ids,
    ));
    out
}

/// Kubernetes API calls over HTTP/2 and HTTP/1.1 (answered and not), and a malformed-stream
/// notice.
fn api_records(b: &RecordBuilder, ids: &Identities, root: ProcKey) -> Vec<Record> {
    let mut out = Vec::new();
    let (exchange, request) = api(
        Version::Http2,
        "GET",
        "/api/v1/namespaces/shop/pods/web-1/log?container=app",
        Some(200),
        ApiRequest {
            verb: "get".into(),
            resource: Some("pods".into()),
            subresource: Some("log".into()),
            namespace: Some("shop".into()),
            name: Some("web-1".into()),
            group: None,
            version: Some("v1".into()),
        },
    );
    out.push(b.api(
        &ApiOutput::Call {
            origin: origin(505, 1_005_000_000, root),
            server: "10.0.0.1:6443".into(),
            tls: true,
            exchange,
            request,
        },
        ids,
    ));
    let (exchange, request) = api(
        Version::Http1,
        "POST",
        "/apis/apps/v1/deployments",
        None,
        ApiRequest {
            verb: "create".into(),
            resource: Some("deployments".into()),
            subresource: None,
            namespace: None,
            name: None,
            group: Some("apps".into()),
            version: Some("v1".into()),
        },
    );
    out.push(b.api(
        &ApiOutput::Call {
            origin: origin(505, 1_005_100_000, root),
            server: "[::1]:6443".into(),
            tls: false,
            exchange,
            request,
        },
        ids,
    ));
    out.push(b.api(
        &ApiOutput::Notice {
            origin: origin(505, 1_005_200_000, root),
            reason: "malformed_http".into(),
            detail: "HTTP/2 frame of 99999999 bytes".into(),
        },
        ids,
    ));
    out
}

/// TLS the probes could not see into, an `io_uring` process, and an undecodable event.
fn notice_records(b: &RecordBuilder, ids: &Identities, root: ProcKey) -> Vec<Record> {
    let mut out = Vec::new();
    for late in [false, true] {
        out.push(b.unhooked_tls(
            &UnhookedTls {
                origin: origin(507, 1_006_000_000, root),
                server: "192.0.2.7:443".into(),
                late,
            },
            ids,
        ));
    }
    out.push(b.process_notice(
        &header(EventKind::IoUring, 0, 508, 1_007_000_000, 0),
        &key(508, 1_000_900_000),
        &root,
        ids,
        "io_uring",
        "pid 508 set up an io_uring: reads and writes it submits through the ring are not captured"
            .into(),
    ));
    out.push(b.notice(
        1_008_000_000,
        "",
        "undecodable_event",
        "event of 3 bytes is shorter than its header".into(),
    ));
    out
}

#[test]
fn records_are_byte_identical_to_the_golden_file() {
    let lines: String = records().iter().map(|r| r.to_line() + "\n").collect();
    if std::env::var_os("RECORDER_BLESS").is_some() {
        std::fs::write(GOLDEN, &lines).unwrap();
    }
    let golden = std::fs::read_to_string(GOLDEN).expect("golden file (RECORDER_BLESS=1 writes it)");
    for (i, (got, want)) in lines.lines().zip(golden.lines()).enumerate() {
        assert_eq!(got, want, "record {i} differs from the golden file");
    }
    assert_eq!(lines.lines().count(), golden.lines().count());
}
