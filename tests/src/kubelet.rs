//! Playing kubelet's part for tests and benchmarks: a pod's container cgroup made where
//! kubelet puts it (both cgroup drivers, every QoS class, the scope names of containerd, CRI-O
//! and Docker), a first process started in it, then the pod object with the container's id in
//! its status, in that order, as kubelet and the runtime do.
use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher as _, Hasher as _},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};

use crate::command_in_cgroup;

/// The node the pods are scheduled on, unless changed.
pub const NODE: &str = "node-1";

/// A fresh lowercase hex string of `len` digits (container ids, uids).
pub fn hex(len: usize) -> String {
    let mut out = String::new();
    while out.len() < len {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(len);
    out
}

pub fn new_uid() -> String {
    let h = hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Systemd,
    Cgroupfs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    BestEffort,
    Burstable,
    Guaranteed,
}

impl Qos {
    pub const ALL: [Qos; 3] = [Qos::BestEffort, Qos::Burstable, Qos::Guaranteed];

    /// The QoS level's directory word (Guaranteed pods sit right under kubepods).
    fn level(self) -> Option<&'static str> {
        match self {
            Qos::BestEffort => Some("besteffort"),
            Qos::Burstable => Some("burstable"),
            Qos::Guaranteed => None,
        }
    }

    fn status(self) -> &'static str {
        match self {
            Qos::BestEffort => "BestEffort",
            Qos::Burstable => "Burstable",
            Qos::Guaranteed => "Guaranteed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
}

impl Runtime {
    pub const ALL: [Runtime; 3] = [Runtime::Containerd, Runtime::CriO, Runtime::Docker];

    /// The scheme of `status.containerStatuses[].containerID`.
    fn scheme(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Docker => "docker",
        }
    }

    /// The scope name kubelet's systemd driver gives the container.
    fn scope_prefix(self) -> &'static str {
        match self {
            Runtime::Containerd => "cri-containerd",
            Runtime::CriO => "crio",
            Runtime::Docker => "docker",
        }
    }
}

/// A pod as the test plays kubelet for it: its object, and its one container's cgroup.
pub struct TestPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    pub labels: Vec<(String, String)>,
    pub service_account: String,
    pub qos: Qos,
    pub runtime: Runtime,
    pub container_id: String,
    pub image: String,
    /// The container's cgroup directory.
    pub cgroup: PathBuf,
    /// The container's first process (a shell that forks now and then, as most do).
    pub main: Option<Child>,
}

impl TestPod {
    pub fn new(root: &Path, driver: Driver, qos: Qos, runtime: Runtime, name: &str) -> Self {
        let uid = new_uid();
        let container_id = hex(64);
        let cgroup = root.join(kubelet_path(driver, qos, runtime, &uid, &container_id));
        Self {
            namespace: "agents".into(),
            name: name.into(),
            uid,
            node: NODE.into(),
            labels: vec![
                ("app".into(), "claude".into()),
                ("tier".into(), "ops".into()),
            ],
            service_account: "claude".into(),
            qos,
            runtime,
            container_id,
            image: format!("registry.example/agents/{name}:1.0"),
            cgroup,
            main: None,
        }
    }

    pub fn with_labels(mut self, labels: &[(&str, &str)]) -> Self {
        self.labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        self
    }

    /// What the runtime does: the container's cgroup, and its first process in it.
    pub fn start_container(&mut self) -> SystemTime {
        std::fs::create_dir_all(&self.cgroup)
            .unwrap_or_else(|e| panic!("creating {}: {e}", self.cgroup.display()));
        let started = SystemTime::now();
        let main = command_in_cgroup(&self.cgroup, "/bin/sh")
            .args(["-c", "while :; do /bin/sleep 0.05; done"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting the container's first process");
        self.main = Some(main);
        started
    }

    /// Runs one command in the container (as `kubectl exec` would) and waits for it.
    pub fn exec(&self, program: &str, args: &[&str]) {
        let out = command_in_cgroup(&self.cgroup, program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(out.status.success(), "{program} {args:?}: {out:?}");
    }

    /// The pod object, with the running container in its status (what kubelet publishes).
    pub fn object(&self) -> Value {
        let labels: serde_json::Map<String, Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "uid": self.uid,
                "labels": labels,
            },
            "spec": {
                "nodeName": self.node,
                "serviceAccountName": self.service_account,
                "containers": [{"name": "agent", "image": self.image}],
            },
            "status": {
                "phase": "Running",
                "qosClass": self.qos.status(),
                "containerStatuses": [{
                    "name": "agent",
                    "image": self.image,
                    "imageID": format!("{}@sha256:{}", self.image, hex(64)),
                    "containerID": format!("{}://{}", self.runtime.scheme(), self.container_id),
                    "ready": true,
                    "started": true,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": "2026-12-04T10:00:00Z"}},
                }],
            },
        })
    }

    /// What kubelet does when the pod is gone: the processes killed, the cgroups removed.
    pub fn stop_container(&mut self) {
        if let Some(mut main) = self.main.take() {
            let _ = main.kill();
            let _ = main.wait();
        }
        // The leaf may keep a just-killed child for a moment.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.cgroup).is_ok() || !self.cgroup.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestPod {
    fn drop(&mut self) {
        self.stop_container();
    }
}

/// kubelet's cgroup path for a container, relative to the cgroup root it was given.
pub fn kubelet_path(driver: Driver, qos: Qos, runtime: Runtime, uid: &str, id: &str) -> String {
    match driver {
        Driver::Systemd => {
            let uid_ = uid.replace('-', "_");
            let scope = format!("{}-{id}.scope", runtime.scope_prefix());
            match qos.level() {
                Some(level) => format!(
                    "kubepods.slice/kubepods-{level}.slice/kubepods-{level}-pod{uid_}.slice/{scope}"
                ),
                None => format!("kubepods.slice/kubepods-pod{uid_}.slice/{scope}"),
            }
        }
        Driver::Cgroupfs => match qos.level() {
            Some(level) => format!("kubepods/{level}/pod{uid}/{id}"),
            None => format!("kubepods/pod{uid}/{id}"),
        },
    }
}
