//! Deployment: the systemd units, the Kubernetes manifests, the Debian package and the container
//! image, each checked with the real tool (systemd-analyze, k8s-openapi's types, kubectl, dpkg,
//! podman). Root only: the package is installed and removed, the image runs the agent.
//!
//! `cargo xtask test` makes the image and the package first (RECORDER_IMAGE, RECORDER_DEB).
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use k8s_openapi::{
    Resource,
    api::{
        apps::v1::{DaemonSet, StatefulSet},
        core::v1::{Namespace, Service, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding},
    },
};
use recorder_tests::{
    Cgroup, argv, dump, free_port, http_get, output,
    podman::{self, Container, ensure_host_tracefs, image, ulimits},
    read_jsonl, recorder_bin, repo_root, require_root,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const UNITS: [&str; 2] = ["recorder-agent.service", "recorder-collector.service"];

/// Runs `cmd`, fails the test with its output unless it succeeds, returns its stdout.
fn checked(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---- systemd ----------------------------------------------------------------------------------

/// The units as shipped, with ExecStart pointing at the binary under test (systemd-analyze
/// verify checks that the program exists; the installed units are verified as they are by
/// `debian_package_installs_runs_and_purges_cleanly`).
fn units_in(dir: &Path) -> Vec<PathBuf> {
    UNITS
        .iter()
        .map(|unit| {
            let text =
                std::fs::read_to_string(repo_root().join("deploy/systemd").join(unit)).unwrap();
            let path = dir.join(unit);
            let bin = recorder_bin();
            std::fs::write(
                &path,
                text.replace("/usr/bin/recorder", bin.to_str().unwrap()),
            )
            .unwrap();
            path
        })
        .collect()
}

fn verify_units(units: &[PathBuf]) {
    let out = output(Command::new("systemd-analyze").arg("verify").args(units));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {units:?}: {}\n{said}",
        out.status
    );
}

/// `systemd-analyze security --offline=yes`: the overall exposure (0 safest, 10 unprotected).
fn exposure(unit: &Path) -> f64 {
    let text = checked(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(unit),
    );
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    line.split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable exposure line {line:?}"))
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let units = units_in(dir.path());
    verify_units(&units);
    // The bounds are the figures of docs/deploy.md, rounded up: a unit that loses hardening
    // fails here.
    for (unit, bound) in units.iter().zip([3.0, 1.5]) {
        let score = exposure(unit);
        println!(
            "systemd-analyze security {}: exposure {score}",
            unit.file_name().unwrap().to_string_lossy()
        );
        assert!(
            score <= bound,
            "{}: exposure {score} > {bound}",
            unit.display()
        );
    }
}

// ---- Kubernetes -------------------------------------------------------------------------------

fn k8s_dir() -> PathBuf {
    repo_root().join("deploy/kubernetes")
}

/// Every document of every manifest (kustomization.yaml aside), with its file name.
fn manifests() -> Vec<(String, Value)> {
    let mut docs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(k8s_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for doc in yaml_docs(&std::fs::read_to_string(&file).unwrap()) {
            docs.push((name.clone(), doc));
        }
    }
    assert!(docs.len() >= 7, "{docs:?}");
    docs
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap_or_else(|e| panic!("invalid YAML: {e}\n{text}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// The document through the typed object and back. Fields the type does not have are
/// dropped on the way, so a misspelt or misplaced field makes the result differ.
fn typed<T: Resource + DeserializeOwned + Serialize>(doc: &Value) -> Value {
    assert_eq!(doc["apiVersion"], T::API_VERSION, "{doc}");
    let object: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("not a valid {}: {e}\n{doc}", T::KIND));
    serde_json::to_value(object).unwrap()
}

fn through_api_type(doc: &Value) -> Value {
    match doc["kind"].as_str().unwrap_or_default() {
        "Namespace" => typed::<Namespace>(doc),
        "ServiceAccount" => typed::<ServiceAccount>(doc),
        "ClusterRole" => typed::<ClusterRole>(doc),
        "ClusterRoleBinding" => typed::<ClusterRoleBinding>(doc),
        "DaemonSet" => typed::<DaemonSet>(doc),
        "StatefulSet" => typed::<StatefulSet>(doc),
        "Service" => typed::<Service>(doc),
        other => panic!("a kind this test does not know: {other:?}: add it"),
    }
}

#[test]
fn kubernetes_manifests_are_exactly_api_objects() {
    for (file, doc) in manifests() {
        let back = through_api_type(&doc);
        assert_eq!(
            back, doc,
            "{file}: {} {} has fields its API type does not (the first is the typed form)",
            doc["kind"], doc["metadata"]["name"]
        );
    }
}

fn kustomization() -> Value {
    yaml_docs(&std::fs::read_to_string(k8s_dir().join("kustomization.yaml")).unwrap()).remove(0)
}

/// `kubectl kustomize` renders the files' objects, with only what the kustomization says
/// changed: the namespace, the image, and the generated ConfigMap (named with its hash).
#[test]
fn kustomize_renders_the_files_objects() {
    let rendered = yaml_docs(&checked(
        Command::new("kubectl").arg("kustomize").arg(k8s_dir()),
    ));
    let k = kustomization();
    let image = &k["images"][0];
    let want_image = format!(
        "{}:{}",
        image["newName"].as_str().unwrap(),
        image["newTag"].as_str().unwrap()
    );
    let config = rendered
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("the generated ConfigMap");
    let config_name = config["metadata"]["name"].as_str().unwrap().to_string();
    assert!(
        config_name.starts_with("recorder-agent-config-"),
        "{config}"
    );
    assert_eq!(
        config["data"]["agent.toml"],
        std::fs::read_to_string(k8s_dir().join("agent.toml")).unwrap()
    );

    let by_key = |doc: &Value| {
        format!(
            "{}/{}",
            doc["kind"].as_str().unwrap(),
            doc["metadata"]["name"].as_str().unwrap()
        )
    };
    let mut files: BTreeMap<String, Value> = manifests()
        .into_iter()
        .map(|(_, d)| (by_key(&d), d))
        .collect();
    for doc in rendered.iter().filter(|d| d["kind"] != "ConfigMap") {
        let mut want = files
            .remove(&by_key(doc))
            .unwrap_or_else(|| panic!("rendered but in no file: {doc}"));
        substitute(&mut want, "recorder", &want_image, "image");
        substitute(&mut want, "recorder-agent-config", &config_name, "name");
        assert_eq!(
            doc,
            &want,
            "{}: rendered (left) differs from its file",
            by_key(doc)
        );
    }
    assert!(
        files.is_empty(),
        "in the files but not rendered: {:?}",
        files.keys()
    );
}

/// Replaces the string `from` by `to` wherever it is the value of a key named `key`.
fn substitute(v: &mut Value, from: &str, to: &str, key: &str) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == key && child == from {
                    *child = Value::String(to.into());
                } else {
                    substitute(child, from, to, key);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| substitute(c, from, to, key)),
        _ => {}
    }
}

/// A discovery-only API server (plain HTTP on loopback) for `kubectl apply --dry-run=client`:
/// it names the groups and resources the manifests use, and answers 404 to every object, so
/// kubectl maps each kind to its resource, decodes the object, and would create it. The
/// repository's `KubeApi` fixture serves only core/v1, not apps or rbac.
fn discovery_server() -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let resources = |group_version: &str, list: &[(&str, &str, bool)]| {
        let resources: Vec<Value> = list
            .iter()
            .map(|(name, kind, namespaced)| {
                serde_json::json!({"name": name, "singularName": "", "namespaced": namespaced,
                    "kind": kind, "verbs": ["create", "get", "list", "patch"]})
            })
            .collect();
        serde_json::json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": group_version, "resources": resources})
    };
    let group = |name: &str| {
        let gv = serde_json::json!({"groupVersion": format!("{name}/v1"), "version": "v1"});
        serde_json::json!({"name": name, "versions": [gv.clone()], "preferredVersion": gv})
    };
    let routes: BTreeMap<&str, Value> = BTreeMap::from([
        (
            "/api",
            serde_json::json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                "serverAddress": format!("127.0.0.1:{port}")}]}),
        ),
        (
            "/apis",
            serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [group("apps"), group("rbac.authorization.k8s.io")]}),
        ),
        (
            "/version",
            serde_json::json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0"}),
        ),
        (
            "/api/v1",
            resources(
                "v1",
                &[
                    ("namespaces", "Namespace", false),
                    ("serviceaccounts", "ServiceAccount", true),
                    ("services", "Service", true),
                    ("configmaps", "ConfigMap", true),
                ],
            ),
        ),
        (
            "/apis/apps/v1",
            resources(
                "apps/v1",
                &[
                    ("daemonsets", "DaemonSet", true),
                    ("statefulsets", "StatefulSet", true),
                ],
            ),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1",
            resources(
                "rbac.authorization.k8s.io/v1",
                &[
                    ("clusterroles", "ClusterRole", false),
                    ("clusterrolebindings", "ClusterRoleBinding", false),
                ],
            ),
        ),
    ]);
    let thread = std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head);
            let target = head.split_whitespace().nth(1).unwrap_or("");
            if target == "/stop" {
                return;
            }
            let path = target.split('?').next().unwrap_or("");
            let (status, body) = routes.get(path).map_or_else(
                || {
                    (
                        "404 Not Found",
                        serde_json::json!({"kind": "Status", "apiVersion": "v1",
                    "status": "Failure", "reason": "NotFound", "code": 404}),
                    )
                },
                |v| ("200 OK", v.clone()),
            );
            let body = body.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, thread)
}

