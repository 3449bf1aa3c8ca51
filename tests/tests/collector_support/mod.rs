//! Helpers for the collector's end-to-end tests: the real `recorder` binary, real certificates,
//! real collector processes on 127.0.0.1.
//!
//! The binary: `$RECORDER_BIN` when set (as `cargo xtask test` does). Otherwise, since cargo only
//! exposes `CARGO_BIN_EXE_*` to tests of the package that owns the binary, these tests build it
//! once with `cargo build -p recorder-cli --bin recorder` (same profile as the test,
//! `RECORDER_SKIP_EBPF` passed through) and run it from the target directory.
#![allow(dead_code, reason = "each test file uses a different part")]

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

/// The `recorder` binary: `$RECORDER_BIN` (what `cargo xtask test` sets), else built on first
/// use.
pub fn recorder() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("RECORDER_BIN").filter(|b| !b.is_empty()) {
            return PathBuf::from(bin);
        }
        // target/<profile>/deps/<test> -> target/<profile>
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "recorder-cli", "--bin", "recorder"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "building the recorder binary failed");
        let bin = profile_dir.join("recorder");
        assert!(bin.exists(), "{} missing after the build", bin.display());
        bin
    })
}

pub fn run(args: &[&str]) -> Output {
    Command::new(recorder())
        .args(args)
        .env("RECORDER_LOG", "warn")
        .output()
        .expect("running recorder")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A port nobody listens on now, never given twice in one test process (see
/// `recorder_tests::free_port`).
pub fn free_port() -> u16 {
    recorder_tests::free_port()
}

/// A PKI made by `recorder pki`: CA, collector, agent `web-1`, operator `alice`.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Self {
        let o = run(&["pki", "init", "--dir", dir.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let pki = Self {
            dir: dir.to_path_buf(),
        };
        pki.issue("agent", "web-1");
        pki.issue("operator", "alice");
        pki
    }

    pub fn issue(&self, role: &str, name: &str) {
        self.pki(&["issue", "--role", role, "--name", name]);
    }

    /// `recorder pki revoke` of NAME.pem with `reason`; what it printed.
    pub fn revoke(&self, name: &str, reason: &str) -> String {
        self.pki(&["revoke", "--name", name, "--reason", reason])
    }

    /// `recorder pki COMMAND --dir DIR ...`, which must succeed; its standard output.
    fn pki(&self, args: &[&str]) -> String {
        let mut all = vec!["pki", args[0], "--dir", self.dir.to_str().unwrap()];
        all.extend_from_slice(&args[1..]);
        let o = run(&all);
        assert!(o.status.success(), "recorder {all:?}: {}", stderr(&o));
        stdout(&o)
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    /// A console login token made with the operator certificate `name` (`recorder token`, with
    /// `extra` arguments such as `--ttl 1h`).
    pub fn token(&self, name: &str, extra: &[&str]) -> String {
        let (cert, key) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}-key.pem")),
        );
        let mut args = vec!["token", "--tls-cert", &cert, "--tls-key", &key];
        args.extend_from_slice(extra);
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).trim().to_string()
    }

    /// `--collector ... --tls-ca ... --tls-cert NAME.pem --tls-key NAME-key.pem`
    pub fn client_args(&self, port: u16, name: &str) -> Vec<String> {
        self.client_args_with(
            port,
            &self.path(&format!("{name}.pem")),
            &self.path(&format!("{name}-key.pem")),
        )
    }

    /// What an agent (host `web-1`) needs to ship to the collector on `port` through `spool`:
    /// `--host web-1 --collector … --tls-ca … --tls-cert … --tls-key … --spool DIR`.
    pub fn agent_args(&self, port: u16, spool: &Path) -> Vec<String> {
        let mut args = vec!["--host".to_string(), "web-1".into()];
        args.extend(self.client_args(port, "web-1"));
        args.extend(["--spool".into(), spool.to_str().unwrap().into()]);
        args
    }

    pub fn client_args_with(&self, port: u16, cert: &str, key: &str) -> Vec<String> {
        vec![
            "--collector".into(),
            format!("https://127.0.0.1:{port}"),
            "--tls-ca".into(),
            self.path("ca.pem"),
            "--tls-cert".into(),
            cert.into(),
            "--tls-key".into(),
            key.into(),
        ]
    }
}

/// A running `recorder collector`.
pub struct Collector {
    pub child: Child,
    pub port: u16,
    pub stderr: PathBuf,
}

