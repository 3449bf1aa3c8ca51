//! End-to-end, the whole chain: the real agent records commands run in a watched cgroup and
//! ships them through its spool to a real collector over mutual TLS; the replay from the
//! collector equals the agent's own JSONL byte for byte, and the log verifies. Root only: the
//! agent loads its eBPF programs.
mod collector_support;

use std::time::Duration;

use collector_support::{Collector, Pki, export, run, stderr, stdout, wait_for};
use recorder_tests::{Agent, Cgroup};

#[test]
fn agent_to_collector_replay_equals_the_agents_jsonl_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let col = Collector::start(&pki, &tmp.path().join("data"), 0, &[]);
    let cg = Cgroup::new("collector-chain");
    let spool = tmp.path().join("spool");
    let url = format!("https://127.0.0.1:{}", col.port);
    let agent = Agent::start(&[
        "--identity",
        &cg.identity_flag("chain"),
        "--host",
        "web-1",
        "--collector",
        &url,
        "--tls-ca",
        &pki.path("ca.pem"),
        "--tls-cert",
        &pki.path("web-1.pem"),
        "--tls-key",
        &pki.path("web-1-key.pem"),
        "--spool",
        spool.to_str().unwrap(),
    ]);
    let script = r#"ls / > /dev/null; echo hi | grep -c h; sh -c "exit 3""#;
    let out = cg.run("/bin/bash", &["-c", script]);
    assert_eq!(out.status.code(), Some(3));
    let records = agent.wait_for("the exit of sh", |r| {
        r.iter().any(|x| x["kind"] == "exit" && x["exit_code"] == 3)
    });
    let session = records.iter().find(|r| r["kind"] == "exec").unwrap()["session"]
        .as_str()
        .unwrap()
        .to_string();

    // Everything the agent wrote reaches the collector (the sender ships within a second).
    let jsonl = || std::fs::read_to_string(&agent.jsonl).unwrap();
    assert!(
        wait_for(Duration::from_secs(15), || export(&pki, col.port).len()
            == jsonl().lines().count()),
        "collector has {} of {} records; agent log:\n{}",
        export(&pki, col.port).len(),
        jsonl().lines().count(),
        agent.log()
    );
    let written = jsonl();
    assert_eq!(
        export(&pki, col.port),
        written.lines().map(str::to_string).collect::<Vec<_>>()
    );

    // Replay of the session: byte for byte the agent's lines of that session.
    let op = pki.client_args(col.port, "alice");
    let mut args = vec!["replay", session.as_str(), "--format", "jsonl"];
    args.extend(op.iter().map(String::as_str));
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected: String = written
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["session"] == session.as_str()
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(stdout(&o), expected);
    let mut args = vec!["replay", session.as_str()];
    args.extend(op.iter().map(String::as_str));
    let human = stdout(&run(&args));
    assert!(human.contains("$ sh -c 'exit 3'    => exit 3"), "{human}");

    agent.stop();
    let mut args = vec!["verify"];
    args.extend(op.iter().map(String::as_str));
    let o = run(&args);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let data = tmp.path().join("data");
    col.stop();
    let o = run(&["verify", "--data", data.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn an_agent_restarted_while_the_collector_was_down_ships_its_spool_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let port = collector_support::free_port();
    let spool = tmp.path().join("spool");
    let cg = Cgroup::new("collector-restart");
    let agent_args = |cg: &Cgroup| {
        vec![
            "--identity".to_string(),
            cg.identity_flag("restart"),
            "--host".into(),
            "web-1".into(),
            "--collector".into(),
            format!("https://127.0.0.1:{port}"),
            "--tls-ca".into(),
            pki.path("ca.pem"),
            "--tls-cert".into(),
            pki.path("web-1.pem"),
            "--tls-key".into(),
            pki.path("web-1-key.pem"),
            "--spool".into(),
            spool.to_str().unwrap().into(),
        ]
    };
    // The collector is not there yet: everything stays in the spool.
    let args1 = agent_args(&cg);
    let agent = Agent::start(&args1.iter().map(String::as_str).collect::<Vec<_>>());
    let out = cg.run("/bin/sh", &["-c", "true; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    agent.wait_for("the exit of sh", |r| r.iter().any(|x| x["exit_code"] == 7));
    let first_jsonl = agent.jsonl.clone();
    let first = std::fs::read_to_string(&first_jsonl).unwrap();
    let _ = agent.stop();
    let first_after_stop = std::fs::read_to_string(&first_jsonl).unwrap_or(first);

    // Collector up, agent restarted on the same spool: the old records go out, once.
    let col = Collector::start(&pki, &tmp.path().join("data"), port, &[]);
    let args2 = agent_args(&cg);
    let agent = Agent::start(&args2.iter().map(String::as_str).collect::<Vec<_>>());
    let out = cg.run("/bin/sh", &["-c", "exit 9"]);
    assert_eq!(out.status.code(), Some(9));
    agent.wait_for("the exit of the second sh", |r| {
        r.iter().any(|x| x["exit_code"] == 9)
    });
    let second = || std::fs::read_to_string(&agent.jsonl).unwrap();
    let expected = || {
        first_after_stop
            .lines()
            .chain(second().lines())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert!(
        wait_for(Duration::from_secs(15), || export(&pki, col.port)
            == expected()),
        "stored:\n{}\nexpected:\n{}",
        export(&pki, col.port).join("\n"),
        expected().join("\n")
    );
}