/// The overlay for a group of collectors on PostgreSQL renders the base's objects with only the
/// collector's StatefulSet changed, and only as a group needs: two replicas, the database's
/// connection string and CA from a Secret, the group's signing key mounted where the collector
/// reads it; the result is still exactly an API object.
#[test]
fn the_postgres_group_overlay_adds_the_database_and_the_signing_key() {
    let render =
        |dir: &Path| yaml_docs(&checked(Command::new("kubectl").arg("kustomize").arg(dir)));
    let base = render(&k8s_dir());
    let group = render(&k8s_dir().with_file_name("kubernetes-postgres-group"));
    assert_eq!(base.len(), group.len());
    let is_collector = |d: &&Value| d["kind"] == "StatefulSet";
    for (b, g) in base.iter().zip(&group).filter(|(b, _)| !is_collector(b)) {
        assert_eq!(b, g, "only the collector's StatefulSet changes");
    }
    let sts = group.iter().find(is_collector).unwrap();
    assert_eq!(&through_api_type(sts), sts);
    assert_eq!(sts["spec"]["replicas"], 2);
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    let base_c =
        &base.iter().find(is_collector).unwrap()["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"], base_c["args"], "the same collector command");
    let env = |name: &str| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {}", c["env"]))
            .clone()
    };
    assert_eq!(
        env("RECORDER_STORE")["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "recorder-collector-store", "key": "url"})
    );
    assert_eq!(
        env("RECORDER_STORE_CA")["value"],
        "/etc/recorder/store/ca.pem"
    );
    let data = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .skip_while(|a| *a != "--data")
        .nth(1)
        .and_then(Value::as_str)
        .unwrap()
        .to_string();
    let key_mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "signing-key")
        .unwrap();
    assert_eq!(key_mount["mountPath"], format!("{data}/checkpoint-key.p8"));
    assert_eq!(key_mount["subPath"], "checkpoint-key.p8");
    assert_eq!(key_mount["readOnly"], true);
    let volumes = sts["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    let secret = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))["secret"]["secretName"]
            .clone()
    };
    assert_eq!(secret("signing-key"), "recorder-collector-signing-key");
    assert_eq!(secret("store-ca"), "recorder-collector-store");
    assert_eq!(
        secret("tls"),
        "recorder-collector-tls",
        "the base's volumes stay"
    );
}

