//! A local Kubernetes API server for the tests: HTTPS with a CA made at start, HTTP/2 (ALPN `h2`,
//! as a real API server negotiates with Go clients) and HTTP/1.1 for clients that do not offer h2.
//! It serves legacy discovery, a minimal OpenAPI v3 document, and in-memory pods, configmaps and
//! namespaces: enough for an unmodified `kubectl` to get, delete, apply and watch, and for
//! kube-rs's `watcher` to list and follow pods as the agent does. It keeps a log of what it
//! served so a test can compare the recorder's view of the traffic with the server's.
//!
//! Every write moves a store-wide `resourceVersion` on and logs the change; watches replay the
//! log from the client's version and then follow changes live, with selectors, bookmarks,
//! timeouts and 410 Gone for versions the log no longer holds (see `watch`). Tests change pods
//! directly (`put_pod`, `delete_pod`), and can take the server away and bring it back on the
//! same port (`stop_serving`, `resume_serving`) to check that clients recover.
//!
//! The server runs on its own thread with a single-threaded tokio runtime and stops on drop.
mod http;
mod pki;
mod pod;
mod present;
mod resources;
mod select;
mod store;
mod watch;

use std::{
    convert::Infallible,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use serde_json::{Value, json};
use tokio::{sync::oneshot, task::JoinSet};

use self::{
    http::Api,
    pki::Pki,
    present::now_secs,
    store::{Store, kind_of},
};

/// The bearer token in the kubeconfig. The server records but does not check it.
pub const TOKEN: &str = "fixture-token";

/// The namespace holding the seeded pods.
pub const NAMESPACE: &str = "team-a";

/// One request the server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub status: u16,
    /// `"HTTP/2"` or `"HTTP/1.1"`.
    pub version: &'static str,
    pub user_agent: String,
}

pub struct KubeApi {
    port: u16,
    kubeconfig: PathBuf,
    ca_cert: PathBuf,
    cache_dir: PathBuf,
    log: Arc<Mutex<Vec<Served>>>,
    api: Arc<Api>,
    tls: Arc<rustls::ServerConfig>,
    runtime: tokio::runtime::Handle,
    /// The current serving period; None while stopped.
    serving: Mutex<Option<Serving>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// One period of serving, from a start or resume to a stop: its listener and connections.
struct Serving {
    stop: oneshot::Sender<()>,
    /// Answers once the listener is closed and every connection of the period is cut.
    stopped: std::sync::mpsc::Receiver<()>,
}

impl KubeApi {
    /// Starts the server on a free loopback port and writes `ca.crt` and `kubeconfig` into `dir`.
    /// The kubeconfig has one cluster (`https://127.0.0.1:PORT`, trusting `ca.crt`), one token
    /// user and one context, `fixture`, selected as current with namespace `team-a`.
    pub fn start(dir: &Path) -> Self {
        let pki = Pki::new();
        let ca_cert = dir.join("ca.crt");
        std::fs::write(&ca_cert, &pki.ca_pem).unwrap();

        // Bound before returning, so the port is known and connectable on return.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();

        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(port, &ca_cert)).unwrap();

