//! Identities selected by Kubernetes pod, end to end, as root: real cgroups in kubelet's layouts
//! (both cgroup drivers, every QoS class, the scope names of containerd, CRI-O and Docker) under
//! the real cgroup v2 mount, real processes in them, the pods served by the local API server
//! fixture (live watches), the agent's real eBPF programs; and one real container run by runc in
//! a kubelet-style cgroup.
//!
//! kubelet itself cannot run here (no cluster): the test plays its part, making each container's
//! cgroup, starting its first process there, then publishing the pod with the container's id in
//! its status, in that order, as kubelet and the runtime do.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use recorder_tests::{
    Agent, Cgroup, argv, dump,
    kube_api::KubeApi,
    kubelet::{Driver, NODE, Qos, Runtime, TestPod},
    of_kind, require_root, run_ok,
};
use serde_json::{Value, json};

const IDENTITY: &str = "claude=k8s:namespace=agents;labels=app=claude,tier in (ops, batch)";

/// The agent flags for the identity selected by pod, against `api`.
fn agent_args(api: &KubeApi) -> Vec<String> {
    vec![
        "--identity".into(),
        IDENTITY.into(),
        "--node-name".into(),
        NODE.into(),
        "--kubeconfig".into(),
        api.kubeconfig().display().to_string(),
        "--copy-label".into(),
        "app".into(),
    ]
}

