//! A local Kubernetes API server for the tests: HTTPS with a CA made at start, HTTP/2 (ALPN `h2`,
//! as a real API server negotiates with Go clients) and HTTP/1.1 for clients that do not offer h2.
//! It serves legacy discovery, a minimal OpenAPI v3 document, and in-memory pods, configmaps and
//! namespaces: enough for an unmodified `kubectl` to get, delete and apply. It keeps a log of what it
//! served so a test can compare the recorder's view of the traffic with the server's.
//!
//! The server runs on its own thread with a single-threaded tokio runtime and stops on drop.
use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::TcpListener,
    path::{Path, PathBuf},
    pin::Pin,
    process::Command,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    thread::JoinHandle,
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{
    Method, Request, Response, StatusCode, Version,
    body::{Frame, Incoming, SizeHint},
    header,
    service::service_fn,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use serde_json::{Value, json};

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
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl KubeApi {
    /// Starts the server on a free loopback port and writes `ca.crt` and `kubeconfig` into `dir`.
    /// The kubeconfig has one cluster (`https://127.0.0.1:PORT`, trusting `ca.crt`), one token
    /// user and one context, `fixture`, selected as current with namespace `team-a`.
    pub fn start(dir: &Path) -> Self {
        let pki = Pki::new();
        let ca_cert = dir.join("ca.crt");
        std::fs::write(&ca_cert, &pki.ca_pem).unwrap();

        // Bound before the thread starts, so the port is known and connectable on return.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();

        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(port, &ca_cert)).unwrap();

        let tls = Arc::new(pki.server_config());
        let log = Arc::new(Mutex::new(Vec::new()));
        let api = Arc::new(Api {
            port,
            log: log.clone(),
            store: Mutex::new(Store::seeded()),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("kube-api".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(serve(listener, tls, api, stopped));
                // Dropping the runtime cancels open connections, including held watches.
            })
            .unwrap();
        KubeApi {
            port,
            kubeconfig,
            ca_cert,
            cache_dir: dir.join("kube-cache"),
            log,
            stop: Some(stop),
            thread: Some(thread),
        }
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
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
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

/// A CA and a server certificate it signed, for `127.0.0.1` and `localhost`.
struct Pki {
    ca_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl Pki {
    fn new() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DistinguishedName, DnType,
            ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kube-api fixture CA");
        ca.distinguished_name = dn;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().unwrap();
        // rcgen turns the address string into an IP SAN: Go's verifier needs one for 127.0.0.1.
        let mut leaf =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kube-apiserver");
        leaf.distinguished_name = dn;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.use_authority_key_identifier_extension = true;
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        Pki {
            ca_pem,
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        }
    }

    fn server_config(&self) -> rustls::ServerConfig {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )
            .unwrap();
        // h2 first, as kube-apiserver: Go's client and curl then speak HTTP/2.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    api: Arc<Api>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let acceptor = acceptor.clone();
        let api = api.clone();
        tokio::spawn(async move {
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
}

/// A response body: a whole JSON document, or the start of a watch that stays open until the
/// client goes away (kubectl cancels its watches when done; dropping the server ends them too).
struct Body {
    chunks: Vec<Bytes>,
    open: bool,
}

impl Body {
    fn full(bytes: Vec<u8>) -> Self {
        Body {
            chunks: vec![Bytes::from(bytes)],
            open: false,
        }
    }

    fn watch(events: Vec<Value>) -> Self {
        let chunks = events
            .iter()
            .rev()
            .map(|e| {
                let mut line = serde_json::to_vec(e).unwrap();
                line.push(b'\n');
                Bytes::from(line)
            })
            .collect();
        Body { chunks, open: true }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.chunks.pop() {
            Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            // Nothing ever changes under a watch here, so it has nothing more to say.
            None if self.open => Poll::Pending,
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.open && self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        if self.open {
            return SizeHint::default();
        }
        SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
    }
}

/// The kinds served, all in the core group `v1`.
struct Kind {
    resource: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
}

const KINDS: &[Kind] = &[
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

fn kind_of(resource: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.resource == resource)
}

/// Objects by resource, then by (namespace, name); cluster-scoped objects have namespace "".
struct Store {
    objects: BTreeMap<&'static str, BTreeMap<(String, String), Value>>,
    resource_version: u64,
    uid: u64,
    started: u64,
}

impl Store {
    fn seeded() -> Self {
        let mut store = Store {
            objects: BTreeMap::new(),
            resource_version: 100,
            uid: 0,
            // Seeded objects look five minutes old, so AGE columns read like a live cluster.
            started: now_secs().saturating_sub(300),
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

    /// Stores a new object, filling in what the server owns: kind, namespace, uid, version, time.
    fn insert(&mut self, kind: &Kind, ns: &str, mut obj: Value, created: u64) -> Value {
        self.resource_version += 1;
        self.uid += 1;
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        obj["apiVersion"] = json!("v1");
        obj["kind"] = json!(kind.kind);
        let meta = &mut obj["metadata"];
        if kind.namespaced {
            meta["namespace"] = json!(ns);
        }
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", self.uid));
        meta["resourceVersion"] = json!(self.resource_version.to_string());
        meta["creationTimestamp"] = json!(rfc3339(created));
        self.objects
            .entry(kind.resource)
            .or_default()
            .insert((ns.to_string(), name), obj.clone());
        obj
    }

    fn get(&self, kind: &Kind, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(kind.resource)?
            .get(&(ns.to_string(), name.to_string()))
    }

    fn list(&self, kind: &Kind, ns: Option<&str>) -> Vec<Value> {
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

/// What the router decided, before it becomes a response.
struct Reply {
    status: StatusCode,
    body: Body,
    content_type: &'static str,
}

impl Reply {
    fn json(status: StatusCode, value: &Value) -> Self {
        Reply {
            status,
            body: Body::full(serde_json::to_vec(value).unwrap()),
            content_type: "application/json",
        }
    }

    fn text(body: &'static str) -> Self {
        Reply {
            status: StatusCode::OK,
            body: Body::full(body.as_bytes().to_vec()),
            content_type: "text/plain; charset=utf-8",
        }
    }

    /// A failure as kube-apiserver reports it: a `Status` object whose `code` matches the HTTP
    /// status, which clients decode into typed errors (kubectl's "NotFound" handling needs it).
    fn status(code: StatusCode, reason: &str, message: String, details: Value) -> Self {
        Reply::json(
            code,
            &json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": message, "reason": reason,
                "details": details, "code": code.as_u16(),
            }),
        )
    }

    fn not_found_path() -> Self {
        Reply::status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource".into(),
            json!({}),
        )
    }

    fn not_found(kind: &Kind, name: &str) -> Self {
        Reply::status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", kind.resource),
            json!({"name": name, "kind": kind.resource}),
        )
    }

    fn method_not_allowed() -> Self {
        Reply::status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
            json!({}),
        )
    }

    fn bad_request(message: String) -> Self {
        Reply::status(StatusCode::BAD_REQUEST, "BadRequest", message, json!({}))
    }
}

struct Api {
    port: u16,
    log: Arc<Mutex<Vec<Served>>>,
    store: Mutex<Store>,
}

/// The parts of a request the router looks at.
struct Call {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    accept: String,
    content_type: String,
    body: Bytes,
}

impl Call {
    fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn wants_table(&self) -> bool {
        self.accept.contains("as=Table")
    }
}

impl Api {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| req.uri().path().to_string());
        let version = if req.version() == Version::HTTP_2 {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        };
        let header = |name: header::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let user_agent = header(header::USER_AGENT);
        let accept = header(header::ACCEPT);
        let content_type = header(header::CONTENT_TYPE);
        let path = req.uri().path().to_string();
        let query = req
            .uri()
            .query()
            .map(|q| {
                q.split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        (percent_decode(k), percent_decode(v))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let call = Call {
            method: method.clone(),
            path,
            query,
            accept,
            content_type,
            body,
        };
        let reply = self.route(&call);
        self.log.lock().unwrap().push(Served {
            method: method.to_string(),
            target,
            status: reply.status.as_u16(),
            version,
            user_agent,
        });
        Response::builder()
            .status(reply.status)
            .header(header::CONTENT_TYPE, reply.content_type)
            .header("audit-id", "fixture")
            .body(reply.body)
            .unwrap()
    }

    fn route(&self, call: &Call) -> Reply {
        let segments: Vec<&str> = call.path.split('/').filter(|s| !s.is_empty()).collect();
        let read_only = call.method == Method::GET || call.method == Method::HEAD;
        match segments.as_slice() {
            ["healthz" | "livez" | "readyz"] if read_only => Reply::text("ok"),
            ["version"] if read_only => Reply::json(StatusCode::OK, &version()),
            ["api"] if read_only => Reply::json(StatusCode::OK, &self.api_versions()),
            ["apis"] if read_only => Reply::json(
                StatusCode::OK,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
            ),
            ["api", "v1"] if read_only => Reply::json(StatusCode::OK, &resource_list()),
            ["openapi", "v3"] if read_only => Reply::json(StatusCode::OK, &openapi_v3_paths()),
            ["openapi", "v3", "api", "v1"] if read_only => {
                Reply::json(StatusCode::OK, &openapi_v3_core())
            }
            ["api", "v1", rest @ ..] => self.resource(call, rest),
            _ => Reply::not_found_path(),
        }
    }

    fn api_versions(&self) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{}", self.port)}
            ],
        })
    }

    /// `/api/v1/...`: collections and objects, namespaced or not.
    fn resource(&self, call: &Call, rest: &[&str]) -> Reply {
        // (namespace, resource, name)
        let (ns, resource, name) = match *rest {
            ["namespaces", ns, resource] => (Some(ns), resource, None),
            ["namespaces", ns, resource, name] => (Some(ns), resource, Some(name)),
            // `namespaces/NAME` is an object of the cluster-scoped kind, not a namespace prefix.
            [resource] => (None, resource, None),
            [resource, name] => (None, resource, Some(name)),
            _ => return Reply::not_found_path(),
        };
        let Some(kind) = kind_of(resource) else {
            return Reply::not_found_path();
        };
        if ns.is_some() && !kind.namespaced {
            return Reply::not_found_path();
        }
        let mut store = self.store.lock().unwrap();
        let scope = if kind.namespaced { ns } else { Some("") };
        match (call.method.clone(), name) {
            (Method::GET, None) if call.param("watch").is_some_and(|w| w == "true" || w == "1") => {
                watch(call, &store, kind, scope.filter(|s| !s.is_empty()))
            }
            (Method::GET, None) => {
                let items = select(call, store.list(kind, scope.filter(|s| !s.is_empty())));
                list(call, &store, kind, items)
            }
            (Method::GET, Some(name)) => match store.get(kind, scope.unwrap_or(""), name) {
                Some(obj) if call.wants_table() => Reply::json(
                    StatusCode::OK,
                    &table(call, &store, kind, vec![obj.clone()]),
                ),
                Some(obj) => Reply::json(StatusCode::OK, obj),
                None => Reply::not_found(kind, name),
            },
            (Method::POST, None) => {
                let Some(ns) = scope else {
                    // A namespaced kind has no cluster-wide collection to create in.
                    return Reply::method_not_allowed();
                };
                create(call, &mut store, kind, ns)
            }
            (Method::DELETE, Some(name)) => {
                let key = (scope.unwrap_or("").to_string(), name.to_string());
                let removed = store
                    .objects
                    .get_mut(kind.resource)
                    .and_then(|m| m.remove(&key));
                match removed {
                    // Gone at once (no kubelet to wait for): kubectl's wait then lists it absent.
                    Some(obj) if dry_run(call) => {
                        store
                            .objects
                            .entry(kind.resource)
                            .or_default()
                            .insert(key, obj.clone());
                        Reply::json(StatusCode::OK, &obj)
                    }
                    Some(obj) => Reply::json(StatusCode::OK, &obj),
                    None => Reply::not_found(kind, name),
                }
            }
            (Method::PATCH, Some(name)) => patch(call, &mut store, kind, scope.unwrap_or(""), name),
            (Method::PUT, Some(name)) => replace(call, &mut store, kind, scope.unwrap_or(""), name),
            _ => Reply::method_not_allowed(),
        }
    }
}

fn dry_run(call: &Call) -> bool {
    call.param("dryRun").is_some_and(|d| d == "All")
}

/// Applies `fieldSelector=metadata.name=X` (what kubectl's wait uses) and
/// `metadata.namespace=X`; other selectors are not filtered on.
fn select(call: &Call, items: Vec<Value>) -> Vec<Value> {
    let Some(selector) = call.param("fieldSelector") else {
        return items;
    };
    items
        .into_iter()
        .filter(|obj| {
            selector.split(',').all(|term| {
                let Some((field, want)) = term.split_once('=') else {
                    return true;
                };
                let (field, want) = (field.trim_end_matches('='), want.trim_start_matches('='));
                match field {
                    "metadata.name" => obj["metadata"]["name"] == want,
                    "metadata.namespace" => obj["metadata"]["namespace"] == want,
                    _ => true,
                }
            })
        })
        .collect()
}

fn list(call: &Call, store: &Store, kind: &Kind, items: Vec<Value>) -> Reply {
    if call.wants_table() {
        return Reply::json(StatusCode::OK, &table(call, store, kind, items));
    }
    // Items of a typed list carry no kind/apiVersion on the wire; the list does.
    let items: Vec<Value> = items
        .into_iter()
        .map(|mut obj| {
            if let Some(map) = obj.as_object_mut() {
                map.remove("kind");
                map.remove("apiVersion");
            }
            obj
        })
        .collect();
    Reply::json(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", kind.kind), "apiVersion": "v1",
            "metadata": {"resourceVersion": store.resource_version.to_string()},
            "items": items,
        }),
    )
}

