//! The web console and evidence bundles, end to end, in a real browser: the real agent records
//! real sessions (bash, psql over TLS to a real PostgreSQL, an exec storm into an overflowing
//! ring buffer, a session still running), ships them to a real collector serving the console
//! over HTTPS, and Debian's Chromium, driven by Selenium through chromedriver
//! (tests/browser/console.py), logs in with an operator token and checks what an operator
//! would: refusals, filters, search, the process tree, an SQL error, an alert inline, gaps and
//! the verdict, the live view, the integrity check in the browser, a tampered store, and
//! evidence bundles opened from `file://`; `recorder verify --bundle` must agree. Root only.
mod collector_support;

use std::{
    io::{Seek as _, SeekFrom, Write as _},
    path::Path,
    process::{Child, Stdio},
    time::SystemTime,
};

use collector_support::{Collector, Pki, export, free_port, run, stderr, stdout};
use recorder_tests::{Agent, Cgroup, postgres::Postgres, repo_root};
use serde_json::{Value, json};

const OK_SQL: &str = "SELECT count(*) FROM payments";
const ERROR_SQL: &str = "SELECT * FROM no_such_table";
const EXECS: u64 = 3000;

/// A minute before or after now, as a browser's datetime-local field gives it (UTC).
fn minute(offset_secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = recorder_record::time::rfc3339_nanos(i128::from(now + offset_secs) * 1_000_000_000);
    t[..16].to_string()
}

/// Runs one phase of the browser script; its output is printed, its failure fails the test.
fn browser(phase: &str, mut config: Value, dir: &Path) -> String {
    config["phase"] = json!(phase);
    recorder_tests::browser_script(&config, &dir.join(format!("browser-{phase}.json")))
}

fn exec_text<'a>(records: &'a [Value], argv: &[&str]) -> &'a Value {
    records
        .iter()
        .find(|r| r["kind"] == "exec" && r["argv"] == json!(argv))
        .unwrap_or_else(|| panic!("no exec of {argv:?}"))
}

