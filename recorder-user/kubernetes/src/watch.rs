//! The pods of this node, watched on the API server (`spec.nodeName` = this node), matched
//! against the identities' selectors, each selected container found in the cgroup hierarchy.
//! The agent polls [`PodWatch::snapshot`]; nothing here touches the kernel.
//!
//! When the API server is down or slow, the pods already known stay as they are (their
//! containers stay watched), the watch is retried with backoff, and [`Snapshot::api`] says so.
use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{
        WatchStreamExt as _,
        watcher::{self, Event},
    },
};
use recorder_record::{LABEL_PREFIX, Workload};

use crate::{KubeletCgroups, PodSelector, parse_container_id};

/// How often cgroups are looked for again while a selected container has none yet (kubelet
/// and the runtime make it around the container's start, not always before the API says so).
const RESCAN_PENDING: Duration = Duration::from_millis(100);
/// After this long without its cgroup, a container is looked for less often.
const PENDING_LONG: Duration = Duration::from_secs(5);
const RESCAN_LONG_PENDING: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("reading the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration (in-cluster or kubeconfig): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// Where the API server is and which node's pods to watch.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// This node's name (the downward API's `NODE_NAME` in a DaemonSet).
    pub node: String,
    /// A kubeconfig file; `None`: the in-cluster configuration (service-account token and
    /// CA), then `$KUBECONFIG` and `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Pod labels copied onto every record (`k8s.pod.label.<key>`).
    pub copy_labels: Vec<String>,
    /// The cgroup v2 mount, where kubelet's cgroups are looked for.
    pub cgroup_mount: PathBuf,
}

/// A container of this node that an identity selects, with its cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedContainer {
    /// The index of the identity (in the configuration's order).
    pub identity: usize,
    pub cgroup: PathBuf,
    pub workload: Arc<Workload>,
}

/// The API server, as the watch last found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiHealth {
    /// Not listed yet.
    Connecting,
    Connected,
    /// The watch fails (and is retried); the pods known stay watched.
    Unreachable {
        since: SystemTime,
        error: String,
    },
}

/// What the watch knows now.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Grows whenever `containers` changes.
    pub version: u64,
    pub containers: Vec<WatchedContainer>,
    /// Pods of this node known.
    pub pods: usize,
    pub api: ApiHealth,
}

struct State {
    pods: HashMap<String, Pod>,
    /// Pods of a watch (re)start, until its initial list is complete.
    init: Option<HashMap<String, Pod>>,
    snapshot: Snapshot,
    /// Selected running containers with no cgroup yet, since when.
    pending: HashMap<String, Instant>,
    last_scan: Instant,
    /// The last walk of the hierarchy. A container's cgroup never moves (a restarted container
    /// has a new id), so the walk is redone only when a selected container is not in it: pod
    /// events that change nothing for the selected pods (label churn elsewhere) cost no walk.
    cgroups: KubeletCgroups,
}

/// The watch of this node's pods.
#[derive(Clone)]
pub struct PodWatch {
    state: Arc<Mutex<State>>,
}

impl PodWatch {
    /// Connects and starts watching (on the current tokio runtime). `selectors` are the
    /// Kubernetes identities, by identity index.
    pub async fn start(
        settings: KubeSettings,
        selectors: Vec<(usize, PodSelector)>,
    ) -> Result<Self, KubeError> {
        let config = match &settings.kubeconfig {
            Some(path) => {
                let kubeconfig =
                    Kubeconfig::read_from(path).map_err(|source| KubeError::Kubeconfig {
                        path: path.clone(),
                        source,
                    })?;
                Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .map_err(|source| KubeError::Kubeconfig {
                        path: path.clone(),
                        source,
                    })?
            }
            None => Config::infer().await?,
        };
        let client = Client::try_from(config)?;
        let watch = Self {
            state: Arc::new(Mutex::new(State {
                pods: HashMap::new(),
                init: None,
                snapshot: Snapshot {
                    version: 0,
                    containers: Vec::new(),
                    pods: 0,
                    api: ApiHealth::Connecting,
                },
                pending: HashMap::new(),
                last_scan: Instant::now(),
                cgroups: KubeletCgroups::default(),
            })),
        };
        let matcher = Arc::new(Matcher {
            settings,
            selectors,
        });
        tokio::spawn(watch.clone().watch_pods(client, matcher.clone()));
        tokio::spawn(watch.clone().rescan(matcher));
        Ok(watch)
    }

