//! End-to-end: SQL statements of watched processes, from the kernel and OpenSSL probes, against
//! a real PostgreSQL 15 server with TLS.
use recorder_tests::{Agent, Cgroup, dump, of_kind, postgres::Postgres};
use serde_json::Value;

const SCRIPT: [&str; 5] = [
    "CREATE TABLE items (id int, name text)",
    "INSERT INTO items VALUES (1, 'one')",
    "SELECT * FROM items, generate_series(1, 3)",
    "SELEC oops",
    "DROP TABLE items",
];

fn psql(cg: &Cgroup, conninfo: &str) {
    let mut args = vec!["-X", "-q", conninfo];
    for s in SCRIPT {
        args.extend(["-c", s]);
    }
    let out = cg.run("/usr/bin/psql", &args);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("syntax error"),
        "psql ran: {out:?}"
    );
}

fn sql_records(agent: &Agent) -> Vec<Value> {
    let records = agent.wait_for("the DROP TABLE statement", |r| {
        r.iter()
            .any(|x| x["kind"] == "sql" && x["text"] == "DROP TABLE items")
    });
    of_kind(&records, "sql").into_iter().cloned().collect()
}

fn check(sql: &[Value], tls: bool, server: &str, user: &str, db: &str) {
    let texts: Vec<&str> = sql.iter().map(|r| r["text"].as_str().unwrap()).collect();
    assert_eq!(texts, SCRIPT, "{}", dump(sql));
    let results: Vec<&str> = sql.iter().map(|r| r["result"].as_str().unwrap()).collect();
    assert_eq!(results[..3], ["CREATE TABLE", "INSERT 0 1", "SELECT 3"]);
    assert!(
        results[3].contains("42601") && results[3].contains("syntax error"),
        "{}",
        results[3]
    );
    assert_eq!(results[4], "DROP TABLE");
    let statuses: Vec<&str> = sql.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["ok", "ok", "ok", "error", "ok"]);
    for r in sql {
        assert_eq!(r["db.system"], "postgresql");
        assert_eq!(r["tls"], tls, "{r}");
        assert_eq!(r["db.server"], server);
        assert_eq!(r["db.user"], user);
        assert_eq!(r["db.name"], db);
        assert_eq!(r["identity"], "db-agent");
    }
}

#[test]
fn psql_over_tls_plain_tcp_and_unix_socket() {
    let pg = Postgres::start();
    let server = format!("127.0.0.1:{}", pg.port);
    for (conninfo, tls, server, user, db) in [
        (
            pg.tcp("alice", "shop", "require"),
            true,
            server.as_str(),
            "alice",
            "shop",
        ),
        (
            pg.tcp("postgres", "postgres", "disable"),
            false,
            server.as_str(),
            "postgres",
            "postgres",
        ),
        (pg.unix("alice", "shop"), false, "unix", "alice", "shop"),
    ] {
        let cg = Cgroup::new("psql");
        let agent = Agent::start(&["--identity", &cg.identity_flag("db-agent")]);
        psql(&cg, &conninfo);
        let sql = sql_records(&agent);
        check(&sql, tls, server, user, db);
        // Attributed to psql's exec (Debian's /usr/bin/psql is a perl wrapper that execs the real
        // one in place), in its session.
        let records = agent.records();
        let psql_exec = records
            .iter()
            .find(|r| r["kind"] == "exec" && r["exe"] == "/usr/lib/postgresql/15/bin/psql")
            .unwrap();
        assert!(
            sql.iter()
                .all(|r| r["exec_id"] == psql_exec["exec_id"]
                    && r["session"] == psql_exec["session"])
        );
    }
}