/// kubectl takes every manifest, and the kustomization, as objects it would create. Without
/// `--validate=false` kubectl wants the server's OpenAPI schema, which this server does not
/// have: the fields are checked against the API types in
/// `kubernetes_manifests_are_exactly_api_objects` instead.
#[test]
fn kubectl_client_dry_run_accepts_the_manifests() {
    let (port, thread) = discovery_server();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user: {{}}\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    let kubectl = |source: &[&str]| {
        checked(
            Command::new("kubectl")
                .args(["apply", "--dry-run=client", "--validate=false"])
                .args(source)
                .arg("--cache-dir")
                .arg(dir.path().join("cache"))
                .env("KUBECONFIG", &kubeconfig),
        )
    };
    for (file, doc) in manifests() {
        let path = k8s_dir().join(&file);
        let said = kubectl(&["-f", path.to_str().unwrap()]);
        let name = doc["metadata"]["name"].as_str().unwrap();
        assert!(
            said.contains(&format!("/{name} created (dry run)")),
            "{file}: {said}"
        );
    }
    for dir in [
        k8s_dir(),
        k8s_dir().with_file_name("kubernetes-postgres-group"),
    ] {
        let said = kubectl(&["-k", dir.to_str().unwrap()]);
        assert_eq!(
            said.matches("created (dry run)").count(),
            manifests().len() + 1,
            "{}: {said}",
            dir.display()
        );
    }
    let _ = std::net::TcpStream::connect(("127.0.0.1", port))
        .and_then(|mut s| std::io::Write::write_all(&mut s, b"GET /stop HTTP/1.1\r\n\r\n"));
    thread.join().unwrap();
}