fn start_agent(api: &KubeApi) -> Agent {
    let args = agent_args(api);
    Agent::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Waits until the agent watches `n` containers of selected pods.
fn wait_watched(agent: &Agent, n: usize) {
    let start = Instant::now();
    loop {
        let watched = agent.metric_sum("recorder_kubernetes_watched_containers");
        if watched == n as f64 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the agent watches {watched} containers, not {n}; its log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The records of commands run in `pod` (by its uid), exec records only.
fn execs_in<'a>(records: &'a [Value], pod: &TestPod) -> Vec<&'a Value> {
    of_kind(records, "exec")
        .into_iter()
        .filter(|r| r["k8s.pod.uid"] == pod.uid.as_str())
        .collect()
}

fn has_marker(records: &[Value], marker: &str) -> bool {
    of_kind(records, "exec")
        .iter()
        .any(|r| argv(r).iter().any(|a| a == marker))
}

/// A record's time in Unix nanoseconds.
fn unix_ns(record: &Value) -> i128 {
    recorder_record::time::parse_rfc3339(record["time"].as_str().expect("a time"))
        .expect("an RFC 3339 time")
}

fn ns_of(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128
}

/// Every workload field of a record of `pod`, as OpenTelemetry names them.
fn assert_workload(record: &Value, pod: &TestPod) {
    let want = [
        ("k8s.namespace.name", pod.namespace.as_str()),
        ("k8s.pod.name", pod.name.as_str()),
        ("k8s.pod.uid", pod.uid.as_str()),
        ("k8s.container.name", "agent"),
        ("container.id", pod.container_id.as_str()),
        ("container.image.name", pod.image.as_str()),
        ("k8s.node.name", NODE),
        ("k8s.serviceaccount.name", pod.service_account.as_str()),
        ("k8s.pod.label.app", "claude"),
    ];
    for (field, value) in want {
        assert_eq!(record[field], value, "{field} of {record}");
    }
    assert!(
        record.get("k8s.pod.label.tier").is_none(),
        "only the labels asked for are copied: {record}"
    );
    assert_eq!(record["identity"], "claude", "{record}");
}

#[test]
fn every_kubelet_layout_is_recorded_with_its_workload() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let api = KubeApi::start(dir.path());
    let root = Cgroup::new("k8s-layouts");

    let mut selected = Vec::new();
    for driver in [Driver::Systemd, Driver::Cgroupfs] {
        for qos in Qos::ALL {
            // The cgroupfs driver names containers by id alone, whatever the runtime.
            let runtimes: &[Runtime] = match driver {
                Driver::Systemd => &Runtime::ALL,
                Driver::Cgroupfs => &[Runtime::Containerd],
            };
            for &runtime in runtimes {
                let name = format!("claude-{driver:?}-{qos:?}-{runtime:?}").to_lowercase();
                selected.push(TestPod::new(&root.path, driver, qos, runtime, &name));
            }
        }
    }
    let mut others = vec![
        TestPod::new(
            &root.path,
            Driver::Systemd,
            Qos::Burstable,
            Runtime::Containerd,
            "other-app",
        )
        .with_labels(&[("app", "other"), ("tier", "ops")]),
        TestPod::new(
            &root.path,
            Driver::Systemd,
            Qos::Burstable,
            Runtime::Containerd,
            "other-tier",
        )
        .with_labels(&[("app", "claude"), ("tier", "web")]),
        TestPod::new(
            &root.path,
            Driver::Cgroupfs,
            Qos::BestEffort,
            Runtime::Containerd,
            "other-ns",
        ),
        TestPod::new(
            &root.path,
            Driver::Cgroupfs,
            Qos::Guaranteed,
            Runtime::Containerd,
            "other-node",
        ),
    ];
    others[2].namespace = "default".into();
    // Same selector fields, but scheduled on another node: this node's agent never sees it.
    others[3].node = "node-2".into();

    // Half the pods exist before the agent starts (its first list), half come after (the watch).
    let (before, after) = selected.split_at_mut(6);
    for pod in before.iter_mut().chain(others.iter_mut()) {
        pod.start_container();
        api.put_pod(pod.object());
    }
    let agent = start_agent(&api);
    for pod in after.iter_mut() {
        pod.start_container();
        api.put_pod(pod.object());
    }
    wait_watched(&agent, selected.len());

    for pod in others.iter().chain(&selected) {
        pod.exec("/bin/echo", &[&format!("ran-in-{}", pod.name)]);
    }
    agent.wait_for("a command of every selected pod", |records| {
        selected
            .iter()
            .all(|pod| has_marker(records, &format!("ran-in-{}", pod.name)))
    });
    let records = agent.stop();
    for pod in &selected {
        let marker = format!("ran-in-{}", pod.name);
        let execs = execs_in(&records, pod);
        let echo = execs
            .iter()
            .find(|r| argv(r) == ["/bin/echo", marker.as_str()])
            .unwrap_or_else(|| {
                panic!(
                    "no exec of {marker} with the pod's uid:\n{}",
                    dump(&records)
                )
            });
        assert_workload(echo, pod);
        // The container's first process, running before its pod was known, is adopted.
        assert!(
            execs.iter().any(|r| r["adopted"] == true),
            "{}: the container's first process was not adopted:\n{}",
            pod.name,
            dump(&records)
        );
    }
    for pod in &others {
        assert!(
            !has_marker(&records, &format!("ran-in-{}", pod.name)),
            "{} is not selected but was recorded:\n{}",
            pod.name,
            dump(&records)
        );
    }
}

