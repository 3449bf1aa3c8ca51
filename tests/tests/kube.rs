//! End-to-end: kubectl commands (from their argv) and Kubernetes API calls (from the TLS
//! plaintext: kubectl's own Go `crypto/tls` over HTTP/2, Python's `ssl` and curl over OpenSSL)
//! against a local HTTPS API server, attributed to the process, identity and session.
use std::process::{Command, Output};

use recorder_tests::{
    Agent, Cgroup, dump,
    kube_api::{KubeApi, Served},
};
use serde_json::Value;

/// Runs `kubectl --kubeconfig K ARGS` inside `cg`; returns its pid and output.
fn kubectl(cg: &Cgroup, api: &KubeApi, args: &[&str]) -> (u32, Output) {
    let mut cmd = cg.command("/usr/bin/kubectl");
    cmd.arg("--kubeconfig")
        .arg(api.kubeconfig())
        .args(args)
        .env("KUBECACHEDIR", api.cache_dir());
    spawn(cmd)
}

fn spawn(mut cmd: Command) -> (u32, Output) {
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    (pid, out)
}

/// The `k8s` records of `pid` with this source.
fn k8s_of<'a>(records: &'a [Value], pid: u32, source: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["kind"] == "k8s" && r["pid"] == pid && r["source"] == source)
        .collect()
}

/// (method, path, status) of API records, to compare with what the server served.
fn calls(records: &[&Value]) -> Vec<(String, String, u64)> {
    records
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_string(),
                r["path"].as_str().unwrap().to_string(),
                r["status"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn served(requests: &[Served], user_agent_has: &str) -> Vec<(String, String, u64)> {
    requests
        .iter()
        .filter(|s| s.user_agent.contains(user_agent_has))
        .map(|s| (s.method.clone(), s.target.clone(), s.status as u64))
        .collect()
}

/// The one record of `pid` matching method and path prefix.
fn call<'a>(api: &[&'a Value], method: &str, path: &str) -> &'a Value {
    let found: Vec<&&Value> = api
        .iter()
        .filter(|r| r["method"] == method && r["path"].as_str().unwrap().starts_with(path))
        .collect();
    assert_eq!(found.len(), 1, "{method} {path} in:\n{}", dump_refs(api));
    found[0]
}

fn dump_refs(records: &[&Value]) -> String {
    dump(&records.iter().map(|r| (*r).clone()).collect::<Vec<_>>())
}