    /// What the watch knows now.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().snapshot.clone()
    }

    /// The snapshot's version and the API server's health, without copying the containers
    /// (the capture loop asks often).
    pub fn version(&self) -> (u64, ApiHealth) {
        let state = self.lock();
        (state.snapshot.version, state.snapshot.api.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn watch_pods(self, client: Client, matcher: Arc<Matcher>) {
        let api: Api<Pod> = Api::all(client);
        let config =
            watcher::Config::default().fields(&format!("spec.nodeName={}", matcher.settings.node));
        let mut events = watcher::watcher(api, config).default_backoff().boxed();
        while let Some(event) = events.next().await {
            let mut state = self.lock();
            match event {
                Ok(event) => {
                    if let ApiHealth::Unreachable { since, .. } = &state.snapshot.api {
                        let down = since.elapsed().unwrap_or_default();
                        tracing::info!(?down, "Kubernetes API server reachable again");
                    }
                    state.snapshot.api = ApiHealth::Connected;
                    let changed = apply(&mut state, event);
                    if changed {
                        matcher.match_pods(&mut state);
                    }
                }
                Err(error) => {
                    let error = error.to_string();
                    if !matches!(state.snapshot.api, ApiHealth::Unreachable { .. }) {
                        tracing::warn!(
                            %error,
                            "Kubernetes API server unreachable; the pods known stay watched, retrying"
                        );
                        state.snapshot.api = ApiHealth::Unreachable {
                            since: SystemTime::now(),
                            error,
                        };
                    }
                }
            }
        }
    }

    /// Looks for cgroups again while a selected container waits for one.
    async fn rescan(self, matcher: Arc<Matcher>) {
        loop {
            tokio::time::sleep(RESCAN_PENDING).await;
            let mut state = self.lock();
            if !state.pending.is_empty() {
                matcher.match_pods(&mut state);
            }
        }
    }
}

/// Applies one watch event to the known pods; whether they changed.
fn apply(state: &mut State, event: Event<Pod>) -> bool {
    let uid = |pod: &Pod| pod.metadata.uid.clone().unwrap_or_default();
    match event {
        Event::Init => {
            state.init = Some(HashMap::new());
            false
        }
        Event::InitApply(pod) => {
            let init = state.init.get_or_insert_with(HashMap::new);
            init.insert(uid(&pod), pod);
            false
        }
        Event::InitDone => {
            state.pods = state.init.take().unwrap_or_default();
            true
        }
        Event::Apply(pod) => {
            state.pods.insert(uid(&pod), pod);
            true
        }
        Event::Delete(pod) => {
            state.pods.remove(&uid(&pod));
            true
        }
    }
}

/// The identities' selectors, and how records are to name the workload.
struct Matcher {
    settings: KubeSettings,
    selectors: Vec<(usize, PodSelector)>,
}

impl Matcher {
    /// Recomputes the selected containers and their cgroups from the known pods, walking the
    /// hierarchy again only when a selected container is missing from the last walk.
    fn match_pods(&self, state: &mut State) {
        let (mut containers, mut missing) = self.select(&state.pods, &state.cgroups);
        if should_scan(&missing, &state.pending, state.last_scan) {
            state.cgroups = KubeletCgroups::scan(&self.settings.cgroup_mount);
            state.last_scan = Instant::now();
            (containers, missing) = self.select(&state.pods, &state.cgroups);
        }
        let now = Instant::now();
        state.pending = missing
            .into_iter()
            .map(|id| {
                let since = state.pending.get(&id).copied().unwrap_or(now);
                (id, since)
            })
            .collect();
        state.snapshot.pods = state.pods.len();
        if containers != state.snapshot.containers {
            state.snapshot.containers = containers;
            state.snapshot.version += 1;
        }
    }

    /// The selected containers whose cgroups `cgroups` knows (and still exist), and the ids of
    /// the running ones it does not.
    fn select(
        &self,
        pods: &HashMap<String, Pod>,
        cgroups: &KubeletCgroups,
    ) -> (Vec<WatchedContainer>, Vec<String>) {
        let mut containers = Vec::new();
        let mut missing = Vec::new();
        let mut pods: Vec<&Pod> = pods.values().collect();
        pods.sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));
        for pod in pods {
            // The first identity that selects a pod has it: the kernel gives a cgroup one.
            let Some((identity, selector)) = self.selectors.iter().find(|(_, s)| selects(s, pod))
            else {
                continue;
            };
            for status in pod
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
            {
                if selector
                    .container
                    .as_ref()
                    .is_some_and(|c| *c != status.name)
                {
                    continue;
                }
                let Some((_, id)) = status.container_id.as_deref().and_then(parse_container_id)
                else {
                    continue;
                };
                let Some(cgroup) = cgroups.containers.get(id).filter(|dir| dir.is_dir()) else {
                    if status.state.as_ref().is_some_and(|s| s.running.is_some()) {
                        missing.push(id.to_string());
                    }
                    continue;
                };
                containers.push(WatchedContainer {
                    identity: *identity,
                    cgroup: cgroup.clone(),
                    workload: Arc::new(self.workload(pod, &status.name, id, &status.image)),
                });
            }
        }
        (containers, missing)
    }

    fn workload(&self, pod: &Pod, container: &str, id: &str, image: &str) -> Workload {
        let meta = &pod.metadata;
        let labels = meta.labels.clone().unwrap_or_default();
        let copied: BTreeMap<String, String> = self
            .settings
            .copy_labels
            .iter()
            .filter_map(|key| Some((format!("{LABEL_PREFIX}{key}"), labels.get(key)?.clone())))
            .collect();
        let spec = pod.spec.as_ref();
        Workload {
            container_id: id.to_string(),
            container_image_name: image.to_string(),
            container_name: container.to_string(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            node: spec
                .and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| self.settings.node.clone()),
            pod_name: meta.name.clone().unwrap_or_default(),
            pod_uid: meta.uid.clone().unwrap_or_default(),
            service_account: spec
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_default(),
            labels: copied,
        }
    }
}