#[test]
fn psycopg_with_its_private_libssl_and_server_side_parameters() {
    let pg = Postgres::start();
    let cg = Cgroup::new("psycopg");
    let agent = Agent::start(&["--identity", &cg.identity_flag("db-agent")]);
    // The agent attaches its probes to psycopg's private libssl when the import maps it, which
    // took 50 to 150 ms on a loaded CI machine; a client that handshakes sooner gets a
    // `tls_unhooked` notice instead (that case has its own test below). Half a second between
    // import and connect, as a program that does anything before its first query has.
    let script = format!(
        r#"
import time
import psycopg
time.sleep(0.5)
with psycopg.connect("{}") as c:
    c.execute("CREATE TABLE pets (id int, name text)")
    c.execute("INSERT INTO pets VALUES (%s, %s)", (7, "rex"))
    c.execute("SELECT name FROM pets WHERE id = %s", (7,), prepare=True)
    c.execute("SELECT name FROM pets WHERE id = %s", (8,), prepare=True)
    c.execute("DROP TABLE pets")
"#,
        pg.tcp("alice", "shop", "require")
    );
    let out = cg.run("/usr/bin/env", &["python3", "-c", &script]);
    assert!(out.status.success(), "{out:?}");
    let records = agent.wait_for("the DEALLOCATE statement", |r| {
        r.iter()
            .any(|x| x["kind"] == "sql" && x["text"] == "DEALLOCATE ALL")
    });
    let sql: Vec<&Value> = of_kind(&records, "sql")
        .into_iter()
        .filter(|r| r["text"] != "BEGIN" && r["text"] != "COMMIT")
        .collect();
    let got: Vec<(String, Value, String)> = sql
        .iter()
        .map(|r| {
            (
                r["text"].as_str().unwrap().to_string(),
                r.get("params").cloned().unwrap_or(Value::Null),
                r["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, Value, String)> = vec![
        (
            "CREATE TABLE pets (id int, name text)".into(),
            Value::Null,
            "CREATE TABLE".into(),
        ),
        (
            "INSERT INTO pets VALUES ($1, $2)".into(),
            serde_json::json!(["7", "rex"]),
            "INSERT 0 1".into(),
        ),
        (
            "SELECT name FROM pets WHERE id = $1".into(),
            serde_json::json!(["7"]),
            "SELECT 1".into(),
        ),
        (
            "SELECT name FROM pets WHERE id = $1".into(),
            serde_json::json!(["8"]),
            "SELECT 0".into(),
        ),
        ("DROP TABLE pets".into(), Value::Null, "DROP TABLE".into()),
        // psycopg drops its prepared statements when the connection goes back to idle.
        (
            "DEALLOCATE ALL".into(),
            Value::Null,
            "DEALLOCATE ALL".into(),
        ),
    ];
    assert_eq!(got, want, "{}", dump(&records));
    assert!(
        sql.iter()
            .all(|r| r["tls"] == true && r["db.user"] == "alice" && r["db.name"] == "shop")
    );
    // The TLS library was psycopg's own copy, not the system one.
    let log = agent.log();
    assert!(log.contains("psycopg_binary.libs/libssl"), "{log}");
}

#[test]
fn pgbench_statements_are_all_recorded_and_unwatched_clients_are_not() {
    let pg = Postgres::start();
    // Initialise outside any watched cgroup.
    let init = std::process::Command::new("pgbench")
        .args(["-i", "-q", "-s", "1", &pg.unix("postgres", "postgres")])
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let cg = Cgroup::new("pgbench");
    let agent = Agent::start(&["--identity", &cg.identity_flag("bench")]);
    // An unwatched client at the same time: nothing of it may be recorded.
    let outside = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            &pg.tcp("postgres", "postgres", "require"),
            "-c",
            "SELECT 'unwatched-marker'",
        ])
        .output()
        .unwrap();
    assert!(outside.status.success());
    const CLIENTS: usize = 2;
    const TRANSACTIONS: usize = 250;
    let out = cg.run(
        "/usr/bin/pgbench",
        &[
            "-n",
            "-S",
            "-c",
            &CLIENTS.to_string(),
            "-t",
            &TRANSACTIONS.to_string(),
            &pg.tcp("postgres", "postgres", "require"),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let want = CLIENTS * TRANSACTIONS;
    let is_select = |r: &Value| {
        r["kind"] == "sql"
            && r["text"].as_str().is_some_and(|t| {
                t.starts_with("SELECT abalance FROM pgbench_accounts WHERE aid = ")
            })
    };
    let records = agent.wait_for("every pgbench SELECT", |r| {
        r.iter().filter(|x| is_select(x)).count() >= want
    });
    let selects: Vec<&Value> = records.iter().filter(|r| is_select(r)).collect();
    assert_eq!(selects.len(), want);
    assert!(
        selects
            .iter()
            .all(|r| r["result"] == "SELECT 1" && r["tls"] == true && r["status"] == "ok")
    );
    assert!(
        of_kind(&records, "loss").is_empty(),
        "{}",
        dump(
            &of_kind(&records, "loss")
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        )
    );
    assert!(
        !records
            .iter()
            .any(|r| r.to_string().contains("unwatched-marker"))
    );
}

#[test]
fn a_one_megabyte_statement_is_recorded_whole_over_tls() {
    let pg = Postgres::start();
    let cg = Cgroup::new("bigsql");
    let agent = Agent::start(&["--identity", &cg.identity_flag("big")]);
    let payload = "x".repeat(1_000_000);
    let statement = format!("SELECT length('{payload}')");
    let file = pg.dir().join("big.sql");
    std::fs::write(&file, format!("{statement};\n")).unwrap();
    let out = cg.run(
        "/usr/bin/psql",
        &[
            "-X",
            "-q",
            "-t",
            &pg.tcp("alice", "shop", "require"),
            "-f",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1000000",
        "{out:?}"
    );
    let records = agent.wait_for("the big statement", |r| {
        r.iter().any(|x| x["kind"] == "sql")
    });
    let sql = of_kind(&records, "sql");
    assert_eq!(sql.len(), 1, "{}", sql.len());
    assert_eq!(sql[0]["text"].as_str().unwrap().len(), statement.len());
    assert_eq!(sql[0]["text"], statement.as_str());
    assert_eq!(sql[0]["result"], "SELECT 1");
    assert!(sql[0].get("truncated").is_none());
}

#[test]
fn tls_through_an_unhooked_library_is_reported_not_missed() {
    let pg = Postgres::start();
    let cg = Cgroup::new("unhooked");
    let agent = Agent::start(&["--identity", &cg.identity_flag("hidden")]);
    // A copy of libssl under a name the agent does not look for, preloaded: libpq's TLS then
    // runs through a library without probes, like a statically linked one.
    let hidden = pg.dir().join("private-tls.so");
    std::fs::copy("/usr/lib/x86_64-linux-gnu/libssl.so.3", &hidden).unwrap();
    let out = cg
        .command("/usr/lib/postgresql/15/bin/psql")
        .args([
            "-X",
            "-q",
            &pg.tcp("alice", "shop", "require"),
            "-c",
            "SELECT 'through-hidden-tls'",
        ])
        .env("LD_PRELOAD", &hidden)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("through-hidden-tls"),
        "{out:?}"
    );
    let records = agent.wait_for("a tls_unhooked notice", |r| {
        r.iter().any(|x| x["reason"] == "tls_unhooked")
    });
    let notice = records
        .iter()
        .find(|r| r["reason"] == "tls_unhooked")
        .unwrap();
    assert_eq!(notice["identity"], "hidden");
    assert!(
        notice["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{}", pg.port)),
        "{notice}"
    );
    // No ciphertext was taken for a statement.
    assert!(of_kind(&records, "sql").is_empty(), "{}", dump(&records));
}

#[test]
fn io_uring_use_is_reported() {
    let cg = Cgroup::new("uring");
    let agent = Agent::start(&["--identity", &cg.identity_flag("ring")]);
    // io_uring_setup(8, &params) through libc's syscall(): 425 on x86_64.
    let script = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nparams = ctypes.create_string_buffer(120)\nfd = libc.syscall(425, 8, params)\nassert fd >= 0, ctypes.get_errno()\nos.close(fd)\n";
    let out = cg.run("/usr/bin/env", &["python3", "-c", script]);
    assert!(out.status.success(), "{out:?}");
    let records = agent.wait_for("an io_uring notice", |r| {
        r.iter().any(|x| x["reason"] == "io_uring")
    });
    let notice = records.iter().find(|r| r["reason"] == "io_uring").unwrap();
    assert_eq!(notice["identity"], "ring");
    let python = records.iter().rev().find(|r| r["kind"] == "exec").unwrap();
    assert_eq!(
        notice["exec_id"], python["exec_id"],
        "attributed to the process that set it up"
    );
}

/// A PostgreSQL client that moves every byte with vectored system calls, as event loops do
/// (libuv, Go's `net.Buffers`): its messages are split across buffers, so a statement is only
/// whole if every buffer is captured, in order. Over TCP it writes with `sendmsg` and `writev`
/// and reads with `readv`; over the Unix socket it reads with `recvmsg` into two buffers.
const VECTORED_CLIENT: &str = r#"
import os, socket, struct, sys
mode, target, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "tcp":
    s = socket.create_connection((target, port))
else:
    s = socket.socket(socket.AF_UNIX)
    s.connect(f"{target}/.s.PGSQL.{port}")
fd = s.fileno()

def receive():
    if mode == "tcp":
        small, big = bytearray(3), bytearray(65536)
        n = os.readv(fd, [small, big])
        return bytes(small + big)[:n]
    small, big = bytearray(5), bytearray(65536)
    n, _, _, _ = s.recvmsg_into([small, big])
    return bytes(small + big)[:n]

def until_ready():
    buf = b""
    while True:
        data = receive()
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
s.sendmsg([struct.pack("!I", len(body) + 4), body])
until_ready()
for q in sys.argv[4:]:
    q = q.encode() + b"\0"
    parts = [b"Q", struct.pack("!I", len(q) + 4), q[:7], q[7:]]
    if os.environ.get("ONE_BUFFER_PER_BYTE"):
        parts = parts[:2] + [bytes([c]) for c in q]
    if mode == "tcp":
        os.writev(fd, parts)
    else:
        s.sendmsg(parts)
    until_ready()
s.sendmsg([b"X", struct.pack("!I", 4)])
s.close()
"#;

#[test]
fn vectored_reads_and_writes_are_captured_over_tcp_and_the_unix_socket() {
    let pg = Postgres::start();
    let cg = Cgroup::new("vectored");
    let agent = Agent::start(&["--identity", &cg.identity_flag("db-agent")]);
    let statements = [
        "CREATE TABLE v (id int)",
        "INSERT INTO v VALUES (1), (2)",
        "SELECT * FROM v",
        "DROP TABLE v",
    ];
    let port = pg.port.to_string();
    let socket_dir = pg.socket_dir.to_str().unwrap();
    for (mode, target) in [("tcp", "127.0.0.1"), ("unix", socket_dir)] {
        let mut args = vec!["-c", VECTORED_CLIENT, mode, target, &port];
        args.extend(statements);
        let out = cg.run("/usr/bin/python3", &args);
        assert!(out.status.success(), "{out:?}");
    }
    let records = agent.wait_for("both clients' DROP TABLE", |r| {
        r.iter()
            .filter(|x| x["kind"] == "sql" && x["text"] == "DROP TABLE v")
            .count()
            == 2
    });
    let sql = of_kind(&records, "sql");
    let got: Vec<(&str, &str, &Value)> = sql
        .iter()
        .map(|r| {
            (
                r["text"].as_str().unwrap(),
                r["result"].as_str().unwrap(),
                &r["db.server"],
            )
        })
        .collect();
    let tcp = Value::from(format!("127.0.0.1:{}", pg.port));
    let unix = Value::from("unix");
    let results = ["CREATE TABLE", "INSERT 0 2", "SELECT 2", "DROP TABLE"];
    let mut want = Vec::new();
    for server in [&tcp, &unix] {
        for (text, result) in statements.iter().zip(results) {
            want.push((*text, result, server));
        }
    }
    assert_eq!(got, want, "{}", dump(&records));
    for r in &sql {
        assert_eq!(r["db.user"], "alice");
        assert_eq!(r["db.name"], "shop");
        assert_eq!(r["tls"], false);
        assert_eq!(r["identity"], "db-agent");
    }
    assert!(of_kind(&records, "notice").is_empty(), "{}", dump(&records));
}

#[test]
fn bytes_past_the_buffers_captured_from_one_vectored_call_are_reported() {
    let pg = Postgres::start();
    let cg = Cgroup::new("vectored-many");
    let agent = Agent::start(&["--identity", &cg.identity_flag("db-agent")]);
    // 2 + 70 buffers in one writev: past the 64 captured.
    let statement = format!("SELECT '{}'", "x".repeat(60));
    assert_eq!(statement.len() + 1, 70);
    let port = pg.port.to_string();
    let out = cg
        .command("/usr/bin/python3")
        .args(["-c", VECTORED_CLIENT, "tcp", "127.0.0.1", &port, &statement])
        .env("ONE_BUFFER_PER_BYTE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let records = agent.wait_for("a data_truncated notice", |r| {
        r.iter().any(|x| x["reason"] == "data_truncated")
    });
    let notice = records
        .iter()
        .find(|r| r["reason"] == "data_truncated")
        .unwrap();
    let python = records.iter().rev().find(|r| r["kind"] == "exec").unwrap();
    assert_eq!(notice["exec_id"], python["exec_id"]);
    // The last 8 buffers, one byte each (the statement's last 7 bytes and its NUL), are past
    // the 64 captured.
    let detail = notice["detail"].as_str().unwrap();
    assert!(detail.contains("8 bytes"), "{detail}");
}
