//! The Kubernetes API fixture itself: the real `kubectl` (a required peer) gets, deletes and
//! applies against it over HTTP/2, and curl and Python's `http.client` reach it over HTTP/1.1.
//! kube-rs's `watcher`, the agent's client, lists and watches pods live, through a server that
//! goes away and comes back and a log compacted under it. The recorder suites rely on this
//! traffic being what a real cluster would see, so it is checked here on its own, without root
//! and without the recorder.
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    api::{WatchEvent, WatchParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::watcher,
};
use recorder_tests::kube_api::{KubeApi, Served};
use serde_json::Value;

/// Runs a command to completion, killing it after a minute: a fixture that leaves kubectl waiting
/// must fail the test, not hang the suite.
fn run(cmd: &mut Command, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} is required for these tests and could not start: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} did not finish within a minute; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// kubectl with these arguments; panics with its stderr and the server's log unless it exits 0.
fn kubectl_ok(api: &KubeApi, args: &[&str]) -> String {
    let out = run(&mut api.kubectl(args), "kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed ({}):\n{}\nserved:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        log(api)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn log(api: &KubeApi) -> String {
    api.requests()
        .iter()
        .map(|r| format!("{} {} {} {}\n", r.method, r.target, r.status, r.version))
        .collect()
}

/// The first request with this method and target, in the server's log.
fn served(api: &KubeApi, method: &str, target: &str) -> Served {
    api.requests()
        .into_iter()
        .find(|r| r.method == method && r.target == target)
        .unwrap_or_else(|| panic!("no {method} {target}; served:\n{}", log(api)))
}

fn start() -> (tempfile::TempDir, KubeApi) {
    let dir = tempfile::Builder::new()
        .prefix("recorder-kube-")
        .tempdir()
        .unwrap();
    let api = KubeApi::start(dir.path());
    (dir, api)
}

#[test]
fn kubectl_lists_pods_over_http2() {
    let (_dir, api) = start();
    let out = kubectl_ok(&api, &["get", "pods", "-n", "team-a"]);
    let names: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(out.starts_with("NAME "), "{out}");
    assert_eq!(names, ["web-1", "web-2"], "{out}");
    assert!(out.contains("Running"), "{out}");

    // Legacy discovery first, then the list, all on one HTTP/2 connection as kube-apiserver sees.
    for target in [
        "/api?timeout=32s",
        "/apis?timeout=32s",
        "/api/v1?timeout=32s",
    ] {
        let r = served(&api, "GET", target);
        assert_eq!((r.status, r.version), (200, "HTTP/2"), "{r:?}");
    }
    let list = served(&api, "GET", "/api/v1/namespaces/team-a/pods?limit=500");
    assert_eq!((list.status, list.version), (200, "HTTP/2"), "{list:?}");
    assert!(list.user_agent.starts_with("kubectl/"), "{list:?}");
}

#[test]
fn kubectl_gets_one_pod_by_name() {
    let (_dir, api) = start();
    let out = kubectl_ok(&api, &["get", "pod", "web-2", "-n", "team-a", "-o", "name"]);
    assert_eq!(out, "pod/web-2\n");
    let get = served(&api, "GET", "/api/v1/namespaces/team-a/pods/web-2");
    assert_eq!((get.status, get.version), (200, "HTTP/2"), "{get:?}");
}

#[test]
fn kubectl_deletes_a_pod_and_its_wait_ends() {
    let (_dir, api) = start();
    let out = kubectl_ok(&api, &["delete", "pod", "web-1", "-n", "team-a"]);
    assert_eq!(out, "pod \"web-1\" deleted\n");
    let delete = served(&api, "DELETE", "/api/v1/namespaces/team-a/pods/web-1");
    assert_eq!(
        (delete.status, delete.version),
        (200, "HTTP/2"),
        "{delete:?}"
    );
    // kubectl's wait for the deletion sees the pod gone (a NotFound Status) and returns.
    let wait = served(&api, "GET", "/api/v1/namespaces/team-a/pods/web-1");
    assert_eq!(wait.status, 404, "{wait:?}");

    let out = kubectl_ok(&api, &["get", "pods", "-n", "team-a", "-o", "name"]);
    assert_eq!(out, "pod/web-2\n");
    let again = run(
        &mut api.kubectl(&["delete", "pod", "web-1", "-n", "team-a"]),
        "kubectl",
    );
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("Error from server (NotFound): pods \"web-1\" not found"),
        "{err}"
    );
}

