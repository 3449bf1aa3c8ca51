//! Approval before execution, end to end: the real agent's kernel programs stop real processes
//! (an exec before its first instruction, `psql`'s TLS write of a `DROP TABLE` before its bytes
//! leave), a real collector lists them, an operator decides with `recorder approve` / `recorder
//! deny`, and the process goes on or dies as decided. Checked by what the user would check:
//! the file the command would create, the table the statement would drop, the process's state,
//! its exit status, and the `approval` records (state, approver, rule). Root only.
mod collector_support;

use std::{
    os::unix::process::ExitStatusExt as _,
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use collector_support::{Collector, Pki, run, stderr, stdout, wait_for, webhook_receiver};
use recorder_tests::{Agent, Cgroup, kube_api::KubeApi, postgres::Postgres};
use serde_json::Value;

/// The pending approvals the collector lists for operator `alice`.
fn pending(pki: &Pki, port: u16) -> Vec<Value> {
    let mut args = vec!["approvals".to_string(), "--json".into()];
    args.extend(pki.client_args(port, "alice"));
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "recorder approvals: {}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until a request whose text contains `needle` is pending; returns its id.
fn wait_pending(pki: &Pki, port: u16, needle: &str) -> String {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Some(p) = pending(pki, port)
            .into_iter()
            .find(|p| p["text"].as_str().unwrap_or("").contains(needle))
        {
            return p["id"].as_str().unwrap().to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no pending approval for {needle:?}");
}

fn decide(pki: &Pki, port: u16, verb: &str, id: &str) {
    let mut args = vec![verb.to_string(), id.to_string()];
    args.extend(pki.client_args(port, "alice"));
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "recorder {verb}: {}", stderr(&o));
}

/// The process's state letter (`T`: stopped).
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("pid {} did not end within {limit:?}", child.id());
}

/// The `approval` records of request `id`, in order.
fn approvals<'a>(records: &'a [Value], id: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["kind"] == "approval" && r["request"] == id)
        .collect()
}

