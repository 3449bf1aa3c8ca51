//! The in-memory objects, the store-wide `resourceVersion`, and the per-kind log of changes that
//! watches replay from and follow live.
use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::{NAMESPACE, present::now_secs, present::rfc3339};

/// The kinds served, all in the core group `v1`.
pub(super) struct Kind {
    pub resource: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short: &'static [&'static str],
}

pub(super) const KINDS: &[Kind] = &[
    Kind {
        resource: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short: &["po"],
    },
    Kind {
        resource: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short: &["cm"],
    },
    Kind {
        resource: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short: &["ns"],
    },
];

pub(super) fn kind_of(resource: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.resource == resource)
}

/// How many changes each kind's log keeps, like the window of kube-apiserver's watch cache: a
/// watch resuming from further back is answered 410 Gone and its client lists again.
const LOG_LEN: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One change, as the watch cache keeps it. The previous state lets a watch filtered by a
/// selector tell "stopped matching" (sent as DELETED) from "changed while matching" (MODIFIED).
#[derive(Debug)]
pub(super) struct Change {
    pub rv: u64,
    /// The resource, e.g. `pods`.
    pub resource: &'static str,
    pub ty: ChangeType,
    /// The new state; for a deletion, the last state stamped with the deletion's version.
    pub object: Value,
    pub prev: Option<Value>,
}

/// The 410 a watch gets when its starting version is older than what the log still holds.
#[derive(Debug)]
pub(super) struct Expired {
    pub oldest: u64,
}

/// Objects by resource, then by (namespace, name); cluster-scoped objects have namespace "".
pub(super) struct Store {
    pub objects: BTreeMap<&'static str, BTreeMap<(String, String), Value>>,
    /// The store-wide counter: every write moves it on and stamps it on the object written.
    pub resource_version: u64,
    uid: u64,
    pub started: u64,
    log: BTreeMap<&'static str, VecDeque<Arc<Change>>>,
    /// Per resource, the newest version whose changes may be gone from the log: a watch from a
    /// version before it cannot be replayed.
    horizon: BTreeMap<&'static str, u64>,
    /// Every change, live, in version order: open watches follow it. Sent under the store's
    /// lock, so a watch that reads the log and subscribes under the same lock misses nothing.
    changes: broadcast::Sender<Arc<Change>>,
}

impl Store {
    pub fn seeded() -> Self {
        let mut store = Store {
            objects: BTreeMap::new(),
            resource_version: 100,
            uid: 0,
            // Seeded objects look five minutes old, so AGE columns read like a live cluster.
            started: now_secs().saturating_sub(300),
            log: BTreeMap::new(),
            horizon: BTreeMap::new(),
            changes: broadcast::channel(4096).0,
        };
        for ns in ["default", "kube-system", NAMESPACE] {
            store.insert(
                kind_of("namespaces").unwrap(),
                "",
                json!({"metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]},
                       "status": {"phase": "Active"}}),
                store.started,
            );
        }
        for name in ["web-1", "web-2"] {
            store.insert(
                kind_of("pods").unwrap(),
                NAMESPACE,
                json!({
                    "metadata": {"name": name, "labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}],
                             "nodeName": "node-1"},
                    "status": {"phase": "Running", "podIP": "10.0.0.10",
                               "containerStatuses": [{"name": "web", "ready": true,
                                   "restartCount": 0, "image": "nginx:1.27",
                                   "imageID": "", "started": true,
                                   "state": {"running": {}}}]},
                }),
                store.started,
            );
        }
        store
    }

