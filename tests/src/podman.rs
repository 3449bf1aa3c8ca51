//! The container image under test, run with podman as a node runs it.
use std::{path::Path, process::Command};

use crate::output;

/// The capabilities the DaemonSet gives the agent (deploy/kubernetes/agent-daemonset.yaml).
pub const DAEMONSET_CAPS: &str =
    "--cap-add=CAP_BPF,CAP_PERFMON,CAP_SYS_ADMIN,CAP_SYS_PTRACE,CAP_DAC_READ_SEARCH";

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The image `cargo xtask image` made (`RECORDER_IMAGE`, or this version's tag).
pub fn image() -> String {
    let image =
        std::env::var("RECORDER_IMAGE").unwrap_or_else(|_| format!("localhost/recorder:{VERSION}"));
    let out = output(Command::new("podman").args(["image", "exists", &image]));
    assert!(
        out.status.success(),
        "no image {image}: run `cargo xtask image` (cargo xtask test does)"
    );
    image
}

/// A running container, removed on drop.
pub struct Container(pub String);

impl Container {
    pub fn logs(&self) -> String {
        let out = output(Command::new("podman").args(["logs", &self.0]));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "5", &self.0])
            .output();
    }
}

/// aya finds tracepoints through tracefs. The node provides it (systemd mounts it at boot) and
/// the DaemonSet mounts the node's into the container: an agent that mounted its own would
/// make it inside the container's mount namespace only.
pub fn ensure_host_tracefs() {
    if !Path::new("/sys/kernel/tracing/events").exists() {
        let out =
            output(Command::new("mount").args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"]));
        assert!(out.status.success(), "mounting tracefs: {out:?}");
    }
}

/// The rlimits podman sets by default (1048576 open files) can exceed this machine's hard
/// limits, which a process without CAP_SYS_RESOURCE cannot raise: ask for what we have.
pub fn ulimits() -> [String; 4] {
    let mut nofile = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut nofile) },
        0
    );
    [
        "--ulimit".into(),
        format!("nofile={0}:{0}", nofile.rlim_max),
        "--ulimit".into(),
        "nproc=4096:4096".into(),
    ]
}