#[test]
fn kubectl_commands_and_their_http2_api_calls_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let api = KubeApi::start(dir.path());
    let manifest = dir.path().join("manifest.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: team-a\ndata:\n  mode: fast\n",
    )
    .unwrap();
    let cg = Cgroup::new("kubectl");
    let agent = Agent::start(&["--identity", &cg.identity_flag("ops-agent")]);

    let (get, out) = kubectl(&cg, &api, &["get", "pods", "-n", "team-a"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("web-2"));
    let (delete, _) = kubectl(&cg, &api, &["delete", "pod", "web-1", "-n", "team-a"]);
    let (apply, out) = kubectl(&cg, &api, &["apply", "-f", manifest.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("created"));

    let records = agent.wait_for("the three kubectl exits", |r| {
        [get, delete, apply]
            .iter()
            .all(|pid| r.iter().any(|x| x["kind"] == "exit" && x["pid"] == *pid))
    });
    let requests = api.requests();

    // From the argv.
    let command = |pid: u32| {
        let found = k8s_of(&records, pid, "kubectl");
        assert_eq!(found.len(), 1, "{}", dump(&records));
        found[0].clone()
    };
    let (g, d, a) = (command(get), command(delete), command(apply));
    assert_eq!(
        (&g["verb"], &g["resource"], &g["namespace"], &g["name"]),
        (
            &"get".into(),
            &"pods".into(),
            &"team-a".into(),
            &Value::Null
        )
    );
    assert_eq!(
        (&d["verb"], &d["resource"], &d["namespace"], &d["name"]),
        (
            &"delete".into(),
            &"pods".into(),
            &"team-a".into(),
            &"web-1".into()
        )
    );
    assert_eq!(a["verb"], "apply");
    assert_eq!(a["files"], serde_json::json!([manifest.to_str().unwrap()]));
    assert_eq!(
        g["kubeconfig"].as_str(),
        Some(api.kubeconfig().to_str().unwrap())
    );

    // From kubectl's TLS plaintext: every request the server answered, in order, with its
    // status, and nothing else.
    for pid in [get, delete, apply] {
        let exec = records
            .iter()
            .find(|r| r["kind"] == "exec" && r["pid"] == pid)
            .unwrap();
        let api_records = k8s_of(&records, pid, "api");
        for r in &api_records {
            assert_eq!(r["identity"], "ops-agent");
            assert_eq!(r["exec_id"], exec["exec_id"]);
            assert_eq!(r["session"], exec["session"]);
            assert_eq!(r["http"], "2", "{r}");
            assert_eq!(r["tls"], true);
            assert_eq!(r["server"], format!("127.0.0.1:{}", api.port()));
        }
        let _ = api_records;
    }
    let recorded: Vec<(String, String, u64)> = [get, delete, apply]
        .iter()
        .flat_map(|pid| calls(&k8s_of(&records, *pid, "api")))
        .collect();
    assert_eq!(recorded, served(&requests, "kubectl"), "{}", dump(&records));

    let list = call(
        &k8s_of(&records, get, "api"),
        "GET",
        "/api/v1/namespaces/team-a/pods",
    );
    assert_eq!(
        (
            &list["verb"],
            &list["resource"],
            &list["namespace"],
            &list["status"]
        ),
        (
            &"list".into(),
            &"pods".into(),
            &"team-a".into(),
            &200.into()
        )
    );
    let deleted = call(
        &k8s_of(&records, delete, "api"),
        "DELETE",
        "/api/v1/namespaces/team-a/pods/web-1",
    );
    assert_eq!(
        (&deleted["verb"], &deleted["name"], &deleted["status"]),
        (&"delete".into(), &"web-1".into(), &200.into())
    );
    let created = call(
        &k8s_of(&records, apply, "api"),
        "POST",
        "/api/v1/namespaces/team-a/configmaps",
    );
    assert_eq!(
        (&created["verb"], &created["resource"], &created["status"]),
        (&"create".into(), &"configmaps".into(), &201.into())
    );
    // The command's record comes before its API calls.
    let at = |pred: &dyn Fn(&Value) -> bool| records.iter().position(pred).unwrap();
    assert!(
        at(&|r| r["kind"] == "k8s" && r["pid"] == delete && r["source"] == "kubectl")
            < at(&|r| r["kind"] == "k8s" && r["pid"] == delete && r["method"] == "DELETE")
    );
}

#[test]
fn python_ssl_and_curl_api_calls_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let api = KubeApi::start(dir.path());
    let cg = Cgroup::new("k8s-clients");
    let agent = Agent::start(&["--identity", &cg.identity_flag("script-agent")]);

    // Python's http.client over the ssl module (the system libssl), HTTP/1.1.
    let script = format!(
        "import http.client, ssl\n\
         ctx = ssl.create_default_context(cafile={ca:?})\n\
         c = http.client.HTTPSConnection('127.0.0.1', {port}, context=ctx)\n\
         c.request('GET', '/api/v1/namespaces/team-a/pods', headers={{'Authorization': 'Bearer t'}})\n\
         r = c.getresponse(); r.read(); print(r.status)\n\
         c.request('DELETE', '/api/v1/namespaces/team-a/pods/web-2')\n\
         r = c.getresponse(); r.read(); print(r.status)\n",
        ca = api.ca_cert().to_str().unwrap(),
        port = api.port()
    );
    let mut py = cg.command("/usr/bin/python3");
    py.args(["-c", &script]);
    let (python, out) = spawn(py);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200\n200\n");

    // curl over OpenSSL, HTTP/2 (its default with TLS) and HTTP/1.1.
    let url = format!("{}/api/v1/namespaces/team-a/pods/web-1", api.url());
    let mut c2 = cg.command("/usr/bin/curl");
    c2.args([
        "-sS",
        "--http2",
        "--cacert",
        api.ca_cert().to_str().unwrap(),
        &url,
    ]);
    let (curl2, _) = spawn(c2);
    let mut c1 = cg.command("/usr/bin/curl");
    c1.args([
        "-sS",
        "--http1.1",
        "--cacert",
        api.ca_cert().to_str().unwrap(),
        "-X",
        "PATCH",
    ])
    .args([
        "-H",
        "Content-Type: application/merge-patch+json",
        "-d",
        "{}",
        &url,
    ]);
    let (curl1, _) = spawn(c1);

    let records = agent.wait_for("the clients' exits", |r| {
        [python, curl2, curl1]
            .iter()
            .all(|pid| r.iter().any(|x| x["kind"] == "exit" && x["pid"] == *pid))
    });
    let py_calls = k8s_of(&records, python, "api");
    assert_eq!(
        calls(&py_calls),
        [
            ("GET".into(), "/api/v1/namespaces/team-a/pods".into(), 200),
            (
                "DELETE".into(),
                "/api/v1/namespaces/team-a/pods/web-2".into(),
                200
            ),
        ],
        "{}",
        dump(&records)
    );
    assert_eq!(
        (
            &py_calls[0]["verb"],
            &py_calls[0]["resource"],
            &py_calls[0]["http"]
        ),
        (&"list".into(), &"pods".into(), &"1.1".into())
    );
    assert_eq!(
        (&py_calls[1]["verb"], &py_calls[1]["name"]),
        (&"delete".into(), &"web-2".into())
    );
    let got = k8s_of(&records, curl2, "api");
    assert_eq!(got.len(), 1, "{}", dump(&records));
    assert_eq!(
        (
            &got[0]["verb"],
            &got[0]["name"],
            &got[0]["status"],
            &got[0]["http"]
        ),
        (&"get".into(), &"web-1".into(), &200.into(), &"2".into())
    );
    let patched = k8s_of(&records, curl1, "api");
    assert_eq!(patched.len(), 1, "{}", dump(&records));
    assert_eq!(
        (
            &patched[0]["verb"],
            &patched[0]["status"],
            &patched[0]["http"]
        ),
        (&"patch".into(), &200.into(), &"1.1".into())
    );
    for r in py_calls.iter().chain(&got).chain(&patched) {
        assert_eq!(r["identity"], "script-agent");
        assert_eq!(r["tls"], true);
    }
}