/// A watch: the current objects as ADDED events when the client asks for initial events (the
/// streaming-list form), then a bookmark closing them, then nothing until the client hangs up.
fn watch(call: &Call, store: &Store, kind: &Kind, ns: Option<&str>) -> Reply {
    let mut events = Vec::new();
    if call.param("sendInitialEvents") == Some("true") {
        for obj in select(call, store.list(kind, ns)) {
            events.push(json!({"type": "ADDED", "object": obj}));
        }
        events.push(json!({"type": "BOOKMARK", "object": {
            "kind": kind.kind, "apiVersion": "v1",
            "metadata": {"resourceVersion": store.resource_version.to_string(),
                         "annotations": {"k8s.io/initial-events-end": "true"}},
        }}));
    }
    Reply {
        status: StatusCode::OK,
        body: Body::watch(events),
        content_type: "application/json",
    }
}

fn create(call: &Call, store: &mut Store, kind: &Kind, ns: &str) -> Reply {
    let Ok(mut obj) = serde_json::from_slice::<Value>(&call.body) else {
        return Reply::bad_request("the request body is not a JSON object".into());
    };
    if !obj.is_object() {
        return Reply::bad_request("the request body is not a JSON object".into());
    }
    let Some(name) = obj["metadata"]["name"].as_str().map(str::to_string) else {
        return Reply::status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!(
                "{} \"\" is invalid: metadata.name: Required value",
                kind.kind
            ),
            json!({"kind": kind.kind}),
        );
    };
    if let Some(body_ns) = obj["metadata"]["namespace"].as_str()
        && kind.namespaced
        && body_ns != ns
    {
        return Reply::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        );
    }
    if kind.namespaced && store.get(kind_of("namespaces").unwrap(), "", ns).is_none() {
        return Reply::status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("namespaces \"{ns}\" not found"),
            json!({"name": ns, "kind": "namespaces"}),
        );
    }
    if store.get(kind, ns, &name).is_some() {
        return Reply::status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", kind.resource),
            json!({"name": name, "kind": kind.resource}),
        );
    }
    if obj.get("status").is_none() && kind.kind == "Namespace" {
        obj["status"] = json!({"phase": "Active"});
    }
    let stored = if dry_run(call) {
        obj
    } else {
        store.insert(kind, ns, obj, now_secs())
    };
    Reply::json(StatusCode::CREATED, &stored)
}

