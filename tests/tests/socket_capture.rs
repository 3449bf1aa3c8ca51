//! End-to-end: socket capture off the system-call path (the `sock_send_length` and
//! `sock_recv_length` tracepoints), against a real PostgreSQL 15 server: what is attached, the
//! system calls that move bytes through user buffers (`sendmmsg`/`recvmmsg` included), the ones
//! that do not (a notice, never garbage), a socket passed to another process, unwatched
//! processes, and the system-call fallback.
use recorder_tests::{Agent, Cgroup, dump, of_kind, postgres::Postgres};
use serde_json::Value;

/// The tracepoints process `pid` has programs attached to, as the kernel describes the BPF links
/// it holds (`/proc/PID/fdinfo`: `link_type`, `tp_name`): tracefs tracepoints (`perf` links)
/// and BTF-typed ones (`raw_tracepoint` links).
fn attached_tracepoints(pid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        if matches!(field("link_type"), Some("perf" | "raw_tracepoint"))
            && let Some(tp) = field("tp_name")
        {
            found.push(tp.to_string());
        }
    }
    found.sort();
    found
}

#[test]
fn no_system_call_tracepoint_is_attached_where_the_kernel_has_socket_tracepoints() {
    assert!(
        std::path::Path::new("/sys/kernel/tracing/events/sock/sock_send_length").exists()
            || !std::path::Path::new("/sys/kernel/tracing/events/sock").exists(),
        "this kernel has no sock_send_length tracepoint: the test needs Linux 6.3 or later"
    );
    let cg = Cgroup::new("no-syscalls");
    // Alone: another test's agent may use the system-call tracepoints meanwhile.
    let agent = Agent::start_alone(&["--identity", &cg.identity_flag("quiet")]);
    let attached = attached_tracepoints(agent.pid());
    for expected in [
        "io_uring_create",
        "sock_recv_length",
        "sock_send_length",
        "vm_unmapped_area",
    ] {
        assert!(
            attached.iter().any(|t| t == expected),
            "{expected} in {attached:?}"
        );
    }
    let syscalls: Vec<&String> = attached.iter().filter(|t| t.starts_with("sys_")).collect();
    assert!(
        syscalls.is_empty(),
        "system-call tracepoints attached: {syscalls:?}"
    );
    assert!(
        agent
            .metrics()
            .contains("recorder_socket_capture{mode=\"socket_tracepoints\"} 1"),
        "{}",
        agent.metrics()
    );
    drop(agent);
    // The same listing shows them when the agent is told to use them: the check above can fail.
    let agent = Agent::start_alone(&[
        "--identity",
        &cg.identity_flag("quiet"),
        "--socket-capture",
        "syscalls",
    ]);
    let attached = attached_tracepoints(agent.pid());
    assert!(
        attached.iter().any(|t| t == "sys_exit_write"),
        "{attached:?}"
    );
    assert!(
        agent
            .metrics()
            .contains("recorder_socket_capture{mode=\"syscall_tracepoints\"} 1")
    );
}

/// A PostgreSQL client over TCP that sends each query as two messages of one `sendmmsg` call
/// (the message header, then the text) and reads with `recvmmsg` (two messages per call,
/// `MSG_WAITFORONE`), through libc by ctypes.
const MMSG_CLIENT: &str = r#"
import ctypes, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)

class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

class msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(iovec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]

class mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", msghdr), ("len", ctypes.c_uint)]

MSG_WAITFORONE = 0x10000
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
fd = s.fileno()
keep = []

def messages(parts):
    vec = (mmsghdr * len(parts))()
    for i, data in enumerate(parts):
        buf = ctypes.create_string_buffer(data, len(data))
        iov = (iovec * 1)(iovec(ctypes.cast(buf, ctypes.c_void_p), len(data)))
        keep.extend([buf, iov])
        vec[i].hdr.iov = iov
        vec[i].hdr.iovlen = 1
    return vec

def sendmmsg(parts):
    vec = messages(parts)
    n = libc.sendmmsg(fd, vec, len(parts), 0)
    assert n == len(parts), ctypes.get_errno()

def receive():
    bufs = [ctypes.create_string_buffer(8192) for _ in range(2)]
    vec = (mmsghdr * 2)()
    for i, buf in enumerate(bufs):
        iov = (iovec * 1)(iovec(ctypes.cast(buf, ctypes.c_void_p), 8192))
        keep.append(iov)
        vec[i].hdr.iov = iov
        vec[i].hdr.iovlen = 1
    n = libc.recvmmsg(fd, vec, 2, MSG_WAITFORONE, None)
    assert n > 0, ctypes.get_errno()
    return b"".join(bufs[i].raw[:vec[i].len] for i in range(n))

def until_ready():
    buf = b""
    while True:
        buf += receive()
        while len(buf) >= 5:
            n = struct.unpack("!I", buf[1:5])[0]
            if len(buf) < 1 + n:
                break
            tag, buf = buf[:1], buf[1 + n:]
            if tag == b"Z":
                return

