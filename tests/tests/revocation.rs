//! Revoking certificates (`recorder pki revoke`, `recorder collector --tls-crl`) while the
//! collector runs: the real agent (eBPF) loses its ingest stream and keeps its records in its
//! spool until it has a new certificate; an operator loses an open watch, the console login,
//! the token and the certificate's own access; an older list put back is refused. Debian's
//! `openssl` reads and verifies the lists the CA signs; `curl` speaks to the console.
mod collector_support;

use std::{
    io::Read as _,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use collector_support::*;
use recorder_tests::{Agent, Cgroup, http_get};
use serde_json::Value;

fn openssl(args: &[&str]) -> String {
    let o = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl (Debian package openssl: run `cargo xtask setup`)");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The list as Debian's openssl reads it, after checking its signature against the CA.
fn crl_text(pki: &Pki) -> String {
    let text = openssl(&[
        "crl",
        "-in",
        &pki.path("crl.pem"),
        "-CAfile",
        &pki.path("ca.pem"),
        "-noout",
        "-text",
    ]);
    assert!(text.contains("verify OK"), "{text}");
    text
}

/// The serial number of `NAME.pem` as openssl prints it (upper-case hex).
fn serial(dir: &Path, name: &str) -> String {
    let cert = dir.join(format!("{name}.pem"));
    openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-serial"])
        .trim()
        .strip_prefix("serial=")
        .unwrap()
        .to_string()
}

/// A collector given the CA's list (`--tls-crl`) and `extra`, with its metrics address.
fn with_list(pki: &Pki, dir: &Path, extra: &[&str]) -> (Collector, String) {
    let (metrics, list) = (format!("127.0.0.1:{}", free_port()), pki.path("crl.pem"));
    let mut args = vec!["--tls-crl", &list, "--metrics-addr", &metrics];
    args.extend_from_slice(extra);
    (Collector::start(pki, &dir.join("data"), 0, &args), metrics)
}

/// Waits until the collector has taken `n` new lists since it started (it looks every 2 s).
fn wait_for_lists(col: &Collector, n: usize) {
    assert!(
        wait_for(Duration::from_secs(15), || col
            .log()
            .matches("new revocation list in force")
            .count()
            >= n),
        "the collector did not take the new list:\n{}",
        col.log()
    );
}

fn metric(addr: &str, name: &str) -> Option<u64> {
    let (_, body) = http_get(addr, "/metrics").ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn exec_with_last_arg(lines: &[String], arg: &str) -> usize {
    lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| {
            r["kind"] == "exec" && r["argv"].as_array().and_then(|a| a.last()) == Some(&arg.into())
        })
        .count()
}

#[test]
fn a_revoked_agent_loses_its_stream_and_keeps_its_records_until_it_has_a_new_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let first_list = crl_text(&pki);
    assert!(
        first_list.contains("No Revoked Certificates"),
        "{first_list}"
    );
    let (col, metrics) = with_list(&pki, tmp.path(), &[]);
    assert!(
        col.log().contains("revocation list in force"),
        "{}",
        col.log()
    );
    let cg = Cgroup::new("revocation");
    let spool = tmp.path().join("spool");
    let agent_with = |dir: &Path| {
        let (cert, key) = (dir.join("web-1.pem"), dir.join("web-1-key.pem"));
        let mut args = vec![
            "--identity".to_string(),
            cg.identity_flag("revoked-agent"),
            "--host".into(),
            "web-1".into(),
            "--spool".into(),
            spool.to_str().unwrap().into(),
        ];
        args.extend(pki.client_args_with(col.port, cert.to_str().unwrap(), key.to_str().unwrap()));
        Agent::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let agent = agent_with(&pki.dir);
    assert!(cg.run("/bin/echo", &["before-revocation"]).status.success());
    assert!(
        wait_for(Duration::from_secs(15), || exec_with_last_arg(
            &export(&pki, col.port),
            "before-revocation"
        ) == 1),
        "the first command did not reach the collector:\n{}",
        agent.log()
    );

    // The host's key is stolen: its certificate is revoked.
    let said = pki.revoke("web-1", "key-compromise");
    assert!(said.starts_with("revoked web-1 (serial "), "{said}");
    assert!(said.contains("names 1 certificate"), "{said}");
    let list = crl_text(&pki);
    assert!(
        list.contains(&format!("Serial Number: {}", serial(&pki.dir, "web-1"))),
        "{list}"
    );
    assert!(list.contains("Key Compromise"), "{list}");
    assert!(!list.contains(&serial(&pki.dir, "alice")), "{list}");
    wait_for_lists(&col, 1);
    assert_eq!(
        metric(&metrics, "recorder_collector_revoked_certificates"),
        Some(1)
    );

    // The agent records the next command and cannot deliver it: the collector ends its stream
    // and refuses it again at each retry; the record stays in its spool.
    assert!(cg.run("/bin/echo", &["after-revocation"]).status.success());
    agent.wait_for("the command run after the revocation", |r| {
        r.iter().any(|x| {
            x["kind"] == "exec"
                && x["argv"].as_array().and_then(|a| a.last()) == Some(&"after-revocation".into())
        })
    });
    assert!(
        wait_for(Duration::from_secs(20), || agent
            .log()
            .contains("the client certificate is revoked")),
        "the agent did not report the refusal:\n{}",
        agent.log()
    );
    assert!(col.log().contains("revoked"), "{}", col.log());
    let stored = export(&pki, col.port);
    assert_eq!(exec_with_last_arg(&stored, "after-revocation"), 0);
    assert_eq!(exec_with_last_arg(&stored, "before-revocation"), 1);
    agent.stop();

    // A new certificate for the host, from the same CA: the agent, started again on the same
    // spool, delivers what waited there, once.
    let reissued = tmp.path().join("reissued");
    std::fs::create_dir(&reissued).unwrap();
    for f in ["ca.pem", "ca-key.pem"] {
        std::fs::copy(pki.dir.join(f), reissued.join(f)).unwrap();
    }
    let o = run(&[
        "pki",
        "issue",
        "--dir",
        reissued.to_str().unwrap(),
        "--role",
        "agent",
        "--name",
        "web-1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(serial(&reissued, "web-1"), serial(&pki.dir, "web-1"));
    let agent = agent_with(&reissued);
    assert!(
        wait_for(Duration::from_secs(20), || exec_with_last_arg(
            &export(&pki, col.port),
            "after-revocation"
        ) == 1),
        "the spooled record did not arrive with the new certificate:\n{}",
        agent.log()
    );
    let stored = export(&pki, col.port);
    assert_eq!(exec_with_last_arg(&stored, "before-revocation"), 1);
    agent.stop();
    col.stop();
}

/// A long-running client (`recorder watch`, `curl -N` of the console's live view) whose output
/// is collected as it comes.
struct Streamed {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Streamed {
    fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let (mut stdout, sink) = (child.stdout.take().unwrap(), out.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self { child, out }
    }

    fn watch(pki: &Pki, port: u16, name: &str) -> Self {
        Self::spawn(
            Command::new(recorder())
                .arg("watch")
                .args(pki.client_args(port, name)),
        )
    }

    fn saw(&self, text: &str) -> bool {
        self.out.lock().unwrap().contains(text)
    }

    /// Waits for the client to end; its stderr (None: still running after 10 s).
    fn ended(&mut self) -> Option<String> {
        if !wait_for(Duration::from_secs(10), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        }) {
            return None;
        }
        let mut why = String::new();
        self.child.stderr.take()?.read_to_string(&mut why).ok()?;
        Some(why)
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl` to the console: (HTTP status, body).
fn curl(pki: &Pki, ui: u16, path: &str, extra: &[&str]) -> (String, String) {
    let o = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            &pki.path("ca.pem"),
            "-w",
            "\n%{http_code}",
        ])
        .args(extra)
        .arg(format!("https://127.0.0.1:{ui}{path}"))
        .output()
        .expect("curl (Debian package curl: run `cargo xtask setup`)");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

#[test]
fn a_revoked_operator_loses_the_open_watch_the_console_login_the_token_and_the_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    pki.issue("operator", "bob");
    let ui = free_port();
    let (col, metrics) = with_list(
        &pki,
        tmp.path(),
        &["--ui-listen", &format!("127.0.0.1:{ui}")],
    );
    std::fs::copy(pki.dir.join("crl.pem"), tmp.path().join("first-crl.pem")).unwrap();
    let (alice_watch, mut bob_watch) = (
        Streamed::watch(&pki, col.port, "alice"),
        Streamed::watch(&pki, col.port, "bob"),
    );
    let line = |n: usize, text: &str| {
        format!(
            r#"{{"kind":"exec","time":"2026-12-05T10:{:02}:{:02}Z","host":"web-1","identity":"claude","session":"s1","pid":{n},"exec_id":"x{n}","argv":["echo","{text}"],"text":"echo {text}"}}"#,
            n / 60,
            n % 60
        )
    };
    // Records until both watches see one: then both streams are open.
    let mut n = 0;
    assert!(
        wait_for(Duration::from_secs(20), || {
            n += 1;
            let o = ship(
                &pki,
                col.port,
                tmp.path(),
                &format!("probe{n}"),
                &[line(n, &format!("probe-{n}"))],
                &[],
            );
            assert!(o.status.success(), "{}", stderr(&o));
            alice_watch.saw("probe-") && bob_watch.saw("probe-")
        }),
        "the watches did not start"
    );

    // Bob logs in to the console with a token, and with his certificate.
    let token = pki.token("bob", &[]);
    let jar = tmp.path().join("cookies");
    let jar = jar.to_str().unwrap();
    let (code, _) = curl(
        &pki,
        ui,
        "/login",
        &["-c", jar, "--data-urlencode", &format!("token={token}")],
    );
    assert_eq!(code, "303");
    assert_eq!(curl(&pki, ui, "/api/sessions", &["-b", jar]).0, "200");
    let bob_cert = [
        "--cert",
        &pki.path("bob.pem"),
        "--key",
        &pki.path("bob-key.pem"),
    ]
    .map(String::from);
    let bob_cert: Vec<&str> = bob_cert.iter().map(String::as_str).collect();
    assert_eq!(curl(&pki, ui, "/api/sessions", &bob_cert).0, "200");
    // ...and keeps the live view of session s1 open.
    let mut bob_live = Streamed::spawn(
        Command::new("curl")
            .args(["-sSN", "--cacert", &pki.path("ca.pem"), "-b", jar])
            .arg(format!(
                "https://127.0.0.1:{ui}/api/live?host=web-1&session=s1"
            )),
    );
    // Records of the session until the view shows one: then it is open.
    let mut n = 100;
    assert!(
        wait_for(Duration::from_secs(20), || {
            n += 1;
            let o = ship(
                &pki,
                col.port,
                tmp.path(),
                &format!("live{n}"),
                &[line(n, "live-before")],
                &[],
            );
            assert!(o.status.success(), "{}", stderr(&o));
            bob_live.saw("live-before")
        }),
        "the live view did not start"
    );

    // Bob leaves the team.
    let said = pki.revoke("bob", "affiliation-changed");
    assert!(said.starts_with("revoked bob"), "{said}");
    assert!(crl_text(&pki).contains("Affiliation Changed"));
    wait_for_lists(&col, 1);

    // His watch ends at the next record; Alice's goes on.
    let o = ship(
        &pki,
        col.port,
        tmp.path(),
        "after",
        &[line(1000, "after-revocation")],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(wait_for(Duration::from_secs(10), || alice_watch
        .saw("after-revocation")));
    let why = bob_watch.ended().expect("bob's watch is still open");
    assert!(why.contains("revoked"), "{why}");
    assert!(!bob_watch.child.wait().unwrap().success());
    assert!(!bob_watch.saw("after-revocation"));
    // The console's live view ends too, saying why.
    bob_live.ended().expect("bob's live view is still open");
    let seen = bob_live.out.lock().unwrap().clone();
    assert!(
        seen.contains("event: refused") && seen.contains("revoked"),
        "{seen}"
    );
    assert!(!seen.contains("after-revocation"), "{seen}");

    // The console: the login made before ends, the token and the certificate are refused.
    let (code, body) = curl(&pki, ui, "/api/sessions", &["-b", jar]);
    assert_eq!(code, "403", "{body}");
    assert!(
        body.contains("the console session ended") && body.contains("revoked"),
        "{body}"
    );
    let (code, body) = curl(
        &pki,
        ui,
        "/login",
        &["--data-urlencode", &format!("token={token}")],
    );
    assert_eq!(code, "401", "{body}");
    assert!(body.contains("revoked"), "{body}");
    let bearer = format!("Authorization: Bearer {token}");
    let (code, body) = curl(&pki, ui, "/api/sessions", &["-H", &bearer]);
    assert_eq!(
        (code.as_str(), body.contains("revoked")),
        ("403", true),
        "{body}"
    );
    let (code, body) = curl(&pki, ui, "/api/sessions", &bob_cert);
    assert_eq!(
        (code.as_str(), body.contains("revoked")),
        ("403", true),
        "{body}"
    );
    // gRPC: refused with the reason; Alice is not affected.
    let sessions = |name: &str| {
        let mut args = vec!["sessions".to_string()];
        args.extend(pki.client_args(col.port, name));
        run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let o = sessions("bob");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("revoked"), "{}", stderr(&o));
    assert!(sessions("alice").status.success());
    let alice_token = pki.token("alice", &[]);
    let bearer = format!("Authorization: Bearer {alice_token}");
    assert_eq!(curl(&pki, ui, "/api/sessions", &["-H", &bearer]).0, "200");

    // The list from before the revocation put back (older): refused, Bob stays revoked.
    std::fs::copy(tmp.path().join("first-crl.pem"), pki.dir.join("crl.new")).unwrap();
    std::fs::rename(pki.dir.join("crl.new"), pki.dir.join("crl.pem")).unwrap();
    assert!(
        wait_for(Duration::from_secs(15), || metric(
            &metrics,
            "recorder_collector_revocation_list_errors_total"
        ) == Some(1)),
        "{}",
        col.log()
    );
    assert!(
        col.log().contains("lower than the list's in force"),
        "{}",
        col.log()
    );
    assert!(!sessions("bob").status.success());
    assert_eq!(
        metric(&metrics, "recorder_collector_revoked_certificates"),
        Some(1)
    );
    drop(alice_watch);
    col.stop();
}
