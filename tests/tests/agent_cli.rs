//! End-to-end: what the agent says when it is given something it cannot use, and its
//! readiness and metrics endpoints.
use std::process::{Command, Stdio};

use recorder_tests::{Agent, Cgroup, cgroup_v2_mount, http_get, recorder_bin, require_root};

fn agent_fails(args: &[&str]) -> String {
    let out = Command::new(recorder_bin())
        .arg("agent")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running recorder");
    assert!(!out.status.success(), "expected failure for {args:?}");
    assert_ne!(
        out.status.code(),
        Some(101),
        "a panic is not an error message: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unknown_cgroup_is_a_clear_error() {
    require_root();
    let err = agent_fails(&["--identity", "x=/no/such/cgroup", "--jsonl", "/dev/null"]);
    assert!(
        err.contains("identity \"x\"") && err.contains("does not exist"),
        "{err}"
    );
    let err = agent_fails(&[
        "--identity",
        "x=no-such-relative-cgroup",
        "--jsonl",
        "/dev/null",
    ]);
    assert!(
        err.contains(&cgroup_v2_mount().display().to_string()),
        "names the v2 mount: {err}"
    );
    let err = agent_fails(&[
        "--identity",
        "x=unit:no-such-unit.service",
        "--jsonl",
        "/dev/null",
    ]);
    assert!(
        err.contains("no-such-unit.service") && err.contains("running"),
        "{err}"
    );
    let err = agent_fails(&["--identity", "justaname", "--jsonl", "/dev/null"]);
    assert!(err.contains("NAME=CGROUP"), "{err}");
}

#[test]
fn malformed_config_is_a_clear_error() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[identity]]\nname = \"a\"\ncgroup = \n").unwrap();
    let err = agent_fails(&["--config", bad.to_str().unwrap(), "--jsonl", "/dev/null"]);
    assert!(
        err.contains("invalid config file") && err.contains("line 3"),
        "{err}"
    );
    std::fs::write(&bad, "[[identity]]\nname = \"a\"\ncgroupp = \"x\"\n").unwrap();
    let err = agent_fails(&["--config", bad.to_str().unwrap(), "--jsonl", "/dev/null"]);
    assert!(err.contains("unknown field `cgroupp`"), "{err}");
    let err = agent_fails(&["--config", "/no/such/file.toml"]);
    assert!(
        err.contains("cannot read the config file /no/such/file.toml"),
        "{err}"
    );
}

#[test]
fn unreadable_btf_is_a_clear_error() {
    let cg = Cgroup::new("btf");
    let id = cg.identity_flag("b");
    let err = agent_fails(&[
        "--identity",
        &id,
        "--jsonl",
        "/dev/null",
        "--btf",
        "/no/such/btf",
    ]);
    assert!(
        err.contains("cannot read the kernel BTF at /no/such/btf"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not btf at all").unwrap();
    let err = agent_fails(&[
        "--identity",
        &id,
        "--jsonl",
        "/dev/null",
        "--btf",
        junk.to_str().unwrap(),
    ]);
    assert!(err.contains("malformed"), "{err}");
}

#[test]
fn config_file_and_flags_combine() {
    let a = Cgroup::new("cfg-a");
    let b = Cgroup::new("cfg-b");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "host = \"cfg-host\"\n[[identity]]\nname = \"from-file\"\ncgroup = \"{}\"\n",
            a.path.display()
        ),
    )
    .unwrap();
    let agent = Agent::start(&[
        "--config",
        config.to_str().unwrap(),
        "--identity",
        &b.identity_flag("from-flag"),
    ]);
    a.run("/bin/true", &[]);
    b.run("/bin/true", &[]);
    let records = agent.wait_for("two exits", |r| {
        r.iter().filter(|x| x["kind"] == "exit").count() == 2
    });
    let idents: Vec<_> = records
        .iter()
        .filter(|r| r["kind"] == "exec")
        .map(|r| r["identity"].as_str().unwrap())
        .collect();
    assert_eq!(idents, ["from-file", "from-flag"]);
    assert!(records.iter().all(|r| r["host"] == "cfg-host"));
}

#[test]
fn serves_readiness_and_metrics() {
    let cg = Cgroup::new("metrics");
    let agent = Agent::start(&["--identity", &cg.identity_flag("m")]);
    let (code, body) = http_get(&agent.metrics, "/readyz").unwrap();
    assert_eq!((code, body.as_str()), (200, "ready\n"));
    cg.run("/bin/true", &[]);
    agent.wait_for("the exit", |r| r.iter().any(|x| x["kind"] == "exit"));
    let (code, body) = http_get(&agent.metrics, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        body.contains("recorder_records_total{kind=\"exec\"} 1\n"),
        "{body}"
    );
    assert!(
        body.contains("recorder_records_total{kind=\"exit\"} 1\n"),
        "{body}"
    );
}

/// Identities selected by pod need this node's name and a reachable configuration: refused at
/// start with what to do, before any probe is loaded.
#[test]
fn a_pod_identity_without_a_node_name_is_a_clear_error() {
    require_root();
    let out = Command::new(recorder_bin())
        .args([
            "agent",
            "--identity",
            "c=k8s:namespace=agents",
            "--jsonl",
            "/dev/null",
        ])
        .env_remove("NODE_NAME")
        .stdin(Stdio::null())
        .output()
        .expect("running recorder");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && out.status.code() != Some(101),
        "{err}"
    );
    assert!(
        err.contains("NODE_NAME") && err.contains("--node-name"),
        "{err}"
    );
    let err = agent_fails(&["--identity", "c=k8s:", "--jsonl", "/dev/null"]);
    assert!(err.contains("selects every pod"), "{err}");
    let err = agent_fails(&[
        "--identity",
        "c=k8s:labels=tier in ops",
        "--jsonl",
        "/dev/null",
    ]);
    assert!(err.contains("parentheses"), "{err}");
    let err = agent_fails(&[
        "--identity",
        "c=k8s:namespace=agents",
        "--node-name",
        "node-1",
        "--kubeconfig",
        "/no/such/kubeconfig",
        "--jsonl",
        "/dev/null",
    ]);
    assert!(err.contains("/no/such/kubeconfig"), "{err}");
}

/// Under systemd (`Type=notify`) the agent says READY=1 only once its probes are attached:
/// /readyz already answers 200 when the notification arrives.
#[test]
fn tells_systemd_it_is_ready_once_probes_are_attached() {
    require_root();
    let cg = Cgroup::new("notify");
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let metrics = format!("127.0.0.1:{}", recorder_tests::free_port());
    let mut agent = Command::new(recorder_bin())
        .args([
            "agent",
            "--identity",
            &cg.identity_flag("n"),
            "--jsonl",
            "/dev/null",
        ])
        .args(["--metrics-addr", &metrics])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the agent");
    let mut buf = [0u8; 128];
    let n = socket.recv(&mut buf).expect("a notification within 60 s");
    assert_eq!(&buf[..n], b"READY=1");
    let (code, _) = http_get(&metrics, "/readyz").unwrap();
    assert_eq!(code, 200, "READY=1 came before the probes were attached");
    // SAFETY: sending SIGTERM to our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let n = socket.recv(&mut buf).expect("a stop notification");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(agent.wait().unwrap().success());
}
