//! `cargo xtask demo`: the main job on one machine. Makes a PKI, starts a collector on the
//! embedded store and an agent recording a demo identity (a cgroup made for it) into it over
//! mutual TLS, runs a short scripted session inside the cgroup, then shows the session as an
//! operator sees it (`recorder replay`) and checks the store's integrity (`recorder verify`).
//! Without `--once` it keeps recording until Ctrl-C, printing each new record.
use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::util::{is_root, recorder_bin, root};

const IDENTITY: &str = "demo-agent";
const METRICS: &str = "127.0.0.1:9464";
const COLLECTOR_ADDR: &str = "127.0.0.1:7443";
const CONSOLE_ADDR: &str = "127.0.0.1:7444";
const HOST: &str = "demo-host";

/// What the demo "AI agent" runs: commands, and kubectl against a local Kubernetes API server
/// (its argv and its API calls inside TLS are recorded).
const SESSION: &str = r#"cd /tmp
ls / | head -3
echo "hello from the demo agent" > /tmp/recorder-demo.txt
cat /tmp/recorder-demo.txt
id -un
sh -c 'exit 3'
kubectl get pods -n team-a
kubectl delete pod web-1 -n team-a
true"#;

fn wait_ready(child: &mut Child, what: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Some(status) = child.try_wait()? {
            bail!("the {what} exited ({status}) before it was ready");
        }
        if let Ok(mut s) = std::net::TcpStream::connect(METRICS) {
            let _ = s.write_all(b"GET /readyz HTTP/1.1\r\n\r\n");
            let mut r = String::new();
            let _ = s.read_to_string(&mut r);
            if r.starts_with("HTTP/1.1 200") {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the {what} was not ready after 60 s")
}

/// One line per record, as an operator reads a session.
fn show(line: &str) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        return;
    };
    let time = v["time"].as_str().unwrap_or("").get(11..23).unwrap_or("");
    let what = match v["kind"].as_str().unwrap_or("") {
        "exec" => format!("$ {}", v["text"].as_str().unwrap_or("")),
        "exit" => match v["exit_code"].as_u64() {
            Some(code) => format!(
                "  exit {code} after {:.1} ms",
                v["duration_ms"].as_f64().unwrap_or(0.0)
            ),
            None => format!("  killed by {}", v["signal_name"].as_str().unwrap_or("?")),
        },
        kind => format!(
            "[{kind}] {}",
            v["reason"].as_str().or(v["text"].as_str()).unwrap_or("")
        ),
    };
    println!(
        "{time}  {:<11} pid {:<7} {what}",
        v["identity"].as_str().unwrap_or(""),
        v["pid"]
    );
}

/// Runs `recorder ARGS`, failing with its output when it fails.
fn recorder(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(recorder_bin())
        .args(args)
        .output()
        .context("running recorder")?;
    if !out.status.success() {
        bail!(
            "recorder {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn run(once: bool) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the demo loads the agent's eBPF programs and creates a cgroup: run it as root");
    }
    let dir = root().join("demo");
    // A fresh demo every time: new PKI, empty store, empty spool.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let pki = dir.join("pki");
    let p = |name: &str| pki.join(name).to_string_lossy().into_owned();
    let pki_dir = pki.to_string_lossy().into_owned();
    println!(
        "== making a CA, a collector certificate, an agent certificate for host {HOST} and an operator certificate"
    );
    recorder(&["pki", "init", "--dir", &pki_dir])?;
    recorder(&[
        "pki", "issue", "--dir", &pki_dir, "--role", "agent", "--name", HOST,
    ])?;
    recorder(&[
        "pki",
        "issue",
        "--dir",
        &pki_dir,
        "--role",
        "operator",
        "--name",
        "demo-operator",
    ])?;

    let data = dir.join("data");
    println!(
        "== starting the collector on {COLLECTOR_ADDR} (embedded store in {})",
        data.display()
    );
    let mut collector = Command::new(recorder_bin())
        .args([
            "collector",
            "--listen",
            COLLECTOR_ADDR,
            "--data",
            data.to_str().context("path")?,
        ])
        .args([
            "--tls-ca",
            &p("ca.pem"),
            "--tls-crl",
            &p("crl.pem"),
            "--tls-cert",
            &p("collector.pem"),
            "--tls-key",
            &p("collector-key.pem"),
        ])
        .args(["--ui-listen", CONSOLE_ADDR])
        .stderr(std::fs::File::create(dir.join("collector.log"))?)
        .spawn()
        .context("starting the collector")?;

    let jsonl = dir.join("records.jsonl");
    let cgroup = recorder_tests::cgroup_v2_mount().join("recorder-demo");
    if !cgroup.exists() {
        std::fs::create_dir(&cgroup).with_context(|| format!("creating {}", cgroup.display()))?;
    }
    println!(
        "== starting the agent: identity {IDENTITY} = cgroup {}",
        cgroup.display()
    );
    let mut agent = Command::new(recorder_bin())
        .args([
            "agent",
            "--identity",
            &format!("{IDENTITY}={}", cgroup.display()),
            "--host",
            HOST,
        ])
        .args([
            "--jsonl",
            jsonl.to_str().context("path")?,
            "--metrics-addr",
            METRICS,
        ])
        .args([
            "--collector",
            &format!("https://{COLLECTOR_ADDR}"),
            "--spool",
            dir.join("spool").to_str().context("path")?,
        ])
        .args([
            "--tls-ca",
            &p("ca.pem"),
            "--tls-cert",
            &p(&format!("{HOST}.pem")),
            "--tls-key",
            &p(&format!("{HOST}-key.pem")),
        ])
        .stderr(std::fs::File::create(dir.join("agent.log"))?)
        .spawn()
        .context("starting the agent")?;
    let operator = [
        "--collector".to_string(),
        format!("https://{COLLECTOR_ADDR}"),
        "--tls-ca".into(),
        p("ca.pem"),
        "--tls-cert".into(),
        p("demo-operator.pem"),
        "--tls-key".into(),
        p("demo-operator-key.pem"),
    ];
    let result = demo(&mut agent, &cgroup, &jsonl, once, &operator);
    // SAFETY: kill(2) on our own children; SIGTERM makes both drain and flush.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let _ = agent.wait();
    unsafe { libc::kill(collector.id() as i32, libc::SIGTERM) };
    let _ = collector.wait();
    if result.is_ok() {
        println!("== offline integrity check of the stored log:");
        print!(
            "{}",
            recorder(&["verify", "--data", data.to_str().context("path")?])?
        );
        println!(
            "== everything is in {} (agent.log, collector.log, records.jsonl, data/)",
            dir.display()
        );
    }
    result
}