// ---- the Debian package -----------------------------------------------------------------------

fn deb_path() -> PathBuf {
    let path = std::env::var_os("RECORDER_DEB").map_or_else(
        || repo_root().join(format!("target/debian/recorder_{VERSION}_amd64.deb")),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "no package at {}: run `cargo xtask deb` (cargo xtask test does)",
        path.display()
    );
    path
}

fn package_status() -> Option<String> {
    let out = output(Command::new("dpkg-query").args(["-W", "-f=${Status}", "recorder"]));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        .filter(|s| !s.contains("not-installed"))
}

/// Purges the package if the test leaves it installed (a failed assertion on the way).
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        if package_status().is_some() {
            let _ = Command::new("dpkg").args(["-P", "recorder"]).output();
        }
    }
}

#[test]
fn debian_package_installs_runs_and_purges_cleanly() {
    require_root();
    let deb = deb_path();
    // Never touch a developer's own installation: this test only runs where nothing of the
    // package is present, and leaves it so.
    let installs = [
        "/usr/bin/recorder",
        "/etc/recorder",
        "/lib/systemd/system/recorder-agent.service",
        "/lib/systemd/system/recorder-collector.service",
        "/usr/share/doc/recorder",
    ];
    let present: Vec<_> = installs.iter().filter(|p| Path::new(p).exists()).collect();
    assert!(
        package_status().is_none() && present.is_empty(),
        "the recorder package ({:?}) or its files {present:?} are on this machine already; \
         this test installs and purges its own package: remove them first",
        package_status()
    );
    let _purge = Purge;

    checked(Command::new("dpkg").arg("-i").arg(&deb));
    let files: Vec<String> = checked(Command::new("dpkg").args(["-L", "recorder"]))
        .lines()
        .map(str::to_string)
        .collect();
    let version = checked(Command::new("/usr/bin/recorder").arg("--version"));
    assert_eq!(version.trim(), format!("recorder {VERSION}"));
    checked(Command::new("/usr/bin/recorder").args(["agent", "--help"]));
    // The units as installed, with the installed binary.
    let units: Vec<PathBuf> = UNITS
        .iter()
        .map(|u| Path::new("/lib/systemd/system").join(u))
        .collect();
    verify_units(&units);
    let conffiles = checked(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "recorder"]));
    for conf in ["/etc/recorder/agent.toml", "/etc/recorder/collector.env"] {
        assert!(
            conffiles.contains(conf),
            "{conf} is not a conffile: {conffiles}"
        );
        assert!(Path::new(conf).exists(), "{conf}");
    }
    assert!(Path::new("/usr/share/doc/recorder/deploy.md").exists());

    // Remove: the program and units go, the configuration stays (Debian's rule for conffiles).
    checked(Command::new("dpkg").args(["-r", "recorder"]));
    assert!(!Path::new("/usr/bin/recorder").exists());
    assert!(
        units.iter().all(|u| !u.exists()),
        "units left after dpkg -r"
    );
    assert!(
        Path::new("/etc/recorder/agent.toml").exists(),
        "conffile removed by dpkg -r"
    );
    // Purge: nothing at all is left.
    checked(Command::new("dpkg").args(["-P", "recorder"]));
    assert_eq!(package_status(), None);
    let left: Vec<_> = files
        .iter()
        .filter(|f| f.starts_with("/etc/recorder") || f.contains("recorder"))
        .filter(|f| Path::new(f).exists())
        .collect();
    assert!(left.is_empty(), "left after dpkg -P: {left:?}");
    assert!(
        !Path::new("/etc/recorder").exists(),
        "/etc/recorder left after dpkg -P"
    );
}