body = struct.pack("!I", 196608) + b"user\0alice\0database\0shop\0\0"
sendmmsg([struct.pack("!I", len(body) + 4), body])
until_ready()
for q in sys.argv[2:]:
    q = q.encode() + b"\0"
    sendmmsg([b"Q" + struct.pack("!I", len(q) + 4), q])
    until_ready()
s.sendall(b"X" + struct.pack("!I", 4))
s.close()
"#;

#[test]
fn sendmmsg_and_recvmmsg_are_captured() {
    let pg = Postgres::start();
    let cg = Cgroup::new("mmsg");
    let agent = Agent::start(&["--identity", &cg.identity_flag("db-agent")]);
    let statements = [
        "CREATE TABLE m (id int)",
        "INSERT INTO m VALUES (1), (2), (3)",
        "SELECT * FROM m",
        "DROP TABLE m",
    ];
    let port = pg.port.to_string();
    let mut args = vec!["-c", MMSG_CLIENT, &port];
    args.extend(statements);
    let out = cg.run("/usr/bin/python3", &args);
    assert!(out.status.success(), "{out:?}");
    let records = agent.wait_for("the DROP TABLE statement", |r| {
        r.iter()
            .any(|x| x["kind"] == "sql" && x["text"] == "DROP TABLE m")
    });
    let got: Vec<(&str, &str)> = of_kind(&records, "sql")
        .iter()
        .map(|r| (r["text"].as_str().unwrap(), r["result"].as_str().unwrap()))
        .collect();
    let results = ["CREATE TABLE", "INSERT 0 3", "SELECT 3", "DROP TABLE"];
    let want: Vec<(&str, &str)> = statements.into_iter().zip(results).collect();
    assert_eq!(got, want, "{}", dump(&records));
    for r in of_kind(&records, "sql") {
        assert_eq!(r["db.user"], "alice");
        assert_eq!(r["db.name"], "shop");
        assert_eq!(r["db.server"], format!("127.0.0.1:{}", pg.port));
    }
    assert!(of_kind(&records, "notice").is_empty(), "{}", dump(&records));
}

/// Connects, starts a session as `alice`, then sends one simple query from a file with
/// `sendfile` (no user buffer), and reads the answer with `recv`.
const SENDFILE_CLIENT: &str = r#"
import os, socket, struct, sys, tempfile
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))

def until_ready():
    buf = b""
    while True:
        data = s.recv(65536)
        assert data, "server closed"
        buf += data
        while len(buf) >= 5:
            n = struct.unpack("!I", buf[1:5])[0]
            if len(buf) < 1 + n:
                break
            tag, buf = buf[:1], buf[1 + n:]
            if tag == b"Z":
                return

body = struct.pack("!I", 196608) + b"user\0alice\0database\0shop\0\0"
s.sendall(struct.pack("!I", len(body) + 4) + body)
until_ready()
q = sys.argv[2].encode() + b"\0"
with tempfile.TemporaryFile() as f:
    f.write(b"Q" + struct.pack("!I", len(q) + 4) + q)
    f.flush()
    sent = os.sendfile(s.fileno(), f.fileno(), 0, 5 + len(q))
    assert sent == 5 + len(q), sent
until_ready()
s.sendall(b"X" + struct.pack("!I", 4))
s.close()
"#;

#[test]
fn sendfile_to_a_watched_socket_gives_a_notice_never_garbage() {
    let pg = Postgres::start();
    let cg = Cgroup::new("sendfile");
    let agent = Agent::start(&["--identity", &cg.identity_flag("db-agent")]);
    let port = pg.port.to_string();
    let out = cg.run(
        "/usr/bin/python3",
        &["-c", SENDFILE_CLIENT, &port, "SELECT 'sent by sendfile'"],
    );
    assert!(out.status.success(), "{out:?}");
    let records = agent.wait_for("a data_uncaptured notice", |r| {
        r.iter().any(|x| x["reason"] == "data_uncaptured")
    });
    let notice = records
        .iter()
        .find(|r| r["reason"] == "data_uncaptured")
        .unwrap();
    let python = records
        .iter()
        .rev()
        .find(|r| r["kind"] == "exec" && r["argv"][0] == "/usr/bin/python3")
        .unwrap_or_else(|| panic!("python's exec: {}", dump(&records)));
    assert_eq!(notice["exec_id"], python["exec_id"]);
    let detail = notice["detail"].as_str().unwrap();
    assert!(
        detail.contains("sendfile") && detail.contains(&format!("127.0.0.1:{}", pg.port)),
        "{detail}"
    );
    // The statement moved without a user buffer: nothing else was made up from it.
    let records = agent.stop();
    assert!(
        of_kind(&records, "sql")
            .iter()
            .all(|r| r["text"] != "SELECT 'sent by sendfile'"),
        "{}",
        dump(&records)
    );
}

/// Process A connects and starts the session, then passes the socket to process B (its child)
/// over a Unix socket pair (`SCM_RIGHTS`) and exits; B runs the queries on it. Every read is
/// preceded by a peek (`MSG_PEEK`) at the message header: peeked bytes are read again, and
/// must be recorded once.
const PASSED_SOCKET: &str = r#"
import os, socket, struct, sys
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
pid = os.fork()
if pid == 0:
    a.close()
    msg, fds, _, _ = socket.recv_fds(b, 16, 1)
    s = socket.socket(fileno=fds[0])