fn demo(
    agent: &mut Child,
    cgroup: &Path,
    jsonl: &Path,
    once: bool,
    operator: &[String],
) -> anyhow::Result<()> {
    wait_ready(agent, "agent")?;
    println!(
        "== the agent is ready (http://{METRICS}/metrics); running a demo session inside the cgroup:"
    );
    let procs = cgroup.join("cgroup.procs");
    let kube_dir = jsonl.with_file_name("kube-api");
    std::fs::create_dir_all(&kube_dir)?;
    let api = recorder_tests::kube_api::KubeApi::start(&kube_dir);
    let mut session = Command::new("/bin/bash");
    session
        .args(["-c", SESSION])
        .env("KUBECONFIG", api.kubeconfig())
        .env("KUBECACHEDIR", api.cache_dir())
        .stdout(Stdio::null());
    // SAFETY: only writes a file between fork and exec.
    unsafe {
        session.pre_exec(move || std::fs::write(&procs, b"0"));
    }
    let status = session.status()?;
    println!("   (the session ended with {status})");
    std::thread::sleep(Duration::from_millis(500));
    // The session as an operator sees it, from the collector.
    let wait = Instant::now();
    let session = loop {
        let mut args = vec!["sessions", "--identity", IDENTITY, "--format", "jsonl"];
        args.extend(operator.iter().map(String::as_str));
        let listed = recorder(&args)?;
        let first = listed
            .lines()
            .next()
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
        if let Some(id) = first
            .as_ref()
            .and_then(|v| v["session"].as_str().or(v["id"].as_str()))
        {
            break id.to_string();
        }
        if wait.elapsed() > Duration::from_secs(15) {
            bail!(
                "the collector has no session of {IDENTITY} after 15 s (see demo/agent.log and demo/collector.log)"
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    std::thread::sleep(Duration::from_millis(500));
    println!("== recorder replay {session}   (from the collector, over mutual TLS)");
    let mut args = vec!["replay", session.as_str()];
    args.extend(operator.iter().map(String::as_str));
    print!("{}", recorder(&args)?);
    let file = std::fs::File::open(jsonl)?;
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        line.clear();
    }
    // The web console: an operator token to paste at its login page.
    let token = recorder(&[
        "token",
        "--tls-cert",
        &operator[5],
        "--tls-key",
        &operator[7],
        "--ttl",
        "12h",
    ])?;
    let token_file = jsonl.with_file_name("console-token.txt");
    std::fs::write(&token_file, token.trim())?;
    println!(
        "== the web console: https://{CONSOLE_ADDR} (certificate of the demo CA: accept it), log in \
         with the token in {}",
        token_file.display()
    );
    if once {
        return Ok(());
    }
    println!(
        "== still recording identity {IDENTITY}. Try, in another terminal:\n   \
         sudo bash -c 'echo $$ > {}/cgroup.procs; exec bash'\n   and run commands there. Ctrl-C stops.",
        cgroup.display()
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // SAFETY: installs a handler that only stores to an atomic.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as usize) };
    loop {
        if SIGINT.load(std::sync::atomic::Ordering::SeqCst)
            || stop.load(std::sync::atomic::Ordering::SeqCst)
        {
            println!("\n== stopping");
            return Ok(());
        }
        if let Some(status) = agent.try_wait()? {
            bail!("the agent exited ({status})");
        }
        while reader.read_line(&mut line)? > 0 {
            show(line.trim_end());
            line.clear();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

static SIGINT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_sigint(_: i32) {
    SIGINT.store(true, std::sync::atomic::Ordering::SeqCst);
}