// ---- the container image ----------------------------------------------------------------------

/// Runs the agent from the image as the DaemonSet does (`caps`: the exact capabilities; else
/// `--privileged`) and checks that a process started on the host in a watched cgroup is
/// recorded with its exact argv and identity.
fn agent_in_container_records_a_host_process(caps: bool) {
    require_root();
    let image = image();
    ensure_host_tracefs();
    let cg = Cgroup::new("image");
    let out = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let name = format!("recorder-test-{}-{}", std::process::id(), u8::from(caps));
    let security: &[&str] = if caps {
        &["--cap-drop=all", podman::DAEMONSET_CAPS]
    } else {
        &["--privileged"]
    };
    let run = output(
        Command::new("podman")
            .args(["run", "-d", "--name", &name, "--pid=host", "--network=host"])
            .args(ulimits())
            .args(security)
            .args(["-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro"])
            .args(["-v", "/sys/kernel/btf:/sys/kernel/btf:ro"])
            .args(["-v", "/sys/kernel/tracing:/sys/kernel/tracing:ro"])
            .arg("-v")
            .arg(format!("{}:/out", out.path().display()))
            .args(["-e", "RECORDER_LOG=debug", &image, "agent"])
            .args(["--identity", &cg.identity_flag("test")])
            .args(["--jsonl", "/out/records.jsonl", "--metrics-addr", &metrics]),
    );
    let container = Container(name);
    assert!(
        run.status.success(),
        "podman run failed ({}): {}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let start = Instant::now();
    while !http_get(&metrics, "/readyz").is_ok_and(|(code, _)| code == 200) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the agent in the container was not ready in 60 s; its log:\n{}",
            container.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let want = ["/bin/echo", "recorded from the host", "--by", "the image"];
    let ran = cg.run(want[0], &want[1..]);
    assert!(ran.status.success());
    let jsonl = out.path().join("records.jsonl");
    let start = Instant::now();
    loop {
        let records = read_jsonl(&jsonl);
        if let Some(exec) = records
            .iter()
            .find(|r| r["kind"] == "exec" && argv(r) == want)
        {
            assert_eq!(exec["identity"], "test", "{exec}");
            assert_eq!(exec["exe"], "/usr/bin/echo", "{exec}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no exec record of {want:?}; records:\n{}\nthe agent's log:\n{}",
            dump(&records),
            container.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn image_runs_the_agent_with_the_daemonsets_capabilities_and_privileged() {
    // One after the other: two agents at once would record everything twice.
    agent_in_container_records_a_host_process(true);
    agent_in_container_records_a_host_process(false);
}
