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
    let script = format!(
        r#"
import psycopg
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