#[test]
fn unwatched_kubectl_is_not_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let api = KubeApi::start(dir.path());
    let watched = Cgroup::new("kubectl-watched");
    let unwatched = Cgroup::new("kubectl-unwatched");
    let agent = Agent::start(&["--identity", &watched.identity_flag("ops-agent")]);
    let (pid, _) = kubectl(&unwatched, &api, &["get", "pods", "-n", "team-a"]);
    // Positive control: the same command, watched, is recorded.
    let (control, _) = kubectl(&watched, &api, &["get", "pods", "-n", "team-a"]);
    let records = agent.wait_for("the watched kubectl's list call", |r| {
        r.iter()
            .any(|x| x["pid"] == control && x["source"] == "api" && x["verb"] == "list")
    });
    assert!(
        records.iter().all(|r| r["pid"] != pid),
        "{}",
        dump(&records)
    );
}

/// A second agent started while another one runs (its uprobes already planted in kubectl, where
/// reading the code through a mapping shows them as breakpoints) records kubectl's responses as
/// well as its requests, as the first one does.
#[test]
fn two_agents_started_apart_both_record_kubectl_responses() {
    let dir = tempfile::tempdir().unwrap();
    let api = KubeApi::start(dir.path());
    let cg = Cgroup::new("two-agents");
    let first = Agent::start(&["--identity", &cg.identity_flag("ops-agent")]);
    std::thread::sleep(std::time::Duration::from_secs(5));
    let second = Agent::start_beside(&first, &["--identity", &cg.identity_flag("ops-agent")]);
    let (pid, _) = kubectl(&cg, &api, &["get", "pods", "-n", "team-a"]);
    for (label, agent) in [("first", &first), ("second", &second)] {
        let records = agent.wait_for("kubectl's list call with its status", |r| {
            r.iter().any(|x| {
                x["pid"] == pid && x["source"] == "api" && x["verb"] == "list" && x["status"] == 200
            })
        });
        let api_calls = k8s_of(&records, pid, "api");
        assert!(
            api_calls.iter().all(|r| r["status"].is_u64()),
            "{label} agent: a call without its response:\n{}",
            dump_refs(&api_calls)
        );
    }
}