fn patch(call: &Call, store: &mut Store, kind: &Kind, ns: &str, name: &str) -> Reply {
    // JSON merge patch semantics also cover what client-side apply sends as a strategic merge
    // patch for the kinds served here (maps of strings, no merge-keyed lists it needs to merge).
    if !(call
        .content_type
        .starts_with("application/merge-patch+json")
        || call
            .content_type
            .starts_with("application/strategic-merge-patch+json"))
    {
        return Reply::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json; got {}",
                call.content_type
            ),
            json!({}),
        );
    }
    let Ok(patch) = serde_json::from_slice::<Value>(&call.body) else {
        return Reply::bad_request("the patch is not JSON".into());
    };
    let Some(current) = store.get(kind, ns, name) else {
        return Reply::not_found(kind, name);
    };
    let mut obj = current.clone();
    merge(&mut obj, &patch);
    if dry_run(call) {
        return Reply::json(StatusCode::OK, &obj);
    }
    Reply::json(StatusCode::OK, &update(store, kind, ns, name, obj))
}

fn replace(call: &Call, store: &mut Store, kind: &Kind, ns: &str, name: &str) -> Reply {
    let Ok(obj) = serde_json::from_slice::<Value>(&call.body) else {
        return Reply::bad_request("the request body is not JSON".into());
    };
    if store.get(kind, ns, name).is_none() {
        return Reply::not_found(kind, name);
    }
    if dry_run(call) {
        return Reply::json(StatusCode::OK, &obj);
    }
    Reply::json(StatusCode::OK, &update(store, kind, ns, name, obj))
}

