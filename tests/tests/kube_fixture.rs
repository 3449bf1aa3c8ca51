//! The Kubernetes API fixture itself: the real `kubectl` (a required peer) gets, deletes and
//! applies against it over HTTP/2, and curl and Python's `http.client` reach it over HTTP/1.1.
//! The recorder suites rely on this traffic being what a real cluster would see, so it is checked
//! here on its own, without root and without the recorder.
use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
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
