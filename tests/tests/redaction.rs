//! Redaction, end to end: real commands carrying real secrets, run in a watched cgroup while
//! the real agent records them into its JSON Lines file and, through its spool, into a real
//! collector: the `mariadb` client with `-pPASSWORD` against MariaDB (twice), `psql` with a
//! password in its connection URL and an `ALTER USER … PASSWORD` sent over TLS to PostgreSQL,
//! and `curl` with a bearer token against a local HTTP server. No secret is left anywhere: not
//! in the JSON Lines, not in the spool's files, not in the collector's store (every byte of
//! every file searched); each became a marker, the same one for two uses of one secret, and
//! each record says which fields were redacted. Root only.
mod collector_support;

use std::{path::Path, process::Stdio, time::Duration};

use collector_support::{Collector, Pki, wait_for};
use recorder_tests::{Agent, Cgroup, mariadb::Mariadb, postgres::Postgres};
use serde_json::Value;

/// Every file under `dir` that holds `needle`, byte for byte.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if std::fs::read(&path)
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

fn marker_in(text: &str) -> Option<&str> {
    let at = text.find("[redacted:")?;
    Some(&text[at..at + 23])
}

#[test]
fn secrets_are_redacted_before_any_record_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let data = tmp.path().join("data");
    let col = Collector::start(&pki, &data, 0, &["--checkpoint-secs", "1"]);
    let my = Mariadb::start();
    let pg = Postgres::start();
    let http = collector_support::free_port();
    let mut server = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &http.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cg = Cgroup::new("redaction");
    let spool = tmp.path().join("spool");
    let key = tmp.path().join("redaction.key");
    let mut args = vec![
        "--identity".to_string(),
        cg.identity_flag("claude"),
        "--redaction-key".into(),
        key.to_str().unwrap().into(),
    ];
    args.extend(pki.agent_args(col.port, &spool));
    let agent = Agent::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", http)).is_ok()
    }));

    const MARIADB_PW: &str = "alice-pw";
    const URL_PW: &str = "url-pw-7731";
    const BEARER: &str = "bearer-tok-5521x";
    const NEW_PW: &str = "Sup3r-s3cret-ALTER";
    let port = my.port.to_string();
    for _ in 0..2 {
        let out = cg.run(
            "/usr/bin/mariadb",
            &[
                "--no-defaults",
                "-h",
                "127.0.0.1",
                "-P",
                &port,
                "-u",
                "alice",
                &format!("-p{MARIADB_PW}"),
                "--skip-ssl",
                "-e",
                "SELECT 1",
                "shop",
            ],
        );
        assert!(out.status.success(), "{out:?}");
    }
    let url = format!(
        "postgresql://alice:{URL_PW}@127.0.0.1:{}/shop?sslmode=require",
        pg.port
    );
    let out = cg.run("/usr/bin/psql", &["-X", &url, "-c", "SELECT 1"]);
    assert!(out.status.success(), "{out:?}");
    let admin = pg.tcp("postgres", "postgres", "require");
    let alter = format!("ALTER USER bob PASSWORD '{NEW_PW}'");
    let out = cg.run("/usr/bin/psql", &["-X", &admin, "-c", &alter]);
    assert!(out.status.success(), "{out:?}");
    let out = cg.run(
        "/usr/bin/curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-H",
            &format!("Authorization: Bearer {BEARER}"),
            &format!("http://127.0.0.1:{http}/"),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let records = agent.wait_for("the ALTER USER statement and curl's exit", |r| {
        r.iter().any(|x| {
            x["kind"] == "sql"
                && x["text"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("ALTER USER bob")
        }) && r
            .iter()
            .any(|x| x["kind"] == "exec" && x["argv"][0] == "/usr/bin/curl")
    });
    collector_support::wait_until_shipped(&pki, col.port, &agent.jsonl);
    let _ = server.kill();
    let _ = server.wait();

    // The records: each secret is a marker, and the record says where.
    let execs = |program: &str| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| r["kind"] == "exec" && r["argv"][0].as_str().unwrap().ends_with(program))
            .collect()
    };
    let mariadb = execs("/mariadb");
    assert_eq!(mariadb.len(), 2);
    let password_arg = |r: &Value| -> (usize, String) {
        let argv = r["argv"].as_array().unwrap();
        let at = argv
            .iter()
            .position(|a| a.as_str().unwrap().starts_with("-p"))
            .unwrap();
        (at, argv[at].as_str().unwrap().to_string())
    };
    let (at, m1) = password_arg(mariadb[0]);
    let (_, m2) = password_arg(mariadb[1]);
    assert!(m1.starts_with("-p[redacted:") && m1.len() == 25, "{m1}");
    assert_eq!(m1, m2, "two uses of one secret, one marker");
    assert_eq!(
        mariadb[0]["redacted"],
        serde_json::json!([format!("argv[{at}]"), "text"])
    );
    assert!(mariadb[0]["text"].as_str().unwrap().contains(&m1[2..]));
    let psql_url = records
        .iter()
        .find(|r| {
            r["kind"] == "exec" && r["text"].as_str().unwrap().contains("postgresql://alice:")
        })
        .unwrap();
    assert!(
        psql_url["text"]
            .as_str()
            .unwrap()
            .contains("postgresql://alice:[redacted:"),
        "{psql_url}"
    );
    let alter_sql = records
        .iter()
        .find(|r| r["kind"] == "sql" && r["text"].as_str().unwrap().starts_with("ALTER USER bob"))
        .unwrap();
    assert_eq!(alter_sql["tls"], true);
    let marker = marker_in(alter_sql["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        alter_sql["text"],
        format!("ALTER USER bob PASSWORD {marker}")
    );
    assert_eq!(alter_sql["redacted"], serde_json::json!(["text"]));
    // The same statement in psql's argv got the same marker.
    let alter_exec = records
        .iter()
        .find(|r| r["kind"] == "exec" && r["text"].as_str().unwrap().contains("ALTER USER bob"))
        .unwrap();
    assert!(alter_exec["text"].as_str().unwrap().contains(marker));
    let curl = execs("/curl");
    let header = curl[0]["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .find(|a| a.starts_with("Authorization"))
        .unwrap();
    assert_eq!(
        header,
        format!("Authorization: Bearer {}", marker_in(header).unwrap())
    );
    // mariadb twice, the URL, the statement in psql's argv (wrapper and real psql) and on the
    // wire, the header.
    assert!(agent.metric_sum("recorder_redacted_values_total") >= 6.0);

    // No secret anywhere: the agent's JSON Lines, its spool, the collector's data directory.
    let jsonl = agent.jsonl.clone();
    let jsonl_dir = jsonl.parent().unwrap().to_path_buf();
    for secret in [MARIADB_PW, URL_PW, BEARER, NEW_PW] {
        for place in [jsonl_dir.clone(), spool.clone(), data.clone()] {
            let found = files_holding(&place, secret);
            assert!(found.is_empty(), "{secret:?} is in {found:?}");
        }
    }
    agent.stop();
    col.stop();
    for secret in [MARIADB_PW, URL_PW, BEARER, NEW_PW] {
        let found = files_holding(&data, secret);
        assert!(
            found.is_empty(),
            "after the final checkpoint, {secret:?} is in {found:?}"
        );
    }
}