/// Stores a changed object, keeping the fields the server owns and moving its version on.
fn update(store: &mut Store, kind: &Kind, ns: &str, name: &str, mut obj: Value) -> Value {
    let key = (ns.to_string(), name.to_string());
    let old = store.objects[kind.resource][&key].clone();
    store.resource_version += 1;
    obj["apiVersion"] = json!("v1");
    obj["kind"] = json!(kind.kind);
    for field in ["name", "namespace", "uid", "creationTimestamp"] {
        if let Some(v) = old["metadata"].get(field) {
            obj["metadata"][field] = v.clone();
        }
    }
    obj["metadata"]["resourceVersion"] = json!(store.resource_version.to_string());
    store
        .objects
        .get_mut(kind.resource)
        .unwrap()
        .insert(key, obj.clone());
    obj
}

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let map = target.as_object_mut().unwrap();
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The server-side printing kubectl asks for (`Accept: ...;as=Table`): the columns of
/// `kubectl get` come from the server, as they do from kube-apiserver.
fn table(call: &Call, store: &Store, kind: &Kind, items: Vec<Value>) -> Value {
    let column = |name: &str, ty: &str, format: &str| json!({"name": name, "type": ty, "format": format, "description": name, "priority": 0});
    let mut columns = vec![column("Name", "string", "name")];
    match kind.resource {
        "pods" => {
            columns.push(column("Ready", "string", ""));
            columns.push(column("Status", "string", ""));
            columns.push(column("Restarts", "string", ""));
        }
        "configmaps" => columns.push(column("Data", "integer", "")),
        "namespaces" => columns.push(column("Status", "string", "")),
        _ => {}
    }
    columns.push(column("Age", "string", ""));
    let include = call.param("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut cells = vec![obj["metadata"]["name"].clone()];
            match kind.resource {
                "pods" => {
                    let statuses = obj["status"]["containerStatuses"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let ready = statuses.iter().filter(|s| s["ready"] == true).count();
                    let restarts: u64 = statuses
                        .iter()
                        .filter_map(|s| s["restartCount"].as_u64())
                        .sum();
                    cells.push(json!(format!("{ready}/{}", statuses.len())));
                    cells.push(obj["status"]["phase"].clone());
                    cells.push(json!(restarts.to_string()));
                }
                "configmaps" => cells.push(json!(
                    obj["data"].as_object().map_or(0, |m| m.len())
                        + obj["binaryData"].as_object().map_or(0, |m| m.len())
                )),
                "namespaces" => cells.push(obj["status"]["phase"].clone()),
                _ => {}
            }
            cells.push(json!(age(obj["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or(""))));
            let object = match include {
                "None" => Value::Null,
                "Object" => obj.clone(),
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                            "metadata": obj["metadata"].clone()}),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": store.resource_version.to_string()},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.0", "gitCommit": "fixture",
        "gitTreeState": "clean", "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.4",
        "compiler": "gc", "platform": "linux/amd64",
    })
}

fn resource_list() -> Value {
    let resources: Vec<Value> = KINDS
        .iter()
        .map(|k| {
            json!({
                "name": k.resource, "singularName": k.singular, "namespaced": k.namespaced,
                "kind": k.kind, "shortNames": k.short,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            })
        })
        .collect();
    json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})
}

/// OpenAPI v3 discovery: one group-version, core `v1`. kubectl's strict validation reads it to
/// learn whether the server validates fields itself (then it sends `fieldValidation=Strict` and
/// validates nothing client-side, which spares serving whole schemas).
fn openapi_v3_paths() -> Value {
    json!({"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=FIXTURE"}}})
}