fn touch(cg: &Cgroup, file: &Path) -> Child {
    cg.command("/usr/bin/touch")
        .arg(file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// Approves the request whose text holds `needle` from the console's Approvals page, in
/// Chromium (tests/browser/console.py, phase `approve`), logged in with an operator token.
/// Returns the request's id.
fn approve_in_browser(pki: &Pki, ui: u16, needle: &str, dir: &Path) -> String {
    let token = pki.token("alice", &[]);
    let config = serde_json::json!({
        "phase": "approve",
        "base": format!("https://127.0.0.1:{ui}"),
        "token": token,
        "needle": needle,
        "reason": "checked in the browser",
    });
    let text = recorder_tests::browser_script(&config, &dir.join("browser-approve.json"));
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    last["request"].as_str().unwrap().to_string()
}

fn config(dir: &Path, body: &str) -> String {
    let path = dir.join("agent.toml");
    std::fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn execs_wait_for_an_operator_and_nothing_else_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let ui = collector_support::free_port();
    // An approval webhook: told of each request, then of its outcome.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hooks = tmp.path().join("approval-webhooks.toml");
    std::fs::write(
        &hooks,
        format!(
            "[[approval_webhook]]\nurl = \"http://{}/approvals\"\nsecret = \"k\"\n",
            hook.local_addr().unwrap()
        ),
    )
    .unwrap();
    let announced = webhook_receiver(hook);
    let col = Collector::start(
        &pki,
        &tmp.path().join("data"),
        0,
        &[
            "--ui-listen",
            &format!("127.0.0.1:{ui}"),
            "--alerts",
            hooks.to_str().unwrap(),
        ],
    );
    let cg = Cgroup::new("approvals");
    let other = Cgroup::new("approvals-other");
    let spool = tmp.path().join("spool");
    let cfg = config(
        tmp.path(),
        "[approval]\ntimeout_secs = 20\n\n[[approval.rule]]\nname = \"held-files\"\n\
         identities = [\"claude\"]\nexec = \"touch *held*\"\n\n[[approval.rule]]\n\
         name = \"long-sleeps\"\nidentities = [\"claude\"]\nexec = \"sleep 4242*\"\n",
    );
    let mut args = vec![
        "--config".to_string(),
        cfg.clone(),
        "--identity".into(),
        cg.identity_flag("claude"),
        "--identity".into(),
        other.identity_flag("other"),
    ];
    args.extend(pki.agent_args(col.port, &spool));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Agent::start(&argv);

    // Approved: stopped before it ran (no file, state T), then runs and exits 0.
    let approved = tmp.path().join("approved-held");
    let mut child = touch(&cg, &approved);
    let id_ok = wait_pending(&pki, col.port, "approved-held");
    assert_eq!(state(child.id()), Some('T'), "held means stopped");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!approved.exists(), "a held exec has not run");
    decide(&pki, col.port, "approve", &id_ok);
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
    assert!(approved.exists(), "approved, the command ran");

    // Approved by an operator in the web console, in a real browser.
    let in_browser = tmp.path().join("browser-held");
    let mut child = touch(&cg, &in_browser);
    wait_pending(&pki, col.port, "browser-held");
    let id_browser = approve_in_browser(&pki, ui, "browser-held", tmp.path());
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
    assert!(in_browser.exists());

    // Denied: never runs, killed.
    let denied = tmp.path().join("denied-held");
    let mut child = touch(&cg, &denied);
    let id_no = wait_pending(&pki, col.port, "denied-held");
    decide(&pki, col.port, "deny", &id_no);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(!denied.exists(), "a denied command never ran");

    // No decision: denied at the timeout (20 s: long enough for the browser step above to
    // start Chromium and log in on a loaded machine, where 4 s once ran out).
    let late = tmp.path().join("late-held");
    let mut child = touch(&cg, &late);
    let id_late = wait_pending(&pki, col.port, "late-held");
    let status = wait_exit(&mut child, Duration::from_secs(45));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(!late.exists());

    // Continued by someone else (a process may SIGCONT its own child): killed, and recorded as
    // a bypassed hold.
    let mut sleeper = cg
        .command("/bin/sleep")
        .arg("4242")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let id_bypass = wait_pending(&pki, col.port, "sleep 4242");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(sleeper.id() as i32, libc::SIGCONT) };
    assert_eq!(
        wait_exit(&mut sleeper, Duration::from_secs(30)).signal(),
        Some(libc::SIGKILL)
    );

    // Not held: an exec no rule names, the same command in an identity no rule names, and an
    // unwatched process. Each runs at once and leaves no approval behind.
    let free = tmp.path().join("free-file");
    assert!(
        cg.run("/usr/bin/touch", &[free.to_str().unwrap()])
            .status
            .success()
    );
    assert!(free.exists());
    let other_file = tmp.path().join("other-held");
    assert!(
        other
            .run("/usr/bin/touch", &[other_file.to_str().unwrap()])
            .status
            .success()
    );
    assert!(other_file.exists());
    let outside = tmp.path().join("outside-held");
    assert!(
        std::process::Command::new("/usr/bin/touch")
            .arg(&outside)
            .status()
            .unwrap()
            .success()
    );
    assert!(outside.exists());

    let records = agent.wait_for("the timed-out approval", |r| {
        approvals(r, &id_late).len() == 2
    });
    for (id, state, approver) in [
        (&id_ok, "approved", "alice"),
        (&id_browser, "approved", "alice"),
        (&id_no, "denied", "alice"),
        (&id_late, "timed_out", ""),
    ] {
        let pair = approvals(&records, id);
        assert_eq!(pair.len(), 2, "{id}: {pair:?}");
        assert_eq!(pair[0]["state"], "pending");
        assert_eq!(pair[1]["state"], state, "{:?}", pair[1]);
        assert_eq!(pair[1]["approver"].as_str().unwrap_or(""), approver);
        assert_eq!(pair[1]["rule"], "held-files");
        assert_eq!(pair[1]["action"], "exec");
        assert_eq!(pair[1]["identity"], "claude");
        assert!(pair[1]["text"].as_str().unwrap().contains("-held"));
        assert!(pair[1]["held_ms"].as_u64().unwrap() > 0);
        // The decision is about the process the exec record shows.
        let exec = records
            .iter()
            .find(|r| r["kind"] == "exec" && r["exec_id"] == pair[1]["exec_id"])
            .expect("the held exec's own record");
        assert_eq!(exec["pid"], pair[1]["pid"]);
    }
    let held_texts: Vec<&str> = records
        .iter()
        .filter(|r| r["kind"] == "approval")
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert!(
        held_texts.iter().all(|t| !t.contains("free-file")
            && !t.contains("other-held")
            && !t.contains("outside")),
        "{held_texts:?}"
    );
    assert!(agent.metric_sum("recorder_approval_holds_total") >= 6.0);
    let bypass = approvals(&records, &id_bypass);
    assert_eq!(bypass[1]["state"], "bypassed", "{bypass:?}");
    assert_eq!(bypass[1]["rule"], "long-sleeps");
    assert_eq!(
        approvals(&records, &id_browser)[1]["detail"],
        "checked in the browser",
        "the operator's reason is recorded"
    );

    // The approval webhook was told of each request when it came, and of how it ended: the
    // operator's decision, or its expiry (the collector learns no more of a timed-out or
    // bypassed hold than that no decision came by the deadline).
    let told = |id: &str| -> Vec<Value> {
        announced
            .lock()
            .unwrap()
            .iter()
            .map(|(_, body)| serde_json::from_str::<Value>(body).unwrap())
            .filter(|b| b["id"] == id)
            .collect()
    };
    assert!(
        wait_for(Duration::from_secs(30), || told(&id_bypass).len() == 2),
        "{:?}",
        told(&id_bypass)
    );
    for (id, state, approver, reason) in [
        (&id_ok, "approved", "alice", ""),
        (&id_browser, "approved", "alice", "checked in the browser"),
        (&id_no, "denied", "alice", ""),
        (&id_late, "expired", "", ""),
        (&id_bypass, "expired", "", ""),
    ] {
        let bodies = told(id);
        assert_eq!(bodies.len(), 2, "{id}: {bodies:?}");
        assert_eq!(bodies[0]["type"], "approval_request", "{bodies:?}");
        assert_eq!(bodies[1]["type"], "approval_outcome", "{bodies:?}");
        assert_eq!(bodies[1]["state"], state, "{bodies:?}");
        assert_eq!(bodies[1]["approver"].as_str().unwrap_or(""), approver);
        assert_eq!(bodies[1]["reason"].as_str().unwrap_or(""), reason);
        assert_eq!(bodies[1]["text"], bodies[0]["text"]);
        assert_eq!(bodies[1]["host"], "web-1");
    }

    // The agent dies while a process is held: the process stays stopped until the agent is
    // back, which kills it (on_restart = "deny") and says so.
    let orphan_file = tmp.path().join("orphan-held");
    let mut orphan = touch(&cg, &orphan_file);
    wait_pending(&pki, col.port, "orphan-held");
    // SAFETY: kill(2) on the agent's pid.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGKILL) };
    drop(agent);
    assert_eq!(state(orphan.id()), Some('T'));
    let agent = Agent::start(&argv);
    let status = wait_exit(&mut orphan, Duration::from_secs(30));
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(!orphan_file.exists());
    let records = agent.wait_for("the hold resolved at restart", |r| {
        r.iter()
            .any(|x| x["kind"] == "approval" && x["state"] == "resolved_at_restart")
    });
    let resolved = records
        .iter()
        .find(|x| x["kind"] == "approval" && x["state"] == "resolved_at_restart")
        .unwrap();
    assert!(
        resolved["detail"].as_str().unwrap().contains("killed"),
        "{resolved}"
    );
    assert!(resolved["text"].as_str().unwrap().contains("orphan-held"));
    drop(agent);
    assert!(
        wait_for(Duration::from_secs(30), || pending(&pki, col.port)
            .iter()
            .all(|p| !p["text"].as_str().unwrap_or("").contains("orphan"))),
        "an expired request leaves the list"
    );
}