/// Waits until the agent's log says the Go TLS probes are attached to `path`.
fn wait_for_go_probes(agent: &Agent, path: &std::path::Path) {
    let start = std::time::Instant::now();
    let needle = path.to_str().unwrap();
    while !agent
        .log()
        .lines()
        .any(|l| l.contains("Go TLS plaintext probes attached") && l.contains(needle))
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "no Go TLS probes on {needle}; agent log:\n{}",
            agent.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_go_client_found_at_its_exec_is_hooked_and_never_missed_silently() {
    let dir = tempfile::tempdir().unwrap();
    let api = KubeApi::start(dir.path());
    // A copy is another file (another inode): not the kubectl the agent attached at start.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let copy = bin.join("kubectl");
    std::fs::copy(std::fs::canonicalize("/usr/bin/kubectl").unwrap(), &copy).unwrap();
    let cg = Cgroup::new("go-client");
    let agent = Agent::start(&["--identity", &cg.identity_flag("ops-agent")]);
    let run = |cg: &Cgroup| {
        let mut cmd = cg.command(copy.to_str().unwrap());
        cmd.arg("--kubeconfig")
            .arg(api.kubeconfig())
            .args(["get", "pods", "-n", "team-a"])
            .env("KUBECACHEDIR", api.cache_dir());
        spawn(cmd).0
    };
    let first = run(&cg);
    wait_for_go_probes(&agent, &copy);
    let second = run(&cg);
    let records = agent.wait_for("the second run's list call", |r| {
        r.iter()
            .any(|x| x["pid"] == second && x["source"] == "api" && x["verb"] == "list")
    });
    // The first run raced the agent reading the binary's symbols: its calls are recorded, or a
    // notice says they could not be.
    let first_list = records
        .iter()
        .any(|x| x["pid"] == first && x["source"] == "api" && x["verb"] == "list");
    let first_notice = records
        .iter()
        .any(|x| x["pid"] == first && x["kind"] == "notice" && x["reason"] == "tls_unhooked");
    assert!(first_list || first_notice, "{}", dump(&records));
    let list = k8s_of(&records, second, "api");
    assert!(
        list.iter()
            .any(|r| r["path"] == "/api/v1/namespaces/team-a/pods?limit=500" && r["status"] == 200),
        "{}",
        dump(&records)
    );
}

#[test]
fn a_tls_client_through_an_unhooked_library_gets_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let api = KubeApi::start(dir.path());
    let cg = Cgroup::new("hidden-tls");
    let agent = Agent::start(&["--identity", &cg.identity_flag("script-agent")]);
    // A copy of libssl under a name the agent does not look for, preloaded: curl's TLS then
    // runs through a library without probes, like a statically linked one that exports
    // nothing.
    let hidden = dir.path().join("private-tls.so");
    std::fs::copy("/usr/lib/x86_64-linux-gnu/libssl.so.3", &hidden).unwrap();
    let url = format!("{}/api/v1/namespaces/team-a/pods", api.url());
    let mut curl = cg.command("/usr/bin/curl");
    curl.args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        api.ca_cert().to_str().unwrap(),
        &url,
    ])
    .env("LD_PRELOAD", &hidden);
    let (pid, out) = spawn(curl);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let records = agent.wait_for("a tls_unhooked notice for curl", |r| {
        r.iter()
            .any(|x| x["pid"] == pid && x["kind"] == "notice" && x["reason"] == "tls_unhooked")
    });
    let notice = records
        .iter()
        .find(|x| x["pid"] == pid && x["reason"] == "tls_unhooked")
        .unwrap();
    assert!(
        notice["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{}", api.port())),
        "{notice}"
    );
    assert!(
        k8s_of(&records, pid, "api").is_empty(),
        "{}",
        dump(&records)
    );
}