/// The core `v1` document, reduced to what kubectl's field-validation check looks for: a PATCH
/// operation per kind, tagged with its group-version-kind, that takes `fieldValidation`.
fn openapi_v3_core() -> Value {
    let mut paths = serde_json::Map::new();
    for k in KINDS {
        let path = if k.namespaced {
            format!("/api/v1/namespaces/{{namespace}}/{}/{{name}}", k.resource)
        } else {
            format!("/api/v1/{}/{{name}}", k.resource)
        };
        paths.insert(
            path,
            json!({
                "patch": {
                    "operationId": format!("patchCoreV1{}", k.kind),
                    "parameters": [
                        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                        {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": k.kind},
                }
            }),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => match s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
                Some(Ok(b)) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (proleptic Gregorian), after H. Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The inverse of `rfc3339`, for the AGE column.
fn parse_rfc3339(s: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil date, the inverse of the conversion above.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// A duration as kubectl prints ages: `45s`, `5m`, `3h`, `2d`.
fn age(created: &str) -> String {
    let Some(t) = parse_rfc3339(created) else {
        return "<unknown>".into();
    };
    let secs = now_secs().saturating_sub(t);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
        for t in [0, 951_782_400, 1_735_689_599, now_secs()] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(
            percent_decode("metadata.name%3Dweb-1"),
            "metadata.name=web-1"
        );
        assert_eq!(percent_decode("a+b%2"), "a b%2");
    }

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge(&mut doc, &json!({"a": null, "b": {"c": 4}, "e": [1]}));
        assert_eq!(doc, json!({"b": {"c": 4, "d": 3}, "e": [1]}));
    }
}