#[test]
fn a_drop_table_over_tls_waits_for_its_approval() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let col = Collector::start(&pki, &tmp.path().join("data"), 0, &[]);
    let pg = Postgres::start();
    pg.psql_admin("CREATE TABLE payments (id int); CREATE TABLE scratch (id int);");
    let cg = Cgroup::new("approvals-sql");
    let spool = tmp.path().join("spool");
    let cfg = config(
        tmp.path(),
        "[[approval.rule]]\nname = \"no-drops\"\nsql = [\"drop\"]\n",
    );
    let mut args = vec![
        "--config".to_string(),
        cfg,
        "--identity".into(),
        cg.identity_flag("claude"),
    ];
    args.extend(pki.agent_args(col.port, &spool));
    let agent = Agent::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let url = pg.tcp("postgres", "postgres", "require");

    // Statements no rule names go through (each TLS write is looked at, then let go).
    let out = cg.run(
        "/usr/bin/psql",
        &["-X", &url, "-c", "SELECT count(*) FROM payments"],
    );
    assert!(out.status.success(), "{out:?}");

    let mut psql = cg
        .command("/usr/bin/psql")
        .args(["-X", &url, "-c", "DROP TABLE payments"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let id = wait_pending(&pki, col.port, "DROP TABLE payments");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state(psql.id()), Some('T'));
    assert_eq!(
        pg.query(
            "postgres",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'payments'"
        ),
        "1",
        "the table is still there while the statement is held"
    );
    decide(&pki, col.port, "approve", &id);
    assert!(wait_exit(&mut psql, Duration::from_secs(30)).success());
    assert_eq!(
        pg.query(
            "postgres",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'payments'"
        ),
        "0",
        "approved, the statement ran"
    );

    // Denied: the client is killed before its statement leaves.
    let mut psql = cg
        .command("/usr/bin/psql")
        .args(["-X", &url, "-c", "DROP TABLE scratch"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let denied = wait_pending(&pki, col.port, "DROP TABLE scratch");
    decide(&pki, col.port, "deny", &denied);
    assert_eq!(
        wait_exit(&mut psql, Duration::from_secs(30)).signal(),
        Some(libc::SIGKILL)
    );
    assert_eq!(
        pg.query(
            "postgres",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'scratch'"
        ),
        "1",
        "denied, the table stays"
    );

    let records = agent.wait_for("both decisions", |r| {
        approvals(r, &id).len() == 2 && approvals(r, &denied).len() == 2
    });
    let ok = approvals(&records, &id);
    assert_eq!(ok[1]["state"], "approved");
    assert_eq!(ok[1]["approver"], "alice");
    assert_eq!(ok[1]["action"], "sql");
    assert_eq!(ok[1]["rule"], "no-drops");
    assert_eq!(ok[1]["text"], "DROP TABLE payments");
    assert_eq!(approvals(&records, &denied)[1]["state"], "denied");
    // The approved statement is recorded as run, with its result.
    assert!(
        records.iter().any(|r| r["kind"] == "sql"
            && r["text"] == "DROP TABLE payments"
            && r["status"] == "ok")
    );
    assert_eq!(
        records.iter().filter(|r| r["kind"] == "approval").count(),
        4,
        "only the two drops were held for approval"
    );
}

#[test]
fn a_kubectl_delete_denied_never_reaches_the_api_server() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let col = Collector::start(&pki, &tmp.path().join("data"), 0, &[]);
    let api = KubeApi::start(tmp.path());
    let cg = Cgroup::new("approvals-kube");
    let spool = tmp.path().join("spool");
    let cfg = config(
        tmp.path(),
        "[[approval.rule]]\nname = \"team-a-deletes\"\nkubernetes = [\"delete\"]\n\
         namespaces = [\"team-a\"]\n",
    );
    let mut args = vec![
        "--config".to_string(),
        cfg,
        "--identity".into(),
        cg.identity_flag("claude"),
    ];
    args.extend(pki.agent_args(col.port, &spool));
    let agent = Agent::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let kubectl = |args: &[&str]| {
        cg.command("/usr/bin/kubectl")
            .arg("--kubeconfig")
            .arg(api.kubeconfig())
            .args(args)
            .env("KUBECACHEDIR", api.cache_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // A read goes through (kubectl's Go TLS writes are looked at, then let go).
    let mut get = kubectl(&["get", "pods", "-n", "team-a"]);
    assert!(wait_exit(&mut get, Duration::from_secs(30)).success());

    let mut delete = kubectl(&["delete", "pod", "web-1", "-n", "team-a"]);
    let id = wait_pending(
        &pki,
        col.port,
        "DELETE /api/v1/namespaces/team-a/pods/web-1",
    );
    assert_eq!(state(delete.id()), Some('T'));
    decide(&pki, col.port, "deny", &id);
    assert_eq!(
        wait_exit(&mut delete, Duration::from_secs(30)).signal(),
        Some(libc::SIGKILL)
    );
    let served = api.requests();
    assert!(
        served.iter().any(|s| s.method == "GET"),
        "the fixture saw kubectl's reads"
    );
    assert!(
        !served.iter().any(|s| s.method == "DELETE"),
        "the denied DELETE never reached the API server: {:?}",
        served
            .iter()
            .map(|s| (&s.method, &s.target))
            .collect::<Vec<_>>()
    );
    let records = agent.wait_for("the denial", |r| approvals(r, &id).len() == 2);
    let pair = approvals(&records, &id);
    assert_eq!(pair[1]["state"], "denied");
    assert_eq!(pair[1]["action"], "k8s");
    assert_eq!(pair[1]["rule"], "team-a-deletes");
    assert_eq!(pair[1]["approver"], "alice");
}