#[test]
fn kubectl_apply_creates_then_patches_a_configmap() {
    let (dir, api) = start();
    let manifest = dir.path().join("manifest.yaml");
    let write = |mode: &str| {
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: team-a\ndata:\n  mode: {mode}\n"
            ),
        )
        .unwrap()
    };
    let manifest_arg = manifest.to_str().unwrap();

    write("strict");
    let out = kubectl_ok(&api, &["apply", "-f", manifest_arg]);
    assert_eq!(out, "configmap/settings created\n");
    // Client-side apply with the default (strict) validation: kubectl finds in OpenAPI v3 that
    // the server validates fields, looks the object up, and creates it.
    for (method, target, status) in [
        ("GET", "/openapi/v3?timeout=32s", 200),
        ("GET", "/openapi/v3/api/v1?hash=FIXTURE&timeout=32s", 200),
        ("GET", "/api/v1/namespaces/team-a/configmaps/settings", 404),
        (
            "POST",
            "/api/v1/namespaces/team-a/configmaps?fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
            201,
        ),
    ] {
        let r = served(&api, method, target);
        assert_eq!((r.status, r.version), (status, "HTTP/2"), "{r:?}");
    }

    write("lenient");
    let out = kubectl_ok(&api, &["apply", "-f", manifest_arg]);
    assert_eq!(out, "configmap/settings configured\n");
    let patch = served(
        &api,
        "PATCH",
        "/api/v1/namespaces/team-a/configmaps/settings?fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
    );
    assert_eq!(patch.status, 200, "{patch:?}");
    let out = kubectl_ok(&api, &["apply", "-f", manifest_arg]);
    assert_eq!(out, "configmap/settings unchanged\n");

    let out = kubectl_ok(
        &api,
        &[
            "get",
            "configmap",
            "settings",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.data.mode}",
        ],
    );
    assert_eq!(out, "lenient");
}

#[test]
fn unknown_paths_get_a_not_found_status() {
    let (_dir, api) = start();
    let (code, version, body) = curl(&api, &["--http1.1"], "/apis/example.com/v1/widgets");
    assert_eq!((code.as_str(), version.as_str()), ("404", "1.1"));
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["kind"], "Status", "{body}");
    assert_eq!(status["reason"], "NotFound", "{body}");
    assert_eq!(status["code"], 404, "{body}");
}

/// curl against the server: (status code, HTTP version, body).
fn curl(api: &KubeApi, extra: &[&str], path: &str) -> (String, String, String) {
    let out = run(
        Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(api.ca_cert())
            .args(extra)
            .args(["-w", "\n%{http_code} %{http_version}"])
            .arg(format!("{}{path}", api.url())),
        "curl",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, trailer) = text.rsplit_once('\n').unwrap();
    let (code, version) = trailer.split_once(' ').unwrap();
    (code.into(), version.into(), body.into())
}