        let log = Arc::new(Mutex::new(Vec::new()));
        let api = Arc::new(Api {
            port,
            log: log.clone(),
            store: Mutex::new(Store::seeded()),
        });
        let (shutdown, shut) = oneshot::channel();
        let (runtime_tx, runtime) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kube-api".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime_tx.send(rt.handle().clone()).unwrap();
                rt.block_on(async move {
                    let _ = shut.await;
                });
                // Dropping the runtime cancels open connections, including held watches.
            })
            .unwrap();
        let kube = KubeApi {
            port,
            kubeconfig,
            ca_cert,
            cache_dir: dir.join("kube-cache"),
            log,
            api,
            tls: Arc::new(pki.server_config()),
            runtime: runtime.recv().unwrap(),
            serving: Mutex::new(None),
            shutdown: Some(shutdown),
            thread: Some(thread),
        };
        *kube.serving.lock().unwrap() = Some(kube.serve_on(listener));
        kube
    }

    /// Takes the server away, as a crash or a restart of kube-apiserver does: on return the
    /// listener is closed (clients get connection refused) and every open connection, live
    /// watches included, is cut. The store, its log and the certificates stay; writes through
    /// `put_pod` and `delete_pod` still happen. Does nothing when already stopped.
    pub fn stop_serving(&self) {
        let Some(serving) = self.serving.lock().unwrap().take() else {
            return;
        };
        let _ = serving.stop.send(());
        serving
            .stopped
            .recv_timeout(Duration::from_secs(10))
            .expect("the kube-api fixture did not stop serving within 10 s");
    }

    /// Serves again, on the same port with the same store and certificates: clients reconnect
    /// with the kubeconfig they have, and a watch resuming from its version gets the changes
    /// made while stopped. Does nothing when serving.
    pub fn resume_serving(&self) {
        let mut serving = self.serving.lock().unwrap();
        if serving.is_some() {
            return;
        }
        // The port was ours a moment ago; std sets SO_REUSEADDR, so only a listener another
        // process took meanwhile could hold it, and then waiting a little will not help much.
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(listener) => break listener,
                Err(e) if Instant::now() > deadline => {
                    panic!(
                        "the kube-api fixture cannot listen on port {} again: {e}",
                        self.port
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        *serving = Some(self.serve_on(listener));
    }

    fn serve_on(&self, listener: TcpListener) -> Serving {
        listener.set_nonblocking(true).unwrap();
        let (stop, stop_rx) = oneshot::channel();
        let (done, stopped) = std::sync::mpsc::channel();
        let (tls, api) = (self.tls.clone(), self.api.clone());
        self.runtime.spawn(async move {
            serve(listener, tls, api, stop_rx).await;
            let _ = done.send(());
        });
        Serving { stop, stopped }
    }

    /// Creates or replaces a Pod (its namespace is `metadata.namespace`, created if missing), as
    /// the scheduler and kubelet would make it appear: the server stamps `resourceVersion`, and
    /// `uid` and `creationTimestamp` unless the pod carries them (or, on a replace, from the
    /// stored pod). Watches get ADDED or MODIFIED. See [`KubeApi::pod_json`] for a pod to put.
    pub fn put_pod(&self, mut pod: Value) {
        let meta = &pod["metadata"];
        let (Some(ns), Some(name)) = (meta["namespace"].as_str(), meta["name"].as_str()) else {
            panic!("put_pod needs metadata.namespace and metadata.name: {pod}");
        };
        let (ns, name) = (ns.to_string(), name.to_string());
        let pods = kind_of("pods").unwrap();
        let mut store = self.api.store.lock().unwrap();
        let namespaces = kind_of("namespaces").unwrap();
        if store.get(namespaces, "", &ns).is_none() {
            let namespace = json!({"metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]},
                                   "status": {"phase": "Active"}});
            store.insert(namespaces, "", namespace, now_secs());
        }
        if let Some(old) = store.get(pods, &ns, &name) {
            for field in ["uid", "creationTimestamp"] {
                if !pod["metadata"][field].is_string() {
                    pod["metadata"][field] = old["metadata"][field].clone();
                }
            }
            store.update(pods, &ns, &name, pod, &[]);
        } else {
            store.insert(pods, &ns, pod, now_secs());
        }
    }

    /// Deletes a Pod at once (no grace period: no kubelet to wait for); watches get DELETED.
    /// Panics when there is no such pod.
    pub fn delete_pod(&self, namespace: &str, name: &str) {
        let mut store = self.api.store.lock().unwrap();
        if store
            .remove(kind_of("pods").unwrap(), namespace, name)
            .is_none()
        {
            panic!("delete_pod: no pod {namespace}/{name}");
        }
    }

    /// Drops the log of changes, as an etcd compaction does: a watch resuming from any version
    /// before the current one gets an ERROR event with a 410 Expired Status and must list again.
    /// Watches open now go on.
    pub fn compact_events(&self) {
        self.api.store.lock().unwrap().compact();
    }

    /// The store's current `resourceVersion`, what a list made now would return.
    pub fn resource_version(&self) -> u64 {
        self.api.store.lock().unwrap().resource_version
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    /// A discovery cache for kubectl (`KUBECACHEDIR`) beside the kubeconfig: each server starts
    /// with an empty one, so kubectl's discovery requests happen, and `$HOME` stays untouched.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// `kubectl --kubeconfig KUBECONFIG ARGS...` with `KUBECACHEDIR` set to `cache_dir()`.
    pub fn kubectl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("KUBECACHEDIR", &self.cache_dir);
        cmd
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Every request answered so far, in the order the answers were made.
    pub fn requests(&self) -> Vec<Served> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn kubeconfig_yaml(port: u16, ca: &Path) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fixture\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {}\nusers:\n- name: fixture\n  user:\n    token: {TOKEN}\ncontexts:\n- name: fixture\n  context:\n    cluster: fixture\n    user: fixture\n    namespace: {NAMESPACE}\ncurrent-context: fixture\n",
        ca.display()
    )
}

/// Accepts connections until told to stop, then closes the listener and cuts every connection
/// it accepted, as a crashed or restarted API server would.
async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    api: Arc<Api>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        // Reap finished connections, so a long test does not keep them all.
        while connections.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        let api = api.clone();
        connections.spawn(async move {
            // A client that gives up during the handshake (or a port probe) is not an error here.
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let service = service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.handle(req).await) }
            });
            // The auto builder picks HTTP/2 from the client preface, which follows ALPN h2.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
    drop(listener);
    // Aborting a connection's task drops its socket: the client sees the connection end.
    connections.shutdown().await;
}
