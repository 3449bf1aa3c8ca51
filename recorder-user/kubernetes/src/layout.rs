//! Where kubelet puts a pod's containers in the cgroup v2 hierarchy, for both of its cgroup
//! drivers and every QoS class:
//!
//! ```text
//! systemd:  kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope
//!           kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice/crio-<id>.scope
//!           kubepods.slice/kubepods-pod<uid_>.slice/docker-<id>.scope            (Guaranteed)
//! cgroupfs: kubepods/burstable/pod<uid>/<id>
//!           kubepods/besteffort/pod<uid>/<id>
//!           kubepods/pod<uid>/<id>                                               (Guaranteed)
//! ```
//!
//! (`<uid_>` is the pod's uid with `-` written `_`, as systemd slice names need.) The
//! `kubepods` root is not always at the top of the hierarchy (kubelet's `--cgroup-root`, nested
//! nodes such as kind), so pods are found by their directory names wherever they are.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

/// The container runtimes whose scope names kubelet's systemd driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
}

/// A container as the pod's status names it: `containerd://<id>`, `cri-o://<id>`,
/// `docker://<id>`.
pub fn parse_container_id(status_id: &str) -> Option<(Runtime, &str)> {
    let (scheme, id) = status_id.split_once("://")?;
    let runtime = match scheme {
        "containerd" => Runtime::Containerd,
        "cri-o" => Runtime::CriO,
        "docker" => Runtime::Docker,
        _ => return None,
    };
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric())).then_some((runtime, id))
}

/// Whether a directory name is a pod's, and whose (the uid as the API server writes it).
fn pod_of_dir(name: &str) -> Option<String> {
    // systemd: kubepods-<qos>-pod<uid_>.slice or kubepods-pod<uid_>.slice
    if let Some(rest) = name.strip_prefix("kubepods-")
        && let Some(rest) = rest.strip_suffix(".slice")
    {
        let uid = rest
            .strip_prefix("pod")
            .or_else(|| rest.split_once("-pod").map(|(_, uid)| uid))?;
        return looks_like_uid(uid).then(|| uid.replace('_', "-"));
    }
    // cgroupfs: pod<uid>
    let uid = name.strip_prefix("pod")?;
    looks_like_uid(uid).then(|| uid.to_string())
}

fn looks_like_uid(uid: &str) -> bool {
    uid.len() == 36
        && uid
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == '-' || c == '_')
}

/// The container id a container directory is for: `<runtime>-<id>.scope` (systemd) or `<id>`
/// (cgroupfs).
fn container_of_dir(name: &str) -> Option<&str> {
    let id = match name.strip_suffix(".scope") {
        Some(scope) => ["cri-containerd-", "crio-", "docker-"]
            .iter()
            .find_map(|prefix| scope.strip_prefix(prefix))?,
        None => name,
    };
    (id.len() >= 12 && id.chars().all(|c| c.is_ascii_hexdigit())).then_some(id)
}

/// The pods' and containers' cgroup directories found in one walk of the hierarchy.
#[derive(Debug, Default)]
pub struct KubeletCgroups {
    /// Pod uid -> the pod's directory.
    pub pods: HashMap<String, PathBuf>,
    /// Container id -> the container's directory (inside its pod's).
    pub containers: HashMap<String, PathBuf>,
}

impl KubeletCgroups {
    /// Walks the hierarchy at `mount` (depth-bounded) for kubelet's pod directories and the
    /// container directories inside them.
    pub fn scan(mount: &Path) -> Self {
        let mut found = Self::default();
        found.walk(mount, 0);
        found
    }

    fn walk(&mut self, dir: &Path, depth: usize) {
        const MAX_DEPTH: usize = 8;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if let Some(uid) = pod_of_dir(name) {
                self.containers_of(&path);
                self.pods.insert(uid, path);
            } else if depth < MAX_DEPTH {
                self.walk(&path, depth + 1);
            }
        }
    }

    fn containers_of(&mut self, pod: &Path) {
        let Ok(entries) = std::fs::read_dir(pod) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(container_of_dir)
                && entry.file_type().is_ok_and(|t| t.is_dir())
            {
                self.containers.insert(id.to_string(), entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0e6f8a7c-1b2d-4c3e-9f4a-5b6c7d8e9f01";
    const ID: &str = "4f2a9c1b7e3d5a6f8b0c2d4e6f8a0b1c3d5e7f9a1b3c5d7e9f0a2b4c6d8e0f1a";

    #[test]
    fn reads_every_layout() {
        let dir = tempfile::tempdir().unwrap();
        let uid_ = UID.replace('-', "_");
        let layouts = [
            format!(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope"
            ),
            format!(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-{ID}.scope"
            ),
            format!("kubepods.slice/kubepods-pod{uid_}.slice/docker-{ID}.scope"),
            format!("kubepods/burstable/pod{UID}/{ID}"),
            format!("kubepods/besteffort/pod{UID}/{ID}"),
            format!("kubepods/pod{UID}/{ID}"),
            format!(
                "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope"
            ),
        ];
        for layout in layouts {
            let root = tempfile::tempdir_in(dir.path()).unwrap();
            let container = root.path().join(&layout);
            std::fs::create_dir_all(&container).unwrap();
            let found = KubeletCgroups::scan(root.path());
            assert_eq!(
                found.pods.get(UID).map(PathBuf::as_path),
                container.parent(),
                "{layout}"
            );
            assert_eq!(found.containers.get(ID), Some(&container), "{layout}");
        }
    }

    #[test]
    fn parses_container_ids_of_pod_status() {
        assert_eq!(
            parse_container_id(&format!("containerd://{ID}")),
            Some((Runtime::Containerd, ID))
        );
        assert_eq!(
            parse_container_id("cri-o://abc"),
            Some((Runtime::CriO, "abc"))
        );
        assert_eq!(
            parse_container_id("docker://abc"),
            Some((Runtime::Docker, "abc"))
        );
        assert_eq!(parse_container_id("rkt://abc"), None);
        assert_eq!(parse_container_id("containerd://../x"), None);
        assert_eq!(parse_container_id(""), None);
    }

    #[test]
    fn other_directories_are_not_pods() {
        assert_eq!(pod_of_dir("kubepods-burstable.slice"), None);
        assert_eq!(pod_of_dir("kubepods.slice"), None);
        assert_eq!(pod_of_dir("podman-1234.scope"), None);
        assert_eq!(pod_of_dir(&format!("pod{UID}")), Some(UID.to_string()));
        assert_eq!(container_of_dir("init.scope"), None);
        assert_eq!(container_of_dir("cri-containerd-xyz.scope"), None);
    }
}