else:
    b.close()
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))

def until_ready():
    buf = b""
    while True:
        assert s.recv(5, socket.MSG_PEEK), "server closed"
        data = s.recv(65536)
        assert data, "server closed"
        buf += data
        while len(buf) >= 5:
            n = struct.unpack("!I", buf[1:5])[0]
            if len(buf) < 1 + n:
                break
            tag, buf = buf[:1], buf[1 + n:]
            if tag == b"Z":
                return

if pid != 0:
    body = struct.pack("!I", 196608) + b"user\0alice\0database\0shop\0\0"
    s.sendall(struct.pack("!I", len(body) + 4) + body)
    until_ready()
    socket.send_fds(a, [b"socket"], [s.fileno()])
    s.close()
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
for q in sys.argv[2:]:
    q = q.encode() + b"\0"
    s.sendall(b"Q" + struct.pack("!I", len(q) + 4) + q)
    until_ready()
s.sendall(b"X" + struct.pack("!I", 4))
s.close()
"#;

#[test]
fn a_socket_passed_to_another_process_is_still_decoded_and_peeks_count_once() {
    let pg = Postgres::start();
    let cg = Cgroup::new("scm-rights");
    let agent = Agent::start(&["--identity", &cg.identity_flag("db-agent")]);
    let port = pg.port.to_string();
    let statements = ["SELECT 1", "SELECT 'from the child'"];
    let mut args = vec!["-c", PASSED_SOCKET, &port];
    args.extend(statements);
    let out = cg.run("/usr/bin/python3", &args);
    assert!(out.status.success(), "{out:?}");
    let records = agent.wait_for("the child's second statement", |r| {
        r.iter()
            .any(|x| x["kind"] == "sql" && x["text"] == "SELECT 'from the child'")
    });
    let sql = of_kind(&records, "sql");
    let got: Vec<(&str, &str, &str)> = sql
        .iter()
        .map(|r| {
            (
                r["text"].as_str().unwrap(),
                r["result"].as_str().unwrap(),
                r["db.user"].as_str().unwrap_or("null"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("SELECT 1", "SELECT 1", "alice"),
            ("SELECT 'from the child'", "SELECT 1", "alice")
        ],
        "{}",
        dump(&records)
    );
    // Sent by the child, which never made the connection itself.
    let parent_pid = records
        .iter()
        .find(|r| r["kind"] == "exec")
        .map(|r| r["pid"].clone())
        .unwrap();
    for r in &sql {
        assert_ne!(r["pid"], parent_pid, "{}", dump(&records));
    }
}

#[test]
fn an_unwatched_process_socket_traffic_is_never_recorded() {
    let pg = Postgres::start();
    let watched = Cgroup::new("sock-watched");
    let unwatched = Cgroup::new("sock-unwatched");
    let agent = Agent::start(&["--identity", &watched.identity_flag("db-agent")]);
    let conninfo = pg.tcp("alice", "shop", "disable");
    for (cg, sql) in [
        (&unwatched, "SELECT 'unwatched'"),
        (&watched, "SELECT 'watched'"),
    ] {
        let out = cg.run("/usr/bin/psql", &["-X", "-q", &conninfo, "-c", sql]);
        assert!(out.status.success(), "{out:?}");
    }
    agent.wait_for("the watched statement", |r| {
        r.iter().any(|x| x["text"] == "SELECT 'watched'")
    });
    let records = agent.stop();
    let texts: Vec<&str> = of_kind(&records, "sql")
        .iter()
        .filter_map(|r| r["text"].as_str())
        .collect();
    assert_eq!(texts, ["SELECT 'watched'"], "{}", dump(&records));
    assert!(
        records.iter().all(|r| r["identity"] == "db-agent"),
        "{}",
        dump(&records)
    );
}

#[test]
fn the_system_call_fallback_still_records_statements() {
    let pg = Postgres::start();
    let cg = Cgroup::new("fallback");
    let agent = Agent::start(&[
        "--identity",
        &cg.identity_flag("db-agent"),
        "--socket-capture",
        "syscalls",
    ]);
    let conninfo = pg.tcp("alice", "shop", "require");
    for sql in ["SELECT 'over tls'", "SELECT 2"] {
        let out = cg.run("/usr/bin/psql", &["-X", "-q", &conninfo, "-c", sql]);
        assert!(out.status.success(), "{out:?}");
    }
    let records = agent.wait_for("both statements", |r| {
        r.iter().filter(|x| x["kind"] == "sql").count() == 2
    });
    let got: Vec<(&str, &Value)> = of_kind(&records, "sql")
        .iter()
        .map(|r| (r["text"].as_str().unwrap(), &r["tls"]))
        .collect();
    assert_eq!(
        got,
        [
            ("SELECT 'over tls'", &Value::Bool(true)),
            ("SELECT 2", &Value::Bool(true))
        ],
        "{}",
        dump(&records)
    );
}
