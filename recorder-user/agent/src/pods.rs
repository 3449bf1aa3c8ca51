//! Identities selected by pod, as the capture loop sees them: the pod watch's containers go into
//! the kernel's watched map, their workloads onto the records, and the API server's health into
//! the log, `/metrics` and `notice` records. The watch runs on the async runtime; the capture
//! loop only polls it.
use std::{
    collections::HashSet,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use recorder_api::metrics::Registry;
use recorder_kubernetes::{ApiHealth, KubeError, KubeSettings, PodSelector, PodWatch};
use recorder_record::Record;

use crate::{
    capture::builder::{RecordBuilder, boot_ns_now},
    config::KubernetesConfig,
    identity::Identities,
    loader::Probes,
};

/// How long the agent waits at start for the first list of this node's pods before it says it
/// is ready anyway (the API server may be down: recording must not wait for it).
pub(crate) const FIRST_LIST_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PodsError {
    #[error(
        "identities are selected by pod, but this node's name is unknown: set NODE_NAME \
         (a DaemonSet sets it from spec.nodeName), --node-name or node in [kubernetes]"
    )]
    NoNodeName,
    #[error("watching this node's pods: {0}")]
    Kube(#[from] KubeError),
}

/// The pod watch and what the capture loop last took from it.
pub(crate) struct PodIdentities {
    watch: PodWatch,
    version: u64,
    api: ApiHealth,
    /// Pods of this node known.
    pods: usize,
}

impl PodIdentities {
    /// Starts watching this node's pods for `selectors` (on the current async runtime).
    pub(crate) async fn start(
        config: KubernetesConfig,
        selectors: Vec<(usize, PodSelector)>,
        cgroup_mount: PathBuf,
    ) -> Result<Self, PodsError> {
        let node = config
            .node
            .or_else(|| std::env::var("NODE_NAME").ok())
            .filter(|n| !n.is_empty())
            .ok_or(PodsError::NoNodeName)?;
        tracing::info!(%node, identities = selectors.len(), "watching this node's pods on the Kubernetes API server");
        let settings = KubeSettings {
            node,
            kubeconfig: config.kubeconfig,
            copy_labels: config.copy_labels,
            cgroup_mount,
        };
        let watch = PodWatch::start(settings, selectors).await?;
        Ok(Self {
            watch,
            version: 0,
            api: ApiHealth::Connecting,
            pods: 0,
        })
    }

    /// Waits until this node's pods are listed (or `limit` passed: then the agent starts without
    /// them, and they are watched as soon as the API server answers).
    pub(crate) async fn first_list(&self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            let (version, api) = self.watch.version();
            if version > 0 || api == ApiHealth::Connected {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(waited = ?limit, "this node's pods are not listed yet; starting without them");
        false
    }

    /// Takes what changed since the last call: the containers into `identities` and the
    /// kernel's watched map, the API server's health into notices. Returns the notices and the
    /// containers newly watched (cgroup directory, identity), whose processes are to be
    /// adopted. Cheap when nothing changed.
    pub(crate) fn poll(
        &mut self,
        identities: &mut Identities,
        probes: &mut Probes,
        builder: &mut RecordBuilder,
    ) -> (Vec<Record>, Vec<(PathBuf, u32)>) {
        let (version, api) = self.watch.version();
        let mut notices = Vec::new();
        let changed = api != self.api || version != self.version;
        let mut new_containers = Vec::new();
        if api != self.api {
            notices = self.health_notices(&api, identities, builder);
            self.api = api;
        }
        if version != self.version {
            self.version = version;
            let snapshot = self.watch.snapshot();
            let (cgroups_changed, added) = identities.set_containers(&snapshot.containers);
            if cgroups_changed {
                match probes.set_watched(&identities.watched()) {
                    Ok(()) => new_containers = added,
                    Err(e) => tracing::error!("updating the watched cgroups: {e}"),
                }
            }
            let live: HashSet<&str> = snapshot
                .containers
                .iter()
                .map(|c| c.workload.container_id.as_str())
                .collect();
            builder.workloads.sweep(&live, Instant::now());
            self.pods = snapshot.pods;
        }
        if changed {
            self.publish(identities.container_count());
        }
        (notices, new_containers)
    }

    /// A `notice` per identity selected by pod when the API server goes away or comes back.
    fn health_notices(
        &self,
        now: &ApiHealth,
        identities: &Identities,
        builder: &RecordBuilder,
    ) -> Vec<Record> {
        let (reason, detail) = match (now, &self.api) {
            (ApiHealth::Unreachable { error, .. }, _) => (
                "kubernetes_api_unreachable",
                format!(
                    "the Kubernetes API server cannot be reached ({error}); the {} containers \
                     known stay watched, but pods started or changed meanwhile are not seen \
                     until it answers again; retrying",
                    identities.container_count()
                ),
            ),
            (ApiHealth::Connected, ApiHealth::Unreachable { since, .. }) => (
                "kubernetes_api_restored",
                format!(
                    "the Kubernetes API server answers again after {:.1} s; this node's pods \
                     are listed anew",
                    SystemTime::now()
                        .duration_since(*since)
                        .unwrap_or_default()
                        .as_secs_f64()
                ),
            ),
            _ => return Vec::new(),
        };
        let at = boot_ns_now();
        identities
            .pod_selectors()
            .iter()
            .map(|(index, _)| {
                builder.notice(at, identities.name(*index as u32), reason, detail.clone())
            })
            .collect()
    }
}

impl PodIdentities {
    /// `/metrics`: the API server's health, this node's pods, the containers watched.
    fn publish(&self, containers: usize) {
        let registry = Registry::global();
        registry
            .gauge(
                "recorder_kubernetes_api_up",
                "1 while the watch of this node's pods on the Kubernetes API server works.",
                &[],
            )
            .set(u64::from(self.api == ApiHealth::Connected));
        registry
            .gauge(
                "recorder_kubernetes_pods",
                "Pods of this node known from the Kubernetes API server.",
                &[],
            )
            .set(self.pods as u64);
        registry
            .gauge(
                "recorder_kubernetes_watched_containers",
                "Containers of selected pods whose cgroups are watched.",
                &[],
            )
            .set(containers as u64);
    }
}