/// Node carries OpenSSL inside its own executable and exports its entry points: the agent
/// attaches to the executable as to a library, for every process before it is ready (`all`:
/// node is on its PATH), or for each watched process at its exec (`watched`: the client waits
/// a moment first, as attaching takes milliseconds, more while other agents let go of theirs).
#[test]
fn node_with_openssl_inside_its_executable_is_recorded() {
    for scope in ["all", "watched"] {
        let dir = tempfile::tempdir().unwrap();
        let api = KubeApi::start(dir.path());
        let cg = Cgroup::new(&format!("node-{scope}"));
        let args = [
            "--identity",
            &cg.identity_flag("script-agent"),
            "--tls-probes",
            scope,
        ];
        let agent = if scope == "watched" {
            Agent::start_alone(&args)
        } else {
            Agent::start(&args)
        };
        let script = format!(
            "const https = require('https'); const fs = require('fs');\n\
             const ca = fs.readFileSync({ca:?});\n\
             function call(method, path, next) {{\n\
               const req = https.request({{host: '127.0.0.1', port: {port}, method, path, ca}}, r => {{\n\
                 r.resume(); r.on('end', () => {{ console.log(r.statusCode); next(); }}); }});\n\
               req.end(); }}\n\
             setTimeout(() => call('GET', '/api/v1/namespaces/team-a/pods', () =>\n\
               call('DELETE', '/api/v1/namespaces/team-a/pods/web-2', () => {{}})), {wait});\n",
            port = api.port(),
            ca = api.ca_cert().to_str().unwrap(),
            wait = if scope == "watched" { 1000 } else { 0 }
        );
        let mut node = cg.command("/usr/bin/node");
        node.args(["-e", &script]);
        let (pid, out) = spawn(node);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200\n200\n");
        let records = agent.wait_for("node's two calls", |r| {
            k8s_of(r, pid, "api").len() >= 2 || r.iter().any(|x| x["kind"] == "notice")
        });
        let api_records = k8s_of(&records, pid, "api");
        assert_eq!(
            calls(&api_records),
            [
                ("GET".into(), "/api/v1/namespaces/team-a/pods".into(), 200),
                (
                    "DELETE".into(),
                    "/api/v1/namespaces/team-a/pods/web-2".into(),
                    200
                ),
            ],
            "{scope}: {}\nthe agent's log:\n{}",
            dump(&records),
            agent.log()
        );
        let verbs: Vec<&Value> = api_records.iter().map(|r| &r["verb"]).collect();
        assert_eq!(verbs, ["list", "delete"]);
        assert!(
            api_records
                .iter()
                .all(|r| r["tls"] == true && r["http"] == "1.1" && r["identity"] == "script-agent"),
            "{}",
            dump(&records)
        );
        assert!(
            records.iter().all(|r| r["kind"] != "notice"),
            "{scope}: {}",
            dump(&records)
        );
    }
}

/// An agent watching `cg` with `--tls-probes watched`, alone among this binary's agents: these
/// tests depend on how soon it attaches a process's probes.
fn agent_with_watched_tls_probes(cg: &Cgroup) -> Agent {
    Agent::start_alone(&[
        "--identity",
        &cg.identity_flag("script-agent"),
        "--tls-probes",
        "watched",
    ])
}

