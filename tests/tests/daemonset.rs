//! The agent as the DaemonSet runs it, on this host: the container image, the container's
//! arguments, environment and mounts read from `deploy/kubernetes/agent-daemonset.yaml`, its
//! configuration the kustomize base's `agent.toml`, the in-cluster credentials (service-account
//! token and CA at `/var/run/secrets/kubernetes.io/serviceaccount`, `KUBERNETES_SERVICE_HOST`)
//! leading to the local API server fixture, and a real collector behind the Service's name. A pod
//! the configuration selects is recorded with its workload, shipped over mutual TLS, and found
//! by `recorder sessions --pod` and `replay --pod`.
//!
//! What cannot run here: a kubelet and a real API server (the fixture and the test play them),
//! cluster DNS (the Service name resolves through the container's /etc/hosts).
use std::{
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use recorder_tests::{
    Cgroup, free_port, http_get,
    kube_api::{KubeApi, TOKEN},
    kubelet::{Driver, NODE, Qos, Runtime, TestPod},
    podman::{self, Container, ensure_host_tracefs, image, ulimits},
    recorder_bin, repo_root, require_root,
};
use serde_json::Value;

const SERVICE: &str = "recorder-collector.recorder.svc";
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn recorder(args: &[&str]) -> Output {
    Command::new(recorder_bin())
        .args(args)
        .output()
        .expect("running recorder")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The agent container of the DaemonSet, as the manifest has it.
fn daemonset_container() -> Value {
    let text = std::fs::read_to_string(repo_root().join("deploy/kubernetes/agent-daemonset.yaml"))
        .expect("the DaemonSet manifest");
    let daemonset: Value = serde_saphyr::from_str(&text).expect("the DaemonSet parses");
    daemonset["spec"]["template"]["spec"]["containers"][0].clone()
}

/// `recorder collector` on the host, reached by the agent as the Service name.
struct Collector(Child);

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_daemonset_records_a_selected_pod_in_cluster_and_ships_it() {
    require_root();
    let image = image();
    ensure_host_tracefs();
    let dir = tempfile::tempdir().unwrap();
    let api = KubeApi::start(dir.path());

    // The PKI as the README's install makes it: the collector named by its Service, one
    // certificate per node, an operator.
    let pki = dir.path().join("pki");
    let pki_s = pki.to_str().unwrap();
    ok(recorder(&["pki", "init", "--dir", pki_s, "--san", SERVICE]));
    ok(recorder(&[
        "pki", "issue", "--dir", pki_s, "--role", "agent", "--name", NODE,
    ]));
    ok(recorder(&[
        "pki", "issue", "--dir", pki_s, "--role", "operator", "--name", "alice",
    ]));
    let tls = dir.path().join("tls"); // the recorder-agent-tls Secret
    std::fs::create_dir(&tls).unwrap();
    for file in [
        "ca.pem".to_string(),
        format!("{NODE}.pem"),
        format!("{NODE}-key.pem"),
    ] {
        std::fs::copy(pki.join(&file), tls.join(&file)).unwrap();
    }
    let port = free_port();
    let pem = |name: &str| pki.join(name).to_str().unwrap().to_string();
    let collector = Collector(
        Command::new(recorder_bin())
            .args(["collector", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(dir.path().join("store"))
            .args(["--tls-ca", &pem("ca.pem")])
            .args(["--tls-cert", &pem("collector.pem")])
            .args(["--tls-key", &pem("collector-key.pem")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the collector"),
    );

    // The service account's files, as the kubelet projects them.
    let sa = dir.path().join("serviceaccount");
    std::fs::create_dir(&sa).unwrap();
    std::fs::write(sa.join("token"), TOKEN).unwrap();
    std::fs::copy(api.ca_cert(), sa.join("ca.crt")).unwrap();
    std::fs::write(sa.join("namespace"), "recorder").unwrap();
    // The configMapGenerator's ConfigMap.
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::copy(
        repo_root().join("deploy/kubernetes/agent.toml"),
        config.join("agent.toml"),
    )
    .unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();

    // The container's arguments as the manifest gives them ($(NODE_NAME) expanded, as kubelet
    // does), and two overrides for this host: the Service's port, and a metrics port of its own
    // (the pod's 9464 may be taken on a shared host network).
    let container = daemonset_container();
    let mut args: Vec<String> = container["args"]
        .as_array()
        .expect("the container's args")
        .iter()
        .map(|a| a.as_str().unwrap().replace("$(NODE_NAME)", NODE))
        .collect();
    let metrics = format!("127.0.0.1:{}", free_port());
    args.extend([
        "--collector".into(),
        format!("https://{SERVICE}:{port}"),
        "--metrics-addr".into(),
        metrics.clone(),
    ]);
    let mounts: Vec<(String, String)> = container["volumeMounts"]
        .as_array()
        .expect("the container's mounts")
        .iter()
        .map(|m| {
            let path = m["mountPath"].as_str().unwrap().to_string();
            let from = match m["name"].as_str().unwrap() {
                "config" => config.to_str().unwrap().to_string(),
                "tls" => tls.to_str().unwrap().to_string(),
                "spool" => spool.to_str().unwrap().to_string(),
                // hostPath volumes: the same path on this host.
                _ => path.clone(),
            };
            let ro = if m["readOnly"] == true { ":ro" } else { "" };
            (format!("{from}:{path}{ro}"), path)
        })
        .collect();
    assert!(
        mounts.iter().any(|(_, p)| p == "/sys/fs/cgroup"),
        "the DaemonSet mounts the node's cgroups: {mounts:?}"
    );

    let name = format!("recorder-test-daemonset-{}", std::process::id());
    let mut run = Command::new("podman");
    run.args(["run", "-d", "--name", &name, "--pid=host", "--network=host"])
        .args(["--add-host", &format!("{SERVICE}:127.0.0.1")])
        .args(ulimits())
        .args(["--cap-drop=all", podman::DAEMONSET_CAPS, "--read-only"]);
    for (volume, _) in &mounts {
        run.args(["-v", volume]);
    }
    run.arg("-v")
        .arg(format!("{}:{SA_DIR}:ro", sa.display()))
        .args(["-e", &format!("NODE_NAME={NODE}")])
        .args(["-e", "KUBERNETES_SERVICE_HOST=127.0.0.1"])
        .args(["-e", &format!("KUBERNETES_SERVICE_PORT={}", api.port())])
        .args(["-e", "RECORDER_LOG=info"])
        .arg(&image)
        .args(&args);
    let out = run.output().expect("podman run");
    let agent = Container(name);
    assert!(
        out.status.success(),
        "podman run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = Instant::now();
    while !http_get(&metrics, "/readyz").is_ok_and(|(code, _)| code == 200) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the agent was not ready in 60 s; its log:\n{}",
            agent.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A pod agent.toml selects (namespace agents, app=claude), started as kubelet does.
    let root = Cgroup::new("daemonset");
    let mut pod = TestPod::new(
        &root.path,
        Driver::Systemd,
        Qos::Burstable,
        Runtime::Containerd,
        "claude-7d9f5-x2k4q",
    );
    pod.start_container();
    api.put_pod(pod.object());
    let op: Vec<String> = [
        "--collector".to_string(),
        format!("https://127.0.0.1:{port}"),
        "--tls-ca".into(),
        pem("ca.pem"),
        "--tls-cert".into(),
        pem("alice.pem"),
        "--tls-key".into(),
        pem("alice-key.pem"),
    ]
    .into();
    let with_op = |head: &[&str]| -> Output {
        let mut all: Vec<&str> = head.to_vec();
        all.extend(op.iter().map(String::as_str));
        recorder(&all)
    };
    // Commands in the pod until the collector has one (the pod is watched within a second of
    // its publication; the agent ships within a second).
    let start = Instant::now();
    let replayed = loop {
        pod.exec("/bin/echo", &["in-the-cluster"]);
        let out = with_op(&[
            "replay",
            "--namespace",
            "agents",
            "--pod",
            &pod.name,
            "--format",
            "jsonl",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("in-the-cluster") {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the collector has no record of the pod; replay: {}\nthe agent's log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            agent.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let echo: Value = replayed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| {
            r["kind"] == "exec" && r["argv"] == serde_json::json!(["/bin/echo", "in-the-cluster"])
        })
        .expect("the command's exec record");
    for (field, want) in [
        ("host", NODE),
        ("identity", "claude"),
        ("k8s.namespace.name", "agents"),
        ("k8s.pod.name", pod.name.as_str()),
        ("k8s.pod.uid", pod.uid.as_str()),
        ("container.id", pod.container_id.as_str()),
        ("k8s.node.name", NODE),
        ("k8s.serviceaccount.name", "claude"),
        ("k8s.pod.label.app", "claude"),
    ] {
        assert_eq!(echo[field], want, "{field} of {echo}");
    }
    let sessions = ok(with_op(&[
        "sessions", "--pod", &pod.name, "--format", "jsonl",
    ]));
    assert!(
        sessions.lines().count() >= 1 && sessions.contains("\"namespace\":\"agents\""),
        "{sessions}"
    );
    drop(agent);
    drop(collector);
}