#[test]
fn a_recreated_pod_and_a_relabelled_pod_are_picked_up() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let api = KubeApi::start(dir.path());
    let root = Cgroup::new("k8s-changes");
    let agent = start_agent(&api);

    let mut first = TestPod::new(
        &root.path,
        Driver::Systemd,
        Qos::Burstable,
        Runtime::Containerd,
        "claude-0",
    );
    first.start_container();
    api.put_pod(first.object());
    wait_watched(&agent, 1);
    first.exec("/bin/echo", &["first-incarnation"]);
    agent.wait_for("the first pod's command", |r| {
        has_marker(r, "first-incarnation")
    });

    // Deleted, then re-created under the same name: a new uid, container and cgroup.
    api.delete_pod(&first.namespace, &first.name);
    first.stop_container();
    wait_watched(&agent, 0);
    let mut second = TestPod::new(
        &root.path,
        Driver::Systemd,
        Qos::Burstable,
        Runtime::Containerd,
        "claude-0",
    );
    let process_started = second.start_container();
    let published = SystemTime::now();
    api.put_pod(second.object());
    let records = agent.wait_for("the re-created pod's first process, adopted", |r| {
        !execs_in(r, &second).is_empty()
    });
    let first_record = execs_in(&records, &second)[0];
    let after_publish = unix_ns(first_record) - ns_of(published);
    let after_start = unix_ns(first_record) - ns_of(process_started);
    println!(
        "re-created pod: first record {:.1} ms after the pod was published, {:.1} ms after its \
         first process started",
        after_publish as f64 / 1e6,
        after_start as f64 / 1e6
    );
    assert!(
        after_publish < 1_000_000_000,
        "the re-created pod was recorded {after_publish} ns after it was published, not within 1 s"
    );
    assert_workload(first_record, &second);

    // Running, not selected (another tier), then relabelled into the selector.
    let mut relabelled = TestPod::new(
        &root.path,
        Driver::Cgroupfs,
        Qos::BestEffort,
        Runtime::CriO,
        "claude-web",
    )
    .with_labels(&[("app", "claude"), ("tier", "web")]);
    relabelled.start_container();
    api.put_pod(relabelled.object());
    relabelled.exec("/bin/echo", &["before-the-label"]);
    relabelled.labels = vec![
        ("app".into(), "claude".into()),
        ("tier".into(), "batch".into()),
    ];
    api.put_pod(relabelled.object());
    wait_watched(&agent, 2);
    relabelled.exec("/bin/echo", &["after-the-label"]);
    let records = agent.wait_for("the relabelled pod's command", |r| {
        has_marker(r, "after-the-label")
    });
    let after = of_kind(&records, "exec")
        .into_iter()
        .find(|r| argv(r) == ["/bin/echo", "after-the-label"])
        .unwrap();
    assert_eq!(after["k8s.pod.uid"], relabelled.uid.as_str());
    assert_eq!(after["k8s.pod.name"], "claude-web");
    let records = agent.stop();
    assert!(
        !has_marker(&records, "before-the-label"),
        "recorded before the pod was selected:\n{}",
        dump(&records)
    );
    assert!(
        execs_in(&records, &first)
            .iter()
            .all(|r| r["k8s.pod.name"] == "claude-0"),
        "{}",
        dump(&records)
    );
}

#[test]
fn the_api_server_going_away_loses_nothing_of_known_pods() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let api = KubeApi::start(dir.path());
    let root = Cgroup::new("k8s-outage");
    let mut known = TestPod::new(
        &root.path,
        Driver::Cgroupfs,
        Qos::Burstable,
        Runtime::Containerd,
        "claude-known",
    );
    known.start_container();
    api.put_pod(known.object());
    let agent = start_agent(&api);
    wait_watched(&agent, 1);
    assert_eq!(agent.metric_sum("recorder_kubernetes_api_up"), 1.0);

    api.stop_serving();
    agent.wait_for("a notice that the API server is unreachable", |records| {
        of_kind(records, "notice")
            .iter()
            .any(|n| n["reason"] == "kubernetes_api_unreachable")
    });
    assert_eq!(agent.metric_sum("recorder_kubernetes_api_up"), 0.0);
    // The known pod is still recorded, every command of it.
    let during: Vec<String> = (0..20).map(|i| format!("during-outage-{i}")).collect();
    for marker in &during {
        known.exec("/bin/echo", &[marker]);
    }
    // A pod started meanwhile is known once the API server answers again.
    let mut newcomer = TestPod::new(
        &root.path,
        Driver::Systemd,
        Qos::Guaranteed,
        Runtime::Docker,
        "claude-new",
    );
    newcomer.start_container();
    api.put_pod(newcomer.object());
    api.resume_serving();
    wait_watched(&agent, 2);
    assert_eq!(agent.metric_sum("recorder_kubernetes_api_up"), 1.0);
    newcomer.exec("/bin/echo", &["after-outage"]);
    agent.wait_for("the new pod's command", |r| has_marker(r, "after-outage"));
    let records = agent.stop();

    for marker in &during {
        let record = of_kind(&records, "exec")
            .into_iter()
            .find(|r| argv(r) == ["/bin/echo", marker.as_str()])
            .unwrap_or_else(|| panic!("{marker} lost during the outage:\n{}", dump(&records)));
        assert_workload(record, &known);
    }
    let reasons: Vec<&str> = of_kind(&records, "notice")
        .iter()
        .filter_map(|n| n["reason"].as_str())
        .filter(|r| r.starts_with("kubernetes_api"))
        .collect();
    assert_eq!(
        reasons.first(),
        Some(&"kubernetes_api_unreachable"),
        "{}",
        dump(&records)
    );
    assert!(
        reasons.contains(&"kubernetes_api_restored"),
        "{}",
        dump(&records)
    );
    assert!(
        of_kind(&records, "notice")
            .iter()
            .all(|n| n["identity"] == "claude"),
        "{}",
        dump(&records)
    );
    assert!(
        agent_log_mentions(&records),
        "the notices say why and what happens meanwhile"
    );
}

