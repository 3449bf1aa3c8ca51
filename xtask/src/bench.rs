//! `cargo xtask bench`: the cost of the agent on a fork+exec storm, measured as ratios within one
//! run (never as timed assertions in tests).
//!
//! Per round, interleaved: the storm in a cgroup with no agent running (baseline), then with the
//! agent watching that cgroup, then in an unwatched cgroup with the agent running. The figures
//! are medians over the rounds. Also: agent CPU per recorded exec, events lost, idle RSS.
use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::util::{is_root, recorder_bin};

struct Cg(PathBuf);

impl Cg {
    fn new(name: &str) -> anyhow::Result<Self> {
        let path = v2_mount()?.join(name);
        if !path.exists() {
            std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        }
        Ok(Self(path))
    }
}

impl Drop for Cg {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

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
        .context("no cgroup v2 hierarchy mounted")
}

/// Runs `execs` fork+execs of /bin/true from a bash loop inside `cg`; returns execs per second.
fn storm(cg: &Cg, execs: u64) -> anyhow::Result<f64> {
    let procs = cg.0.join("cgroup.procs");
    let mut cmd = Command::new("/bin/bash");
    cmd.args([
        "-c",
        &format!("for ((i=0;i<{execs};i++)); do /bin/true; done"),
    ]);
    // SAFETY: only writes a file between fork and exec.
    unsafe {
        cmd.pre_exec(move || std::fs::write(&procs, b"0"));
    }
    let start = Instant::now();
    let status = cmd.status().context("running the storm")?;
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("the storm failed: {status}");
    }
    Ok(execs as f64 / secs)
}

struct Agent {
    child: Child,
    jsonl: PathBuf,
}

impl Agent {
    fn start(cg: &Cg, dir: &Path, round: u32) -> anyhow::Result<Self> {
        let jsonl = dir.join(format!("round-{round}.jsonl"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(recorder_bin())
            .args(["agent", "--identity", &format!("bench={}", cg.0.display())])
            .args(["--jsonl", jsonl.to_str().unwrap(), "--metrics-addr", &addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the agent")?;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /readyz HTTP/1.1\r\n\r\n");
                let mut r = String::new();
                let _ = s.read_to_string(&mut r);
                if r.starts_with("HTTP/1.1 200") {
                    return Ok(Self { child, jsonl });
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the agent did not become ready")
    }

    /// User + system CPU time of the agent so far, in microseconds.
    fn cpu_us(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        let after = stat.rsplit_once(')').context("stat format")?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok(ticks / hz * 1e6)
    }

    /// (total RSS, RSS of the ring buffer's mapping) in KiB. The ring buffer is kernel memory
    /// the agent maps (twice, by design of BPF ring buffers), so it shows in RSS without being
    /// the agent's own heap.
    fn rss_kib(&self) -> anyhow::Result<(u64, u64)> {
        let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", self.child.id()))?;
        let (mut total, mut ring, mut in_map) = (0, 0, false);
        for line in smaps.lines() {
            if line.split_whitespace().next().is_some_and(|f| {
                f.contains('-') && f.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
            }) {
                in_map = line.ends_with("anon_inode:bpf-map");
            } else if let Some(kib) = line.strip_prefix("Rss:") {
                let kib: u64 = kib.trim().trim_end_matches(" kB").trim().parse()?;
                total += kib;
                if in_map {
                    ring += kib;
                }
            }
        }
        Ok((total, ring))
    }

    fn stop(mut self) -> anyhow::Result<(u64, u64)> {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait()?;
        let text = std::fs::read_to_string(&self.jsonl).unwrap_or_default();
        let (mut execs, mut lost) = (0, 0);
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            match v["kind"].as_str() {
                Some("exec") => execs += 1,
                Some("loss") if v["lost_kind"] == "exec" => {
                    lost += v["count"].as_u64().unwrap_or(0)
                }
                _ => {}
            }
        }
        Ok((execs, lost))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(execs: u64, rounds: u32) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the benchmark loads the agent's eBPF programs: run it as root");
    }
    let watched = Cg::new("recorder-bench-watched")?;
    let unwatched = Cg::new("recorder-bench-unwatched")?;
    let dir = std::env::temp_dir().join(format!("recorder-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    eprintln!("[bench] warm-up");
    storm(&watched, execs / 4)?;

    let (mut base, mut with_agent, mut outside) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_per_exec, mut rss) = (Vec::new(), (0, 0));
    let (mut recorded, mut lost, mut generated) = (0, 0, 0);
    for round in 0..rounds {
        // The baseline runs before the agent on even rounds and after it on odd ones, so a drift
        // of the machine (frequency, caches, other load) does not favour one side.
        if round % 2 == 0 {
            base.push(storm(&watched, execs)?);
        }
        let agent = Agent::start(&watched, &dir, round)?;
        std::thread::sleep(Duration::from_secs(2));
        rss = rss.max(agent.rss_kib()?);
        let cpu0 = agent.cpu_us()?;
        with_agent.push(storm(&watched, execs)?);
        std::thread::sleep(Duration::from_millis(500)); // let the agent finish the last events
        let cpu1 = agent.cpu_us()?;
        outside.push(storm(&unwatched, execs)?);
        let (r, l) = agent.stop()?;
        if round % 2 == 1 {
            base.push(storm(&watched, execs)?);
        }
        // Per watched storm: bash itself + `execs` × true.
        generated += execs + 1;
        recorded += r;
        lost += l;
        cpu_per_exec.push((cpu1 - cpu0) / (execs + 1) as f64);
        eprintln!(
            "[bench] round {}: baseline {:.0}/s, watched {:.0}/s, unwatched {:.0}/s",
            round + 1,
            base[round as usize],
            with_agent[round as usize],
            outside[round as usize]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (b, w, o) = (median(base), median(with_agent), median(outside));
    println!("exec storm ({execs} fork+exec of /bin/true from bash, {rounds} rounds, medians):");
    println!("  baseline, no agent:           {b:>9.0} execs/s");
    println!(
        "  watched cgroup, agent on:     {w:>9.0} execs/s   ratio {:.3} (goal >= 0.98)",
        w / b
    );
    println!(
        "  unwatched cgroup, agent on:   {o:>9.0} execs/s   ratio {:.3} (goal >= 0.99)",
        o / b
    );
    println!(
        "  agent CPU per watched exec:   {:>9.1} us",
        median(cpu_per_exec)
    );
    println!("  execs generated / recorded / counted lost: {generated} / {recorded} / {lost}");
    println!(
        "  agent RSS idle:               {:>9.1} MiB (goal < 64), of which {:.1} MiB is the mapped ring buffer",
        rss.0 as f64 / 1024.0,
        rss.1 as f64 / 1024.0
    );
    Ok(())
}
