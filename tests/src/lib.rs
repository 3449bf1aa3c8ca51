//! Harness for the end-to-end tests: the real `recorder` binary, real cgroups, real processes.
//!
//! These tests need root (they load eBPF programs and create cgroups). Run them with
//! `cargo xtask test`, which builds the binary first; they fail, loudly, when they cannot load.
pub mod kube_api;
pub mod kubelet;
pub mod mariadb;
pub mod podman;
pub mod postgres;
pub mod pty;
pub mod rsyslog;
use std::{
    io::{Read, Write},
    net::TcpStream,
    os::unix::{fs::MetadataExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::Value;

/// The `recorder` binary under test: `$RECORDER_BIN`, else target/release, else target/debug.
pub fn recorder_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RECORDER_BIN") {
        return PathBuf::from(p);
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    for profile in ["release", "debug"] {
        let p = target.join(profile).join("recorder");
        if p.exists() {
            return p;
        }
    }
    panic!("no recorder binary: build it first (`cargo xtask test` does) or set RECORDER_BIN");
}

/// Fails the test at once when not root: these tests load eBPF programs.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this end-to-end test loads eBPF programs and creates cgroups: run it as root (cargo xtask test)"
    );
}

/// The cgroup v2 mount point, from /proc/self/mountinfo.
pub fn cgroup_v2_mount() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    text.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            if right.split_whitespace().next()? != "cgroup2" {
                return None;
            }
            Some(PathBuf::from(left.split_whitespace().nth(4)?))
        })
        .expect("a cgroup v2 hierarchy is mounted")
}

/// A cgroup v2 directory made for one test, removed (with its children) on drop.
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    pub fn new(label: &str) -> Self {
        require_root();
        let name = format!("recorder-test-{label}-{}-{}", std::process::id(), unique());
        let path = cgroup_v2_mount().join(name);
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", path.display()));
        Self { path }
    }

    pub fn child(&self, name: &str) -> Self {
        let path = self.path.join(name);
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", path.display()));
        Self { path }
    }

    pub fn id(&self) -> u64 {
        std::fs::metadata(&self.path).unwrap().ino()
    }

    /// `NAME=PATH` for `--identity`.
    pub fn identity_flag(&self, name: &str) -> String {
        format!("{name}={}", self.path.display())
    }

    /// A command that moves itself into this cgroup before it execs (so its exec is the first
    /// event of a new session).
    pub fn command(&self, program: &str) -> Command {
        command_in_cgroup(&self.path, program)
    }

    /// Runs `program args` in this cgroup and waits for it.
    pub fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"))
    }
}

/// A command that moves itself into the cgroup directory `dir` before it execs.
pub fn command_in_cgroup(dir: &Path, program: &str) -> Command {
    let mut cmd = Command::new(program);
    let procs = dir.join("cgroup.procs");
    // SAFETY: the closure only writes a file between fork and exec (no allocation-heavy work
    // in a multithreaded parent is needed beyond formatting a small number).
    unsafe {
        cmd.pre_exec(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(&procs)?;
            f.write_all(b"0")?;
            Ok(())
        });
    }
    cmd
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Children first; a cgroup can only be removed when empty.
        fn remove(dir: &Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        remove(&e.path());
                    }
                }
            }
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        remove(&self.path);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The repository's root directory.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
}

/// Runs one phase of the real-browser script (tests/browser/console.py: Chromium through
/// chromedriver) with `config` written to `file`; its output is printed and returned, its
/// failure fails the test with what it printed.
pub fn browser_script(config: &Value, file: &Path) -> String {
    std::fs::write(file, config.to_string()).unwrap();
    let out = Command::new("python3")
        .arg(repo_root().join("tests/browser/console.py"))
        .arg(file)
        .output()
        .expect("python3 runs the browser script (cargo xtask setup installs selenium, chromium)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    print!("{text}");
    assert!(
        out.status.success(),
        "browser phase {} failed:\n{text}\n{}",
        config["phase"],
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Runs `cmd` and returns what it did; a command that cannot be started fails the test.
pub fn output(cmd: &mut Command) -> std::process::Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// Runs a setup command, failing the test with its output when it fails.
pub fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed certificate for `localhost` in `dir` (`server.crt`, `server.key`), for the
/// test servers' TLS.
pub fn self_signed_cert(dir: &Path) {
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
            ])
            .arg("-keyout")
            .arg(dir.join("server.key"))
            .arg("-out")
            .arg(dir.join("server.crt")),
    );
}

/// A TCP port on loopback that nobody listens on now and that no earlier call of this test
/// process returned. The tests of one binary run side by side, and the kernel may give a port
/// just released to the next `bind(0)`: two tests holding the same number would see one fail to
/// listen, or the other's clients reach the wrong server.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(port)
        {
            return port;
        }
    }
}