fn pod_names(list: &str) -> Vec<String> {
    let list: Value = serde_json::from_str(list).unwrap();
    assert_eq!(list["kind"], "PodList", "{list}");
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn curl_lists_pods_over_http2_and_http1() {
    let (_dir, api) = start();
    let path = "/api/v1/namespaces/team-a/pods";
    let (code, version, body) = curl(&api, &[], path);
    assert_eq!((code.as_str(), version.as_str()), ("200", "2"));
    assert_eq!(pod_names(&body), ["web-1", "web-2"]);
    let (code, version, body) = curl(&api, &["--http1.1"], path);
    assert_eq!((code.as_str(), version.as_str()), ("200", "1.1"));
    assert_eq!(pod_names(&body), ["web-1", "web-2"]);

    let versions: Vec<&str> = api.requests().iter().map(|r| r.version).collect();
    assert_eq!(versions, ["HTTP/2", "HTTP/1.1"], "{}", log(&api));
}

/// A client over Python's `ssl` and `http.client`, which offers no ALPN and speaks HTTP/1.1:
/// prints the status and the body.
const PYTHON_CLIENT: &str = r#"
import http.client, ssl, sys
port, ca, path, token = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
conn = http.client.HTTPSConnection("127.0.0.1", int(port), context=ssl.create_default_context(cafile=ca))
conn.request("GET", path, headers={"Authorization": "Bearer " + token, "Accept": "application/json"})
resp = conn.getresponse()
print(resp.status)
print(resp.read().decode())
"#;

#[test]
fn python_http_client_lists_pods_over_http1() {
    let (_dir, api) = start();
    let path = "/api/v1/namespaces/team-a/pods";
    let out = run(
        Command::new("python3")
            .args(["-c", PYTHON_CLIENT, &api.port().to_string()])
            .arg(api.ca_cert())
            .args([path, recorder_tests::kube_api::TOKEN]),
        "python3",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, body) = text.split_once('\n').unwrap();
    assert_eq!(status, "200");
    assert_eq!(pod_names(body), ["web-1", "web-2"]);
    let r = served(&api, "GET", path);
    assert_eq!((r.status, r.version), (200, "HTTP/1.1"), "{r:?}");
}

#[test]
fn start_writes_a_kubeconfig_for_the_server() {
    let (dir, api) = start();
    assert_eq!(api.kubeconfig(), dir.path().join("kubeconfig"));
    assert!(Path::new(api.ca_cert()).exists());
    let config = std::fs::read_to_string(api.kubeconfig()).unwrap();
    assert!(
        config.contains(&format!("server: {}", api.url())),
        "{config}"
    );
    assert!(config.contains("current-context: fixture"), "{config}");
}

// The live side of the fixture, against the client the agent uses: kube-rs's `watcher` lists
// pods, then watches from the list's version, resumes after errors and lists again on 410.

/// A kube-rs client from the fixture's kubeconfig, as the agent builds one from a kubeconfig.
async fn kube_client(api: &KubeApi) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(api.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// A `watcher` running on its own task, so it meets a stopped server while the test waits, as
/// the agent's would. Its errors are kept; the events come out in order.
struct Watching {
    events: tokio::sync::mpsc::UnboundedReceiver<Result<watcher::Event<Pod>, watcher::Error>>,
    errors: Vec<watcher::Error>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn watch_pods(client: kube::Client, config: watcher::Config) -> Watching {
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut stream = watcher(kube::Api::<Pod>::all(client), config).boxed();
        while let Some(item) = stream.next().await {
            let failed = item.is_err();
            if tx.send(item).is_err() {
                return;
            }
            // The watcher retries at once; a pause keeps it from spinning on a stopped server.
            if failed {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    Watching {
        events,
        errors: Vec::new(),
        task,
    }
}

/// What a test expects of the next event, compared by kind and pod name.
fn describe(event: &watcher::Event<Pod>) -> String {
    let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
    match event {
        watcher::Event::Init => "Init".into(),
        watcher::Event::InitApply(p) => format!("InitApply {}", name(p)),
        watcher::Event::InitDone => "InitDone".into(),
        watcher::Event::Apply(p) => format!("Apply {}", name(p)),
        watcher::Event::Delete(p) => format!("Delete {}", name(p)),
    }
}

impl Watching {
    /// The next event, errors set aside; panics after 10 s without one (a wait, not a deadline
    /// the fixture must meet).
    async fn next(&mut self, waiting_for: &str) -> watcher::Event<Pod> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(event))) => return event,
                Ok(Some(Err(e))) => self.errors.push(e),
                Ok(None) => panic!("the watcher ended while waiting for {waiting_for}"),
                Err(_elapsed) => panic!(
                    "no event within 10 s while waiting for {waiting_for}; errors: {:?}",
                    self.errors
                ),
            }
        }
    }

    /// Takes the next events and checks them, in order, against `want` (see `describe`).
    async fn expect(&mut self, want: &[&str]) -> Vec<watcher::Event<Pod>> {
        let mut got = Vec::new();
        for w in want {
            let event = self.next(w).await;
            assert_eq!(
                describe(&event),
                *w,
                "after {:?}; errors: {:?}",
                got.iter().map(describe).collect::<Vec<_>>(),
                self.errors
            );
            got.push(event);
        }
        got
    }
}

fn pod(name: &str, node: &str, labels: &[(&str, &str)]) -> Value {
    KubeApi::pod_json(
        "shop",
        name,
        &format!("uid-{name}"),
        node,
        labels,
        "shop-sa",
        &[(
            "app",
            "registry.example.com/shop/app:1.4",
            &format!("containerd://{:0>64}", name.len()),
        )],
    )
}