impl Collector {
    pub fn start(pki: &Pki, data: &Path, port: u16, extra: &[&str]) -> Self {
        Self::start_on(pki, data, &format!("127.0.0.1:{port}"), extra)
    }

    /// Listening on `listen` (ADDRESS:PORT).
    pub fn start_on(pki: &Pki, data: &Path, listen: &str, extra: &[&str]) -> Self {
        let log = data.with_extension(format!(
            "{}.log",
            Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id())
        ));
        let mut child = Command::new(recorder())
            .args([
                "collector",
                "--listen",
                listen,
                "--data",
                data.to_str().unwrap(),
            ])
            .args([
                "--tls-ca",
                &pki.path("ca.pem"),
                "--tls-cert",
                &pki.path("collector.pem"),
            ])
            .args(["--tls-key", &pki.path("collector-key.pem")])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting the collector");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(
            first.starts_with("listening on "),
            "collector did not start: {first:?} {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let port = first.trim().rsplit(':').next().unwrap().parse().unwrap();
        Self {
            child,
            port,
            stderr: log,
        }
    }

    /// SIGTERM and wait: the collector writes its final checkpoint.
    pub fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "collector exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("collector did not stop on SIGTERM");
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` records of host `host`, in sessions of 10 commands: exec + exit pairs.
pub fn records(host: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let session = format!("sess-{}", i / 20);
            let t = format!("2026-11-28T10:{:02}:{:02}.{:09}Z", (i / 60_000) % 60, (i / 1000) % 60, i);
            if i % 2 == 0 {
                format!(
                    r#"{{"kind":"exec","time":"{t}","host":"{host}","identity":"claude","session":"{session}","pid":{},"exec_id":"x{i}","argv":["echo","{i}"],"text":"echo {i}"}}"#,
                    i + 1
                )
            } else {
                format!(
                    r#"{{"kind":"exit","time":"{t}","host":"{host}","identity":"claude","session":"{session}","pid":{i},"exec_id":"x{}","exit_code":0,"duration_ms":1}}"#,
                    i - 1
                )
            }
        })
        .collect()
}

pub fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

/// `recorder ship` of `lines` with the agent certificate `web-1`.
pub fn ship(
    pki: &Pki,
    port: u16,
    dir: &Path,
    name: &str,
    lines: &[String],
    extra: &[&str],
) -> Output {
    let file = dir.join(format!("{name}.jsonl"));
    write_lines(&file, lines);
    let spool = dir.join(format!("{name}-spool"));
    let mut args: Vec<String> = vec![
        "ship".into(),
        "--jsonl".into(),
        file.to_str().unwrap().into(),
    ];
    args.extend(["--spool".into(), spool.to_str().unwrap().into()]);
    args.extend(pki.client_args(port, "web-1"));
    args.extend(extra.iter().map(|s| s.to_string()));
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `recorder export` as an operator: every stored line.
pub fn export(pki: &Pki, port: u16) -> Vec<String> {
    let mut args = vec!["export".to_string()];
    args.extend(pki.client_args(port, "alice"));
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).lines().map(str::to_string).collect()
}

/// Waits until the collector on `port` holds as many records as the agent's JSON Lines file
/// `jsonl` (the agent ships within a second); fails the test after 20 s.
pub fn wait_until_shipped(pki: &Pki, port: u16, jsonl: &Path) {
    let lines = || std::fs::read_to_string(jsonl).unwrap().lines().count();
    assert!(
        wait_for(Duration::from_secs(20), || export(pki, port).len()
            == lines()),
        "the collector has {} of {} records",
        export(pki, port).len(),
        lines()
    );
}

/// Frame offsets of a log segment (the format of docs/collector.md): 8-byte header, then
/// u32 length | entry | 32-byte hash.
pub fn frames(segment: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut at = 8;
    while at + 4 <= segment.len() {
        let len = u32::from_le_bytes(segment[at..at + 4].try_into().unwrap()) as usize;
        let end = at + 4 + len + 32;
        out.push(at..end);
        at = end;
    }
    out
}

pub fn read_all(mut r: impl std::io::Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}

pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A minimal HTTP receiver for webhooks: answers 200 and keeps (signature header, body) of each
/// request.
pub fn webhook_receiver(listener: TcpListener) -> Arc<Mutex<Vec<(String, String)>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut sig, mut len) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("x-recorder-signature: ") {
                    sig = v.trim().to_string();
                }
                if let Some(v) = lower.strip_prefix("content-length: ") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body).unwrap();
            keep.lock()
                .unwrap()
                .push((sig, String::from_utf8(body).unwrap()));
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        }
    });
    got
}
