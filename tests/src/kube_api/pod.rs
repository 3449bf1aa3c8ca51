//! Pods as a kubelet reports them, for tests that put pods into the store: what the agent reads
//! from a real cluster (node, service account, labels, container ids and images).
use serde_json::{Map, Value, json};

use super::{
    KubeApi,
    present::{now_secs, rfc3339},
};

impl KubeApi {
    /// A running Pod as the API server returns it once the kubelet has started it:
    /// `spec.nodeName` = `node`, `spec.serviceAccountName` = `service_account`, one
    /// `spec.containers[]` entry per `(name, image, container_id)` in `containers`, and in
    /// `status`: phase `Running`, qosClass `BestEffort` (no resources are set; change
    /// `status.qosClass` on the value for another), a pod IP, a Ready condition, and per container
    /// a ready, started, running `containerStatuses[]` entry whose `containerID` is `container_id`
    /// as given (with its runtime prefix, e.g. `containerd://0123...`), whose `image` is the
    /// image's full name (`docker.io/library/nginx:1.27` for `nginx:1.27`) and whose `imageID` is
    /// a digest reference made from it (`docker.io/library/nginx@sha256:...`, stable per image).
    ///
    /// `uid` is kept by [`KubeApi::put_pod`]; pass `""` to have the server make one.
    /// `resourceVersion` and `creationTimestamp` are left to the server.
    pub fn pod_json(
        namespace: &str,
        name: &str,
        uid: &str,
        node: &str,
        labels: &[(&str, &str)],
        service_account: &str,
        containers: &[(&str, &str, &str)],
    ) -> Value {
        let started = rfc3339(now_secs());
        let labels: Map<String, Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), json!(v)))
            .collect();
        let mut metadata = json!({"name": name, "namespace": namespace, "labels": labels});
        if !uid.is_empty() {
            metadata["uid"] = json!(uid);
        }
        let spec_containers: Vec<Value> = containers
            .iter()
            .map(|(name, image, _)| {
                json!({"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
                       "terminationMessagePath": "/dev/termination-log",
                       "terminationMessagePolicy": "File", "resources": {}})
            })
            .collect();
        let statuses: Vec<Value> = containers
            .iter()
            .map(|(name, image, id)| {
                let full = full_image(image);
                json!({
                    "name": name, "image": full, "imageID": image_id(&full),
                    "containerID": id, "ready": true, "started": true, "restartCount": 0,
                    "state": {"running": {"startedAt": started}},
                    "lastState": {},
                })
            })
            .collect();
        // A stable pod IP per name, so two pods differ.
        let octet = name
            .bytes()
            .fold(7u8, |h, b| h.wrapping_mul(31).wrapping_add(b))
            | 1;
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {
                "nodeName": node,
                "serviceAccountName": service_account,
                "serviceAccount": service_account,
                "containers": spec_containers,
                "restartPolicy": "Always",
                "dnsPolicy": "ClusterFirst",
                "schedulerName": "default-scheduler",
                "terminationGracePeriodSeconds": 30,
            },
            "status": {
                "phase": "Running",
                "qosClass": "BestEffort",
                "hostIP": "10.1.0.1",
                "podIP": format!("10.0.0.{octet}"),
                "startTime": started,
                "conditions": [
                    {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                    {"type": "Ready", "status": "True", "lastTransitionTime": started},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": started},
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                ],
                "containerStatuses": statuses,
            },
        })
    }
}

/// An image reference as containerd reports it: registry and `library/` filled in.
fn full_image(image: &str) -> String {
    // A tag or digest follows the last slash; a colon before it is a registry's port.
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    let end = image[slash..]
        .find(['@', ':'])
        .map_or(image.len(), |i| slash + i);
    let (name, rest) = image.split_at(end);
    let first = name.split('/').next().unwrap_or_default();
    let registry = first.contains('.') || first.contains(':') || first == "localhost";
    let name = match (registry, name.contains('/')) {
        (true, _) => name.to_string(),
        (false, true) => format!("docker.io/{name}"),
        (false, false) => format!("docker.io/library/{name}"),
    };
    let rest = if rest.is_empty() { ":latest" } else { rest };
    format!("{name}{rest}")
}

/// `repo@sha256:...`: the given digest, or one made from the reference (FNV-1a, stretched to
/// 64 hex digits), stable across runs so tests can predict it.
fn image_id(full: &str) -> String {
    if full.contains("@sha256:") {
        return full.to_string();
    }
    let repo = full.rsplit_once(':').map_or(full, |(r, _)| r);
    let digest = (0u64..4)
        .map(|i| {
            let h = full.bytes().fold(0xcbf2_9ce4_8422_2325 ^ i, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
            format!("{h:016x}")
        })
        .collect::<Vec<_>>()
        .concat();
    format!("{repo}@sha256:{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_named_as_containerd_reports_them() {
        assert_eq!(full_image("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(full_image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(full_image("bitnami/redis:7"), "docker.io/bitnami/redis:7");
        assert_eq!(full_image("localhost:5000/app:v1"), "localhost:5000/app:v1");
        assert_eq!(full_image("ghcr.io/o/app:v2"), "ghcr.io/o/app:v2");
        let id = image_id("docker.io/library/nginx:1.27");
        assert!(id.starts_with("docker.io/library/nginx@sha256:"), "{id}");
        assert_eq!(id.len(), "docker.io/library/nginx@sha256:".len() + 64);
        assert_eq!(id, image_id("docker.io/library/nginx:1.27"));
    }
}