#[tokio::test]
async fn watcher_on_a_node_sees_its_pods_come_change_and_go() {
    let (_dir, api) = start();
    api.put_pod(pod("before", "node-7", &[("app", "shop")]));
    let client = kube_client(&api).await;
    let mut w = watch_pods(
        client.clone(),
        watcher::Config::default().fields("spec.nodeName=node-7"),
    );
    // The list: only the pod on node-7, not the seeded ones on node-1.
    w.expect(&["Init", "InitApply before", "InitDone"]).await;

    api.put_pod(pod("web", "node-7", &[("app", "shop")]));
    let got = w.expect(&["Apply web"]).await;
    let watcher::Event::Apply(p) = &got[0] else {
        unreachable!()
    };
    // The pod as the agent reads it: identity, node, account, container ids.
    assert_eq!(p.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(p.metadata.uid.as_deref(), Some("uid-web"));
    assert_eq!(p.metadata.labels.as_ref().unwrap()["app"], "shop");
    let spec = p.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("node-7"));
    assert_eq!(spec.service_account_name.as_deref(), Some("shop-sa"));
    let status = p.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let container = &status.container_statuses.as_ref().unwrap()[0];
    assert_eq!(
        container.container_id.as_deref(),
        Some(format!("containerd://{:0>64}", 3).as_str())
    );
    assert!(container.state.as_ref().unwrap().running.is_some());
    assert!(
        container
            .image_id
            .starts_with("registry.example.com/shop/app@sha256:"),
        "{}",
        container.image_id
    );
    let rv: u64 = p
        .metadata
        .resource_version
        .as_ref()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(rv, api.resource_version());

    // A pod on another node is not sent: the next event is the one after it.
    api.put_pod(pod("elsewhere", "node-8", &[("app", "shop")]));
    api.put_pod(pod("next", "node-7", &[]));
    w.expect(&["Apply next"]).await;
    api.delete_pod("shop", "web");
    api.delete_pod("shop", "elsewhere");
    api.delete_pod("shop", "next");
    w.expect(&["Delete web", "Delete next"]).await;

    // A label-selected watcher: a pod that stops matching is deleted from its view, and added
    // back when it matches again.
    let mut by_label = watch_pods(client, watcher::Config::default().labels("app=shop"));
    by_label
        .expect(&["Init", "InitApply before", "InitDone"])
        .await;
    api.put_pod(pod("before", "node-7", &[("app", "shop"), ("v", "2")]));
    by_label.expect(&["Apply before"]).await;
    api.put_pod(pod("before", "node-7", &[("app", "other")]));
    by_label.expect(&["Delete before"]).await;
    api.put_pod(pod("labelled", "node-9", &[("app", "shop")]));
    api.put_pod(pod("before", "node-7", &[("app", "shop")]));
    by_label.expect(&["Apply labelled", "Apply before"]).await;
    // The node watcher saw all three changes of "before" as changes.
    w.expect(&["Apply before", "Apply before", "Apply before"])
        .await;
    assert!(w.errors.is_empty(), "{:?}", w.errors);
    assert!(by_label.errors.is_empty(), "{:?}", by_label.errors);
}

#[tokio::test]
async fn watcher_with_streaming_lists_gets_its_initial_pods_from_the_watch() {
    let (_dir, api) = start();
    api.put_pod(pod("before", "node-7", &[]));
    let mut w = watch_pods(
        kube_client(&api).await,
        watcher::Config::default()
            .streaming_lists()
            .fields("spec.nodeName=node-7"),
    );
    // `sendInitialEvents=true`: ADDED events, then the bookmark marking their end.
    w.expect(&["Init", "InitApply before", "InitDone"]).await;
    api.put_pod(pod("after", "node-7", &[]));
    w.expect(&["Apply after"]).await;
    assert_eq!(pod_lists(&api), 0, "{}", log(&api));
    assert!(w.errors.is_empty(), "{:?}", w.errors);
}

/// The watch requests the server answered for the cluster-wide pod collection.
fn pod_watches(api: &KubeApi) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.target.starts_with("/api/v1/pods?") && r.target.contains("watch=true"))
        .count()
}

/// The list requests (not watches) of the cluster-wide pod collection.
fn pod_lists(api: &KubeApi) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.target.starts_with("/api/v1/pods?") && !r.target.contains("watch=true"))
        .count()
}

