//! `cargo xtask bench`: what the agent costs, measured as ratios within one run (never as timed
//! assertions in tests), over interleaved rounds, printed as medians with their spread next to
//! their goals. Uses the end-to-end harness: real cgroups, the real agent, a real PostgreSQL
//! server, a real HTTPS API server.
//!
//! - syscall: system-call-heavy loops (1-byte `dd`, 2 million read/write calls; a `getppid`
//!   loop) in an unwatched and in a watched cgroup, against the same loops with no agent.
//! - exec: a fork+exec storm, unwatched and watched; agent CPU per exec, events generated /
//!   recorded / lost, idle RSS.
//! - sql: `pgbench -S` over plain TCP and TLS; agent CPU and eBPF run time per statement.
//! - kube: Kubernetes API calls by kubectl (Go TLS, HTTP/2) and curl (OpenSSL).
//! - pods: identities selected by Kubernetes pod with 100 pods on the node; agent RSS and CPU
//!   against the same agent watching by cgroup path, and a new pod's first process to its
//!   first record.
//!
//! - store: the collector's ingest on the embedded store and on PostgreSQL (one and two
//!   collectors), and the latency from the spool to an acknowledged record.
//! - export: ingest with a syslog and a file exporter on against none; each one's delivery rate.
//!
//! `--compare BIN` measures another build of `recorder` in the same rounds, side by side with
//! the one just built (before/after a change, in one run).
mod approve;
mod console;
mod exec;
mod export;
mod kube;
mod pods;
mod redact;
mod sql;
mod stats;
mod store;
mod syscall;

use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{Context, bail};
use recorder_tests::{Agent, Cgroup};
use serde_json::Value;

pub use syscall::getppid_loop;

use crate::util::{is_root, recorder_bin};

/// One agent measured: a build of `recorder`, and whether its data programs return at once.
pub struct Build {
    label: String,
    path: PathBuf,
    floor: bool,
}

/// The agents measured side by side.
pub struct Builds(Vec<Build>);

impl Builds {
    fn new(compare: Option<PathBuf>, floor: bool) -> anyhow::Result<Self> {
        let mut builds = vec![Build {
            label: "this build".to_string(),
            path: recorder_bin(),
            floor: false,
        }];
        if floor {
            builds.push(Build {
                label: "floor: this build's hooks, programs returning at once".to_string(),
                path: recorder_bin(),
                floor: true,
            });
        }
        if let Some(path) = compare {
            let path = path
                .canonicalize()
                .with_context(|| format!("--compare {}", path.display()))?;
            builds.push(Build {
                label: format!("compare ({})", path.display()),
                path,
                floor: false,
            });
        }
        Ok(Self(builds))
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, &str, &Build)> {
        self.0
            .iter()
            .enumerate()
            .map(|(i, build)| (i, build.label.as_str(), build))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Starts `build`'s agent with `args` and waits until it is ready.
pub fn start_agent(build: &Build, args: &[&str]) -> Agent {
    // SAFETY: the benchmark is single-threaded when it starts an agent.
    unsafe {
        std::env::set_var("RECORDER_BIN", &build.path);
        if build.floor {
            std::env::set_var("RECORDER_BENCH_FLOOR", "1");
        } else {
            std::env::remove_var("RECORDER_BENCH_FLOOR");
        }
    }
    Agent::start(args)
}

/// Runs the benchmarks named in `only` (all when empty).
pub fn run(
    only: &[String],
    execs: u64,
    rounds: u32,
    compare: Option<PathBuf>,
    floor: bool,
) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the benchmark loads the agent's eBPF programs: run it as root");
    }
    let builds = Builds::new(compare, floor)?;
    // The agent at its default log level, as it runs in production (the test harness asks for
    // debug).
    // SAFETY: setting an environment variable before any thread is started.
    unsafe { std::env::set_var("RECORDER_LOG", "info") };
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    if wanted("syscall") {
        syscall::bench(&builds, rounds)?;
    }
    if wanted("exec") {
        exec::bench(&builds, execs, rounds)?;
    }
    if wanted("sql") {
        sql::bench(&builds, rounds)?;
    }
    if wanted("kube") {
        kube::bench(&builds, rounds)?;
    }
    if wanted("pods") {
        pods::bench(&builds, rounds)?;
    }
    if wanted("store") {
        store::bench(rounds)?;
    }
    if wanted("export") {
        export::bench(rounds)?;
    }
    if wanted("console") {
        console::bench(rounds)?;
    }
    if wanted("redact") {
        redact::bench(rounds)?;
    }
    if wanted("approve") {
        approve::bench(&builds, execs, rounds)?;
    }
    Ok(())
}

/// User + system CPU time of a process so far, in microseconds.
pub fn cpu_us(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz * 1e6)
}

/// Records of `kind`.
pub fn count(records: &[Value], kind: &str) -> u64 {
    records.iter().filter(|r| r["kind"] == kind).count() as u64
}

/// Events of kernel kind `what` counted lost.
pub fn lost(records: &[Value], what: &str) -> u64 {
    records
        .iter()
        .filter(|r| r["kind"] == "loss" && r["lost_kind"] == what)
        .map(|r| r["count"].as_u64().unwrap_or(0))
        .sum()
}

/// Runs `cmd` to completion and returns the seconds it took, failing on a non-zero exit.
pub fn timed(cmd: &mut Command) -> anyhow::Result<f64> {
    let start = Instant::now();
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(secs)
}

/// Runs `script` with bash in `cg` and returns the seconds it took.
pub fn timed_bash(cg: &Cgroup, script: &str, env: &[(&str, &str)]) -> anyhow::Result<f64> {
    let mut cmd = cg.command("/bin/bash");
    cmd.args(["-c", script]).envs(env.iter().copied());
    timed(&mut cmd)
}
