//! The Kubernetes workload a record's process runs in, with OpenTelemetry's resource attribute
//! names (`k8s.namespace.name`, `container.id`…), as `db.system` already is. Records of
//! identities selected by pod carry it; the others do not.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The prefix of the pod labels a record carries (`k8s.pod.label.app`).
pub const LABEL_PREFIX: &str = "k8s.pod.label.";

/// Where a process runs on Kubernetes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// The container's id, without the runtime's scheme.
    #[serde(rename = "container.id")]
    pub container_id: String,
    #[serde(rename = "container.image.name")]
    pub container_image_name: String,
    #[serde(rename = "k8s.container.name")]
    pub container_name: String,
    #[serde(rename = "k8s.namespace.name")]
    pub namespace: String,
    #[serde(rename = "k8s.node.name")]
    pub node: String,
    #[serde(rename = "k8s.pod.name")]
    pub pod_name: String,
    #[serde(rename = "k8s.pod.uid")]
    pub pod_uid: String,
    #[serde(rename = "k8s.serviceaccount.name")]
    pub service_account: String,
    /// The pod labels the operator chose to copy, keyed `k8s.pod.label.<key>`.
    #[serde(flatten)]
    pub labels: BTreeMap<String, String>,
}

impl Workload {
    /// The workload fields of a record line's fields, taken out of them (none: no workload).
    pub(crate) fn take_from(fields: &mut Map<String, Value>) -> Option<Self> {
        let mut taken = Map::new();
        let keys: Vec<String> = fields
            .keys()
            .filter(|k| k.starts_with("k8s.") || k.starts_with("container."))
            .cloned()
            .collect();
        for key in keys {
            if let Some(v) = fields.remove(&key) {
                taken.insert(key, v);
            }
        }
        if taken.is_empty() {
            return None;
        }
        let string = |taken: &mut Map<String, Value>, key: &str| match taken.remove(key) {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let mut workload = Workload {
            container_id: string(&mut taken, "container.id"),
            container_image_name: string(&mut taken, "container.image.name"),
            container_name: string(&mut taken, "k8s.container.name"),
            namespace: string(&mut taken, "k8s.namespace.name"),
            node: string(&mut taken, "k8s.node.name"),
            pod_name: string(&mut taken, "k8s.pod.name"),
            pod_uid: string(&mut taken, "k8s.pod.uid"),
            service_account: string(&mut taken, "k8s.serviceaccount.name"),
            labels: BTreeMap::new(),
        };
        for (key, value) in taken {
            if let (true, Value::String(v)) = (key.starts_with(LABEL_PREFIX), value) {
                workload.labels.insert(key, v);
            }
        }
        Some(workload)
    }
}