/// Whether to walk the hierarchy again for `missing` containers: at once for one not looked
/// for yet, every 100 ms while one is new, every 2 s for those missing for long (a layout not
/// recognised: said by the watched-containers gauge, and not worth a walk per pod event).
fn should_scan(missing: &[String], pending: &HashMap<String, Instant>, last_scan: Instant) -> bool {
    let mut interval = RESCAN_LONG_PENDING;
    for id in missing {
        match pending.get(id) {
            None => return true,
            Some(since) if since.elapsed() < PENDING_LONG => interval = RESCAN_PENDING,
            Some(_) => {}
        }
    }
    !missing.is_empty() && last_scan.elapsed() >= interval
}

/// Whether `selector` selects `pod` (its containers are checked apart).
fn selects(selector: &PodSelector, pod: &Pod) -> bool {
    let meta = &pod.metadata;
    let empty = BTreeMap::new();
    selector
        .namespace
        .as_ref()
        .is_none_or(|ns| meta.namespace.as_ref() == Some(ns))
        && selector
            .labels
            .matches(meta.labels.as_ref().unwrap_or(&empty))
        && selector.service_account.as_ref().is_none_or(|sa| {
            pod.spec
                .as_ref()
                .and_then(|s| s.service_account_name.as_ref())
                == Some(sa)
        })
}
