//! `cargo xtask demo`: the main job on one machine. Starts the agent recording a demo identity
//! (a cgroup made for it), runs a short scripted session inside it, and shows what was recorded.
//! Without `--once` it keeps recording until Ctrl-C, printing each new record.
use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::util::{is_root, recorder_bin, root};

const IDENTITY: &str = "demo-agent";
const METRICS: &str = "127.0.0.1:9464";

/// What the demo "AI agent" runs: a little of everything the exec capture sees.
const SESSION: &str = r#"cd /tmp
ls / | head -3
echo "hello from the demo agent" > /tmp/recorder-demo.txt
cat /tmp/recorder-demo.txt
id -un
sh -c 'exit 3'
true"#;

fn v2_mount() -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    text.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            if right.split_whitespace().next()? != "cgroup2" {
                return None;
            }
            Some(PathBuf::from(left.split_whitespace().nth(4)?))
        })
        .context("no cgroup v2 hierarchy is mounted")
}

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

pub fn run(once: bool) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the demo loads the agent's eBPF programs and creates a cgroup: run it as root");
    }
    let dir = root().join("demo");
    std::fs::create_dir_all(&dir)?;
    let jsonl = dir.join("records.jsonl");
    let _ = std::fs::remove_file(&jsonl);
    let cgroup = v2_mount()?.join("recorder-demo");
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
        ])
        .args([
            "--jsonl",
            jsonl.to_str().context("path")?,
            "--metrics-addr",
            METRICS,
        ])
        .stderr(std::fs::File::create(dir.join("agent.log"))?)
        .spawn()
        .context("starting the agent")?;
    let result = demo(&mut agent, &cgroup, &jsonl, once);
    // SAFETY: kill(2) on our own child; SIGTERM makes the agent drain and flush.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let _ = agent.wait();
    result
}

fn demo(agent: &mut Child, cgroup: &Path, jsonl: &Path, once: bool) -> anyhow::Result<()> {
    wait_ready(agent, "agent")?;
    println!(
        "== the agent is ready (http://{METRICS}/metrics); running a demo session inside the cgroup:"
    );
    let procs = cgroup.join("cgroup.procs");
    let mut session = Command::new("/bin/bash");
    session.args(["-c", SESSION]).stdout(Stdio::null());
    // SAFETY: only writes a file between fork and exec.
    unsafe {
        session.pre_exec(move || std::fs::write(&procs, b"0"));
    }
    let status = session.status()?;
    println!("   (the session ended with {status})");
    std::thread::sleep(Duration::from_millis(500));
    println!("== recorded ({}):", jsonl.display());
    let file = std::fs::File::open(jsonl)?;
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        show(line.trim_end());
        line.clear();
    }
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