/// A running `recorder agent` writing JSONL to a temp file.
pub struct Agent {
    child: Option<Child>,
    pub jsonl: PathBuf,
    pub metrics: String,
    _dir: tempfile::TempDir,
    stderr: PathBuf,
    /// Held until the agent process is gone (fields drop after `Drop::drop` stops it).
    _turn: Turn,
}

/// Agents of one test binary run side by side, except those started with [`Agent::start_alone`].
/// An agent that stops releases its uprobes, about 100 ms each, and the kernel holds the lock
/// that attaching a uprobe needs meanwhile: a test that depends on how soon the agent attaches
/// probes for a new process (`--tls-probes watched`) must not overlap another agent's exit.
static AGENTS: RwLock<()> = RwLock::new(());

enum Turn {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
    /// Within the turn of another agent of the same test, which outlives this one.
    Borrowed,
}

impl Agent {
    /// Starts an agent with these extra arguments (identities, config) and waits until /readyz
    /// says the probes are attached.
    pub fn start(args: &[&str]) -> Self {
        let turn = Turn::Shared(AGENTS.read().unwrap_or_else(|e| e.into_inner()));
        Self::start_with(args, turn)
    }

    /// As [`Agent::start`], once no other agent of this test binary is running, and none starts
    /// until this one is stopped.
    pub fn start_alone(args: &[&str]) -> Self {
        let turn = Turn::Alone(AGENTS.write().unwrap_or_else(|e| e.into_inner()));
        Self::start_with(args, turn)
    }

    /// As [`Agent::start`], for a second agent of a test that already runs `first`: within
    /// `first`'s turn (taking a turn of its own could wait forever behind an agent started
    /// alone by another test, itself waiting for `first`). Drop it before `first`.
    pub fn start_beside(first: &Agent, args: &[&str]) -> Self {
        assert!(first.child.is_some(), "the first agent is running");
        Self::start_with(args, Turn::Borrowed)
    }

    fn start_with(args: &[&str], turn: Turn) -> Self {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("records.jsonl");
        let stderr = dir.path().join("agent.log");
        let metrics = format!("127.0.0.1:{}", free_port());
        let child = Command::new(recorder_bin())
            .arg("agent")
            .args([
                "--jsonl",
                jsonl.to_str().unwrap(),
                "--metrics-addr",
                &metrics,
            ])
            .args(args)
            // Debug level, so a failing test shows what the agent did (attaches, libraries).
            .env(
                "RECORDER_LOG",
                std::env::var("RECORDER_LOG").unwrap_or("debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("starting recorder agent");
        let mut agent = Agent {
            child: Some(child),
            jsonl,
            metrics,
            _dir: dir,
            stderr,
            _turn: turn,
        };
        agent.wait_ready(Duration::from_secs(60));
        agent
    }

    fn wait_ready(&mut self, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "the agent exited before it was ready ({status}); its log:\n{}",
                    self.log()
                );
            }
            if http_get(&self.metrics, "/readyz").is_ok_and(|(code, _)| code == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the agent was not ready after {limit:?}; its log:\n{}",
            self.log()
        );
    }

    /// The agent's /metrics page.
    pub fn metrics(&self) -> String {
        http_get(&self.metrics, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// The sum of a metric's series on the agent's /metrics page.
    pub fn metric_sum(&self, name: &str) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The agent's process id (for CPU and memory readings).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Every record written so far.
    pub fn records(&self) -> Vec<Value> {
        read_jsonl(&self.jsonl)
    }

    /// Waits (up to 10 s) until `done` holds for the records written so far, and returns them.
    pub fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let records = self.records();
            if done(&records) {
                return records;
            }
            if start.elapsed() > Duration::from_secs(10) {
                panic!(
                    "timed out waiting for {what}; records so far:\n{}\nthe agent's log:\n{}",
                    dump(&records),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the agent with SIGTERM (it drains and flushes) and returns all records.
    pub fn stop(mut self) -> Vec<Value> {
        self.terminate();
        self.records()
    }

    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if child.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("the agent did not stop within 20 s of SIGTERM");
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The complete lines of a file another process is writing: a last line without its newline is
/// still being written (large writes are flushed in pieces) and is left for the next read.
pub fn whole_lines(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let end = text
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |at| at + 1);
    String::from_utf8_lossy(&text[..end]).into_owned()
}

/// The complete lines of a JSONL file as JSON values (see [`whole_lines`]).
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    whole_lines(path)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("invalid JSON line {l:?}: {e}")))
        .collect()
}

pub fn dump(records: &[Value]) -> String {
    records
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Records of one kind.
pub fn of_kind<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["kind"] == kind).collect()
}

/// The argv of an exec record as strings.
pub fn argv(record: &Value) -> Vec<String> {
    record["argv"]
        .as_array()
        .expect("argv array")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// A minimal HTTP/1.1 GET; returns (status, body).
pub fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).context("connect")?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let code = text
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    if text.is_empty() {
        bail!("empty response");
    }
    Ok((code, body))
}