fn agent_log_mentions(records: &[Value]) -> bool {
    of_kind(records, "notice").iter().any(|n| {
        n["detail"]
            .as_str()
            .is_some_and(|d| d.contains("stay watched") && d.contains("retrying"))
    })
}

/// A real container: runc (Debian's) runs a busybox root filesystem with its cgroup where
/// kubelet's cgroupfs driver puts a Burstable pod's container; the agent records the
/// commands run in it (`runc exec`) with the container's id.
#[test]
fn a_runc_container_in_a_kubelet_cgroup_is_recorded() {
    require_root();
    let runc = which("runc").expect("runc is installed by cargo xtask setup");
    let busybox = which("busybox").expect("busybox-static is installed by cargo xtask setup");
    let dir = tempfile::tempdir().unwrap();
    let api = KubeApi::start(dir.path());
    let root = Cgroup::new("k8s-runc");
    let mut pod = TestPod::new(
        &root.path,
        Driver::Cgroupfs,
        Qos::Burstable,
        Runtime::Containerd,
        "claude-runc",
    );
    pod.image = "localhost/busybox:test".into();

    let bundle = dir.path().join("bundle");
    let bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(&busybox, bin.join("busybox")).unwrap();
    for applet in ["sh", "sleep", "echo"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    run_ok(Command::new(&runc).arg("spec").current_dir(&bundle));
    let config_path = bundle.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["/bin/sh", "-c", "while :; do sleep 0.05; done"]);
    let mount = recorder_tests::cgroup_v2_mount();
    let cgroups_path = pod.cgroup.strip_prefix(&mount).unwrap();
    config["linux"]["cgroupsPath"] = json!(format!("/{}", cgroups_path.display()));
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();

    let agent = start_agent(&api);
    let container = RuncContainer::run(&runc, &bundle, &pod.container_id);
    assert!(
        pod.cgroup.is_dir(),
        "runc made the container's cgroup {}",
        pod.cgroup.display()
    );
    api.put_pod(pod.object());
    wait_watched(&agent, 1);
    container.exec(&["/bin/echo", "inside-the-container"]);
    let records = agent.wait_for("the container's command", |r| {
        has_marker(r, "inside-the-container")
    });
    let echo = of_kind(&records, "exec")
        .into_iter()
        .find(|r| argv(r) == ["/bin/echo", "inside-the-container"])
        .unwrap();
    assert_workload(echo, &pod);
    drop(container);
    remove_v1_leftovers(&root.path);
    drop(agent);
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// A container started by `runc run --detach`, killed and deleted on drop.
struct RuncContainer {
    runc: PathBuf,
    id: String,
}

impl RuncContainer {
    fn run(runc: &Path, bundle: &Path, id: &str) -> Self {
        // The container inherits runc's stdio: a pipe would never close, so its errors go to
        // a file.
        let log = bundle.join("runc.log");
        let status = Command::new(runc)
            .args(["run", "--detach", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .status()
            .expect("running runc");
        assert!(
            status.success(),
            "runc run: {status}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Self {
            runc: runc.to_path_buf(),
            id: id.to_string(),
        }
    }

    fn exec(&self, args: &[&str]) {
        run_ok(
            Command::new(&self.runc)
                .arg("exec")
                .arg(&self.id)
                .args(args),
        );
    }
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let _ = Command::new(&self.runc)
            .args(["delete", "--force", &self.id])
            .output();
    }
}

/// On a hybrid host runc also made the container's parents in each cgroup v1 hierarchy, and
/// leaves them behind: removed here, deepest first.
fn remove_v1_leftovers(test_root: &Path) {
    fn remove(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let Some(name) = test_root.file_name() else {
        return;
    };
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for hierarchy in hierarchies.flatten() {
        let leftover = hierarchy.path().join(name);
        if leftover != test_root && leftover.is_dir() {
            remove(&leftover);
        }
    }
}

/// A container's main process that never forks nor execs (a Python agent calling an API over
/// TLS), running before its pod was known: adopted when the pod is selected, its calls recorded.
#[test]
fn a_containers_main_process_that_never_forks_is_adopted_and_its_tls_calls_recorded() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let api = KubeApi::start(dir.path());
    let root = Cgroup::new("k8s-resident");
    let mut pod = TestPod::new(
        &root.path,
        Driver::Systemd,
        Qos::Guaranteed,
        Runtime::CriO,
        "claude-resident",
    );
    std::fs::create_dir_all(&pod.cgroup).unwrap();
    let go = dir.path().join("go");
    // OpenSSL loaded before the pod is known; one request once `go` exists; no fork, no exec.
    let script = format!(
        "import os, ssl, time, urllib.request\n\
         ctx = ssl.create_default_context(cafile={ca:?})\n\
         deadline = time.time() + 60\n\
         while not os.path.exists({go:?}) and time.time() < deadline: time.sleep(0.05)\n\
         urllib.request.urlopen({url:?}, context=ctx).read()\n\
         time.sleep(30)\n",
        ca = api.ca_cert().display().to_string(),
        go = go.display().to_string(),
        url = format!("{}/api/v1/namespaces/agents/pods", api.url()),
    );
    let main = KillOnDrop(
        recorder_tests::command_in_cgroup(&pod.cgroup, "/usr/bin/python3")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("python3"),
    );
    let pid = main.0.id();
    let agent = start_agent(&api);
    api.put_pod(pod.object());
    let records = agent.wait_for("the resident process adopted", |r| {
        of_kind(r, "exec")
            .iter()
            .any(|e| e["pid"] == pid && e["adopted"] == true)
    });
    let adopted = of_kind(&records, "exec")
        .into_iter()
        .find(|e| e["pid"] == pid)
        .unwrap();
    assert_eq!(argv(adopted)[..2], ["/usr/bin/python3", "-c"], "{adopted}");
    assert_workload(adopted, &pod);
    std::fs::write(&go, "").unwrap();
    let records = agent.wait_for("the resident process's API call", |r| {
        r.iter()
            .any(|x| x["kind"] == "k8s" && x["pid"] == pid && x["status"] == 200)
    });
    let call = records
        .iter()
        .find(|x| x["kind"] == "k8s" && x["pid"] == pid)
        .unwrap();
    assert_eq!(call["method"], "GET", "{call}");
    assert_eq!(call["session"], adopted["session"], "{call}");
    assert_workload(call, &pod);
    drop(main);
    pod.stop_container();
    let records = agent.stop();
    assert!(
        of_kind(&records, "exec")
            .iter()
            .filter(|e| e["pid"] == pid)
            .count()
            == 1,
        "adopted once, by the agent or the kernel: {}",
        dump(&records)
    );
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