    /// Stores a new object, filling in what the server owns: kind, namespace, version, and the
    /// uid and creation time unless the object carries them (the API path strips them first).
    pub fn insert(&mut self, kind: &'static Kind, ns: &str, mut obj: Value, created: u64) -> Value {
        self.resource_version += 1;
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        obj["apiVersion"] = json!("v1");
        obj["kind"] = json!(kind.kind);
        if !obj["metadata"]["uid"].is_string() {
            self.uid += 1;
            obj["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", self.uid));
        }
        if !obj["metadata"]["creationTimestamp"].is_string() {
            obj["metadata"]["creationTimestamp"] = json!(rfc3339(created));
        }
        let meta = &mut obj["metadata"];
        if kind.namespaced {
            meta["namespace"] = json!(ns);
        }
        meta["resourceVersion"] = json!(self.resource_version.to_string());
        self.objects
            .entry(kind.resource)
            .or_default()
            .insert((ns.to_string(), name), obj.clone());
        self.record(kind, ChangeType::Added, obj.clone(), None);
        obj
    }

    /// Stores a changed object, keeping the `keep` metadata fields of the stored one (those the
    /// server owns) and moving its version on.
    pub fn update(
        &mut self,
        kind: &'static Kind,
        ns: &str,
        name: &str,
        mut obj: Value,
        keep: &[&str],
    ) -> Value {
        let key = (ns.to_string(), name.to_string());
        let old = self.objects[kind.resource][&key].clone();
        self.resource_version += 1;
        obj["apiVersion"] = json!("v1");
        obj["kind"] = json!(kind.kind);
        for field in keep {
            if let Some(v) = old["metadata"].get(*field) {
                obj["metadata"][*field] = v.clone();
            }
        }
        obj["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.objects
            .get_mut(kind.resource)
            .unwrap()
            .insert(key, obj.clone());
        self.record(kind, ChangeType::Modified, obj.clone(), Some(old));
        obj
    }

    /// Removes an object; what a DELETED event carries: its last state at the deletion's version.
    pub fn remove(&mut self, kind: &'static Kind, ns: &str, name: &str) -> Option<Value> {
        let key = (ns.to_string(), name.to_string());
        let old = self.objects.get_mut(kind.resource)?.remove(&key)?;
        self.resource_version += 1;
        let mut gone = old.clone();
        gone["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.record(kind, ChangeType::Deleted, gone.clone(), Some(old));
        Some(gone)
    }

    fn record(&mut self, kind: &Kind, ty: ChangeType, object: Value, prev: Option<Value>) {
        let change = Arc::new(Change {
            rv: self.resource_version,
            resource: kind.resource,
            ty,
            object,
            prev,
        });
        let log = self.log.entry(kind.resource).or_default();
        log.push_back(change.clone());
        if log.len() > LOG_LEN
            && let Some(dropped) = log.pop_front()
        {
            self.horizon.insert(kind.resource, dropped.rv);
        }
        // No receiver (no open watch) is not an error: the log keeps the change for later ones.
        let _ = self.changes.send(change);
    }

    /// The logged changes of a resource after version `rv`, oldest first, or Expired when some
    /// of them are no longer kept.
    pub fn since(&self, kind: &Kind, rv: u64) -> Result<Vec<Arc<Change>>, Expired> {
        let oldest = self.horizon.get(kind.resource).copied().unwrap_or(0);
        if rv < oldest {
            return Err(Expired { oldest });
        }
        Ok(self
            .log
            .get(kind.resource)
            .map(|log| log.iter().filter(|c| c.rv > rv).cloned().collect())
            .unwrap_or_default())
    }

    /// Every change from now on, live.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    /// Forgets every logged change, as an etcd compaction does: only a watch from the current
    /// version (or a fresh list) can then be served.
    pub fn compact(&mut self) {
        self.log.clear();
        for kind in KINDS {
            self.horizon.insert(kind.resource, self.resource_version);
        }
    }

    pub fn get(&self, kind: &Kind, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(kind.resource)?
            .get(&(ns.to_string(), name.to_string()))
    }

    pub fn list(&self, kind: &Kind, ns: Option<&str>) -> Vec<Value> {
        self.objects
            .get(kind.resource)
            .map(|m| {
                m.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|ns| ns == n))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}