/// (pid, path, status, 0 when none came) of every `source: api` record, in order.
fn api_calls_by_pid(records: &[Value]) -> Vec<(u64, String, u64)> {
    records
        .iter()
        .filter(|r| r["source"] == "api")
        .map(|r| {
            (
                r["pid"].as_u64().unwrap(),
                r["path"].as_str().unwrap().to_string(),
                r["status"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn with_tls_probes_for_watched_processes_only_a_client_and_its_fork_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let api = KubeApi::start(dir.path());
    let cg = Cgroup::new("tls-watched");
    let agent = agent_with_watched_tls_probes(&cg);
    // The client maps libssl (import ssl), then waits before its first call: the agent attaches
    // its probes meanwhile. Its forked child has no probes of its own until the agent, told of
    // the fork, attaches them: the child waits too.
    let script = format!(
        "import http.client, ssl, os, time\n\
         time.sleep(0.5)\n\
         def call(path):\n\
         \x20   ctx = ssl.create_default_context(cafile={ca:?})\n\
         \x20   c = http.client.HTTPSConnection('127.0.0.1', {port}, context=ctx)\n\
         \x20   c.request('GET', path); r = c.getresponse(); r.read(); return r.status\n\
         print(call('/api/v1/namespaces/team-a/pods'))\n\
         child = os.fork()\n\
         if child == 0:\n\
         \x20   time.sleep(0.5); print(call('/api/v1/namespaces/team-a/pods/web-1')); os._exit(0)\n\
         os.waitpid(child, 0)\n",
        ca = api.ca_cert().to_str().unwrap(),
        port = api.port()
    );
    let mut py = cg.command("/usr/bin/python3");
    py.args(["-u", "-c", &script]);
    let (pid, out) = spawn(py);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200\n200\n");
    let records = agent.wait_for("both calls", |r| {
        r.iter().filter(|x| x["source"] == "api").count() >= 2
    });
    let calls = api_calls_by_pid(&records);
    assert_eq!(
        calls.len(),
        2,
        "{}\nthe agent's log:\n{}",
        dump(&records),
        agent.log()
    );
    assert_eq!(
        calls[0],
        (pid as u64, "/api/v1/namespaces/team-a/pods".into(), 200)
    );
    assert_ne!(calls[1].0, pid as u64, "the second call is the child's");
    assert_eq!(calls[1].1, "/api/v1/namespaces/team-a/pods/web-1");
    assert_eq!(calls[1].2, 200);
    assert!(
        records.iter().all(|r| r["kind"] != "notice"),
        "{}",
        dump(&records)
    );
}

#[test]
fn with_tls_probes_for_watched_processes_short_clients_in_a_row_are_all_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let api = KubeApi::start(dir.path());
    let cg = Cgroup::new("tls-row");
    let agent = agent_with_watched_tls_probes(&cg);
    // Each client's probes are detached when it exits, while the next one starts: detaching
    // must not hold up attaching the next client's probes (the kernel takes about 100 ms to
    // release each uprobe, under the lock attaching needs).
    let paths: Vec<String> = (1..=5)
        .map(|n| format!("/api/v1/namespaces/team-a/pods?limit={n}"))
        .collect();
    let mut pids = Vec::new();
    for path in &paths {
        let script = format!(
            "import http.client, ssl, time\n\
             time.sleep(0.5)\n\
             ctx = ssl.create_default_context(cafile={ca:?})\n\
             c = http.client.HTTPSConnection('127.0.0.1', {port}, context=ctx)\n\
             c.request('GET', '{path}')\n\
             r = c.getresponse(); r.read(); print(r.status)\n",
            ca = api.ca_cert().to_str().unwrap(),
            port = api.port()
        );
        let mut py = cg.command("/usr/bin/python3");
        py.args(["-u", "-c", &script]);
        let (pid, out) = spawn(py);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200\n");
        pids.push(pid);
    }
    let records = agent.wait_for("every call", |r| {
        r.iter().filter(|x| x["source"] == "api").count() >= paths.len()
            || r.iter().any(|x| x["kind"] == "notice")
    });
    let calls = api_calls_by_pid(&records);
    let expected: Vec<(u64, String, u64)> = pids
        .iter()
        .zip(&paths)
        .map(|(pid, path)| (*pid as u64, path.clone(), 200))
        .collect();
    assert_eq!(
        calls,
        expected,
        "{}\nthe agent's log:\n{}",
        dump(&records),
        agent.log()
    );
    assert!(
        records.iter().all(|r| r["kind"] != "notice"),
        "{}",
        dump(&records)
    );
}