/// A process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `bash -c SCRIPT` in `cg`, not waited for.
fn spawn_in(cg: &Cgroup, script: &str) -> Running {
    Running(
        cg.command("/bin/bash")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
#[expect(clippy::too_many_lines, reason = "one story, told in order")]
fn the_console_and_evidence_bundles_in_a_real_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let before = minute(-60);
    let pg = Postgres::start();
    pg.query(
        "shop",
        "CREATE TABLE payments (id int); GRANT ALL ON payments TO alice",
    );
    let rules = tmp.path().join("alerts.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"payments-read\"\nseverity = \"warning\"\nkind = [\"sql\"]\npattern = \"payments\"\n",
    )
    .unwrap();
    let ui = free_port();
    let data = tmp.path().join("data");
    let col = Collector::start(
        &pki,
        &data,
        0,
        &[
            "--ui-listen",
            &format!("127.0.0.1:{ui}"),
            "--checkpoint-secs",
            "1",
            "--alerts",
            rules.to_str().unwrap(),
        ],
    );
    let claude = Cgroup::new("console-claude");
    let storm = Cgroup::new("console-storm");
    let spool = tmp.path().join("spool");
    let mut args = vec![
        "--identity".to_string(),
        claude.identity_flag("claude"),
        "--identity".into(),
        storm.identity_flag("storm"),
        // Roomy for the sessions, far too small for the storm while the agent is stopped.
        "--ring-buffer-kib".into(),
        "256".into(),
    ];
    args.extend(pki.agent_args(col.port, &spool));
    let agent = Agent::start(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // 1. A session with SQL over TLS (one statement that works, one the server refuses) and a
    //    child that exits 3.
    let conn = pg.tcp("alice", "shop", "require");
    let script = format!(
        "psql -X '{conn}' -c '{OK_SQL}' >/dev/null; psql -X '{conn}' -c '{ERROR_SQL}' 2>/dev/null; \
         sh -c 'exit 3'; true"
    );
    let out = claude.run("/bin/bash", &["-c", &script]);
    assert!(out.status.success(), "{out:?}");
    let records = agent.wait_for("the session's SQL and its last exit", |r| {
        r.iter()
            .any(|x| x["kind"] == "sql" && x["text"] == ERROR_SQL)
            && r.iter().any(|x| x["kind"] == "exit" && x["exit_code"] == 3)
            && r.iter()
                .filter(|x| x["kind"] == "exit" && x["identity"] == "claude")
                .count()
                // psql twice, sh, bash (Debian's psql wrapper execs the real one in place).
                >= 4
    });
    let bash = exec_text(&records, &["/bin/bash", "-c", &script]);
    let main_session = bash["session"].as_str().unwrap().to_string();
    let sh = exec_text(&records, &["sh", "-c", "exit 3"]);
    assert_eq!(sh["session"], bash["session"]);

    // 2. An exec storm while the agent is stopped: the ring buffer overflows, `loss` records.
    // SAFETY: plain kill(2) on the test's own child.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGSTOP) };
    let out = storm.run(
        "/bin/bash",
        &[
            "-c",
            &format!("for i in $(seq {EXECS}); do /bin/true; done"),
        ],
    );
    // SAFETY: as above.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGCONT) };
    assert!(out.status.success());
    let records = agent.wait_for("the storm's loss", |r| {
        r.iter()
            .any(|x| x["kind"] == "loss" && x["identity"] == "storm")
    });
    let storm_session = records
        .iter()
        .find(|r| r["kind"] == "exec" && r["identity"] == "storm")
        .unwrap()["session"]
        .as_str()
        .unwrap()
        .to_string();

    // 3. A session still running: it waits on a FIFO the browser writes to once the page is open.
    let fifo = tmp.path().join("go");
    let fifo_end = tmp.path().join("end");
    for f in [&fifo, &fifo_end] {
        let c = std::ffi::CString::new(f.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }
    let live = spawn_in(
        &claude,
        &format!(
            "read -r _ < {}; /bin/echo live-marker; read -r _ < {}",
            fifo.display(),
            fifo_end.display()
        ),
    );
    let records = agent.wait_for("the live session's bash", |r| {
        r.iter().any(|x| {
            x["kind"] == "exec" && x["text"].as_str().unwrap_or("").contains("live-marker")
        })
    });
    let live_session = records
        .iter()
        .find(|x| x["kind"] == "exec" && x["text"].as_str().unwrap_or("").contains("live-marker"))
        .unwrap()["session"]
        .as_str()
        .unwrap()
        .to_string();

    // Everything reaches the collector.
    collector_support::wait_until_shipped(&pki, col.port, &agent.jsonl);
    let token = pki.token("alice", &["--ttl", "1h"]);
    assert!(token.starts_with("rct1."), "{token}");
    let shots = repo_root().join("target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let config = json!({
        "base": format!("https://127.0.0.1:{ui}"),
        "token": token,
        "ca": pki.path("ca.pem"),
        "alice_cert": pki.path("alice.pem"),
        "alice_key": pki.path("alice-key.pem"),
        "agent_cert": pki.path("web-1.pem"),
        "agent_key": pki.path("web-1-key.pem"),
        "host": "web-1",
        "before": before,
        "after": minute(60),
        "main": {
            "session": main_session,
            "bash_text": bash["text"],
            "sh_text": sh["text"],
            "ok_sql": OK_SQL,
            "error_sql": ERROR_SQL,
            "alert_rule": "payments-read",
        },
        "storm": { "session": storm_session },
        "live": {
            "session": live_session,
            "fifo": fifo.to_str().unwrap(),
            "marker_text": "/bin/echo live-marker",
        },
        "shots": shots.to_str().unwrap(),
    });
    browser("console", config.clone(), tmp.path());
    std::fs::write(&fifo_end, "end\n").unwrap();
    drop(live);

    // Every request of the operator is in the console's action log.
    let actions = std::fs::read_to_string(data.join("console/actions.jsonl")).unwrap();
    let actions: Vec<Value> = actions
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(actions.iter().all(|a| a["operator"] == "alice"));
    assert!(
        actions
            .iter()
            .any(|a| a["path"].as_str().unwrap().starts_with("/api/evidence?")),
        "{actions:?}"
    );

    // 4. Evidence bundles: one as the collector has it, one with one byte changed.
    let operator = pki.client_args(col.port, "alice");
    let good = tmp.path().join("evidence.html");
    let mut args = vec!["evidence", &main_session, "-o", good.to_str().unwrap()];
    args.extend(operator.iter().map(String::as_str));
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    println!("{}", stdout(&o).trim());
    let key = std::fs::read_to_string(data.join("checkpoint-key.pub")).unwrap();
    let o = run(&[
        "verify",
        "--bundle",
        good.to_str().unwrap(),
        "--public-key",
        key.trim(),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).starts_with("verified: "), "{}", stdout(&o));
    let html = std::fs::read_to_string(&good).unwrap();
    // The statement's result, one byte of it: the row count the server answered.
    assert_eq!(
        html.matches("SELECT 1").count(),
        1,
        "one result `SELECT 1` in the bundle"
    );
    let bad = tmp.path().join("evidence-changed.html");
    std::fs::write(&bad, html.replacen("SELECT 1", "SELECT 2", 1)).unwrap();
    let o = run(&["verify", "--bundle", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let stored = export(&pki, col.port);
    let sql_index = stored
        .iter()
        .position(|l| l.contains(&format!("\"text\":\"{OK_SQL}\"")))
        .unwrap();
    assert!(
        stdout(&o).starts_with(&format!("TAMPERED: record {sql_index}: not included")),
        "{}",
        stdout(&o)
    );
    let mut bundles = config.clone();
    bundles["bundle_good"] = json!(good.to_str().unwrap());
    bundles["bundle_bad"] = json!(bad.to_str().unwrap());
    bundles["bundle_bad_index"] = json!(sql_index);
    browser("bundles", bundles, tmp.path());

    // 5. The store changed on disk under the running collector: one byte of the `sh -c 'exit 3'`
    //    exec record (its argv), its frame left as it was.
    let segments = data.join("segments");
    let segment = std::fs::read_dir(&segments)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read(p).unwrap().windows(6).any(|w| w == b"exit 3"))
        .expect("a segment holds the sh record");
    let bytes = std::fs::read(&segment).unwrap();
    let needle = br#""argv":["sh","-c","exit 3"]"#;
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
        + needle.len()
        - 3;
    let frame = collector_support::frames(&bytes)
        .into_iter()
        .find(|f| f.contains(&at))
        .unwrap();
    let tampered_index =
        u64::from_le_bytes(bytes[frame.start + 5..frame.start + 13].try_into().unwrap());
    assert_eq!(bytes[at], b'3');
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    f.seek(SeekFrom::Start(at as u64)).unwrap();
    f.write_all(b"4").unwrap();
    f.sync_all().unwrap();
    let mut tampered = config;
    tampered["tampered_index"] = json!(tampered_index);
    browser("tampered", tampered, tmp.path());
    drop(agent);
    col.stop();
}