#[tokio::test]
async fn watcher_recovers_when_the_server_comes_back() {
    let (_dir, api) = start();
    let client = kube_client(&api).await;
    let mut w = watch_pods(
        client,
        watcher::Config::default().fields("spec.nodeName=node-7"),
    );
    w.expect(&["Init", "InitDone"]).await;
    api.put_pod(pod("first", "node-7", &[]));
    w.expect(&["Apply first"]).await;
    assert_eq!(pod_watches(&api), 1, "{}", log(&api));

    api.stop_serving();
    let refused = std::net::TcpStream::connect(("127.0.0.1", api.port()));
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
        "{refused:?}"
    );
    // Long enough for the watcher to find its watch cut and its retries refused.
    tokio::time::sleep(Duration::from_secs(1)).await;
    api.put_pod(pod("while-away", "node-7", &[]));
    api.delete_pod("shop", "first");
    api.resume_serving();

    // Resumed from its version: the changes made meanwhile, without a new list.
    w.expect(&["Apply while-away", "Delete first"]).await;
    assert!(
        w.errors
            .iter()
            .any(|e| matches!(e, watcher::Error::WatchStartFailed(_))),
        "the watcher never saw the server gone: {:?}",
        w.errors
    );
    assert_eq!(pod_lists(&api), 1, "{}", log(&api));
    assert!(pod_watches(&api) >= 2, "{}", log(&api));
    api.put_pod(pod("after", "node-7", &[]));
    w.expect(&["Apply after"]).await;
}

#[tokio::test]
async fn watcher_lists_again_when_its_version_is_compacted_away() {
    let (_dir, api) = start();
    let client = kube_client(&api).await;
    let mut w = watch_pods(
        client,
        watcher::Config::default().fields("spec.nodeName=node-7"),
    );
    w.expect(&["Init", "InitDone"]).await;
    api.put_pod(pod("first", "node-7", &[]));
    w.expect(&["Apply first"]).await;

    // Changes the watcher cannot replay: made while it is cut off, then compacted away.
    api.stop_serving();
    api.put_pod(pod("second", "node-7", &[]));
    api.delete_pod("shop", "first");
    api.compact_events();
    api.resume_serving();

    // 410 Gone, then a new list that converges on what is there now.
    w.expect(&["Init", "InitApply second", "InitDone"]).await;
    assert!(
        w.errors
            .iter()
            .any(|e| matches!(e, watcher::Error::WatchError(s) if s.code == 410)),
        "no 410 seen: {:?}",
        w.errors
    );
    assert_eq!(pod_lists(&api), 2, "{}", log(&api));
    api.put_pod(pod("third", "node-7", &[]));
    w.expect(&["Apply third"]).await;
}

#[tokio::test]
async fn a_watch_sends_bookmarks_and_ends_at_its_timeout() {
    let (_dir, api) = start();
    let pods = kube::Api::<Pod>::all(kube_client(&api).await);
    let rv = api.resource_version().to_string();
    let started = Instant::now();
    let mut stream = pods
        .watch(&WatchParams::default().timeout(5).labels("app=web"), &rv)
        .await
        .unwrap()
        .boxed();
    let mut events = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("the watch did not end at its timeoutSeconds")
    {
        events.push(event.unwrap());
    }
    assert!(started.elapsed() >= Duration::from_secs(4), "{events:?}");
    // Nothing changed: bookmarks only, each at the current version.
    assert!(!events.is_empty());
    for event in &events {
        let WatchEvent::Bookmark(b) = event else {
            panic!("{event:?}")
        };
        assert_eq!(b.metadata.resource_version, rv);
    }
}

#[test]
fn kubectl_get_pods_watch_prints_a_pod_added_later() {
    let (_dir, api) = start();
    let mut child = api
        .kubectl(&["get", "pods", "-n", "team-a", "--watch"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl is required for these tests");
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let wait_for = |name: &str, seen: &mut Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !seen.iter().any(|l| l.starts_with(&format!("{name} "))) {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_timeout) => panic!(
                    "kubectl printed no {name} line; output: {seen:?}\nserved:\n{}",
                    log(&api)
                ),
            }
        }
    };
    // The list first, then the watch from its version.
    wait_for("web-2", &mut seen);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !api
        .requests()
        .iter()
        .any(|r| r.target.contains("watch=true"))
    {
        assert!(
            Instant::now() < deadline,
            "kubectl never watched:\n{}",
            log(&api)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut late = KubeApi::pod_json(
        "team-a",
        "late",
        "",
        "node-1",
        &[("app", "web")],
        "default",
        &[("web", "nginx:1.27", "containerd://1234")],
    );
    late["status"]["qosClass"] = "Burstable".into();
    api.put_pod(late);
    wait_for("late", &mut seen);
    let _ = child.kill();
    let _ = child.wait();
    let line = seen.iter().find(|l| l.starts_with("late ")).unwrap();
    assert!(line.contains("1/1") && line.contains("Running"), "{line}");
}
