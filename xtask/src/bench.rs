//! `cargo xtask bench`: what the agent costs, measured as ratios within one run (never as timed
//! assertions in tests). Uses the end-to-end harness: real cgroups, the real agent, a real
//! PostgreSQL server.
//!
//! - exec: a fork+exec storm in a cgroup with no agent running (baseline), with the agent watching
//!   that cgroup, and in an unwatched cgroup with the agent running; agent CPU per exec, events
//!   generated / recorded / lost, idle RSS.
//! - sql: `pgbench -S` over TLS and over plain TCP, unwatched vs watched; agent CPU per statement.
//!
//! Figures are medians over interleaved rounds.
use std::{
    os::unix::process::CommandExt,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use recorder_tests::{Agent, Cgroup, postgres::Postgres};
use serde_json::Value;

use crate::util::{is_root, recorder_bin};

/// Runs `execs` fork+execs of /bin/true from a bash loop inside `cg`; returns execs per second.
fn storm(cg: &Cgroup, execs: u64) -> anyhow::Result<f64> {
    let procs = cg.path.join("cgroup.procs");
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

/// User + system CPU time of a process so far, in microseconds.
fn cpu_us(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz * 1e6)
}

/// (total RSS, RSS of the ring buffer's mapping) in KiB. The ring buffer is kernel memory the
/// agent maps (twice, by design of BPF ring buffers): it shows in RSS without being its heap.
fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let (mut total, mut ring, mut in_map) = (0, 0, false);
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn count(records: &[Value], kind: &str) -> u64 {
    records.iter().filter(|r| r["kind"] == kind).count() as u64
}

fn lost(records: &[Value], what: &str) -> u64 {
    records
        .iter()
        .filter(|r| r["kind"] == "loss" && r["lost_kind"] == what)
        .map(|r| r["count"].as_u64().unwrap_or(0))
        .sum()
}

pub fn run(execs: u64, rounds: u32) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the benchmark loads the agent's eBPF programs: run it as root");
    }
    // SAFETY: setting an environment variable before any thread is started.
    unsafe { std::env::set_var("RECORDER_BIN", recorder_bin()) };
    exec_bench(execs, rounds)?;
    sql_bench(rounds)
}

fn exec_bench(execs: u64, rounds: u32) -> anyhow::Result<()> {
    let watched = Cgroup::new("bench-watched");
    let unwatched = Cgroup::new("bench-unwatched");
    eprintln!("[bench] exec: warm-up");
    storm(&watched, execs / 4)?;
    let (mut base, mut with_agent, mut outside) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_per_exec, mut rss) = (Vec::new(), (0, 0));
    let (mut recorded, mut dropped, mut generated) = (0, 0, 0);
    for round in 0..rounds {
        // The baseline runs before the agent on even rounds and after it on odd ones, so a drift
        // of the machine (frequency, caches, other load) does not favour one side.
        if round % 2 == 0 {
            base.push(storm(&watched, execs)?);
        }
        let agent = Agent::start(&["--identity", &watched.identity_flag("bench")]);
        std::thread::sleep(Duration::from_secs(2));
        rss = rss.max(rss_kib(agent.pid())?);
        let cpu0 = cpu_us(agent.pid())?;
        with_agent.push(storm(&watched, execs)?);
        std::thread::sleep(Duration::from_millis(500)); // the agent finishes the last events
        let cpu1 = cpu_us(agent.pid())?;
        outside.push(storm(&unwatched, execs)?);
        let records = agent.stop();
        if round % 2 == 1 {
            base.push(storm(&watched, execs)?);
        }
        // Per watched storm: bash itself + `execs` × true.
        generated += execs + 1;
        recorded += count(&records, "exec");
        dropped += lost(&records, "exec");
        cpu_per_exec.push((cpu1 - cpu0) / (execs + 1) as f64);
        let r = round as usize;
        eprintln!(
            "[bench] exec round {}: baseline {:.0}/s, watched {:.0}/s, unwatched {:.0}/s",
            round + 1,
            base[r.min(base.len() - 1)],
            with_agent[r],
            outside[r]
        );
    }
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
    println!("  execs generated / recorded / counted lost: {generated} / {recorded} / {dropped}");
    println!(
        "  agent RSS idle:               {:>9.1} MiB (goal < 64), of which {:.1} MiB is the mapped ring buffer",
        rss.0 as f64 / 1024.0,
        rss.1 as f64 / 1024.0
    );
    Ok(())
}

/// `pgbench -S` for `secs` seconds in `cg`; returns transactions per second.
fn pgbench(cg: &Cgroup, conninfo: &str, secs: u32) -> anyhow::Result<f64> {
    let out = cg.run(
        "/usr/bin/pgbench",
        &[
            "-n",
            "-S",
            "-c",
            "2",
            "-j",
            "2",
            "-T",
            &secs.to_string(),
            conninfo,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("pgbench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no tps line in pgbench's output")
}

fn sql_bench(rounds: u32) -> anyhow::Result<()> {
    const SECS: u32 = 8;
    let pg = Postgres::start();
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", "2", &pg.unix("postgres", "postgres")])
        .output()?;
    if !init.status.success() {
        bail!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
    }
    let cg = Cgroup::new("bench-sql");
    for (label, sslmode) in [("TLS", "require"), ("plain TCP", "disable")] {
        let conninfo = pg.tcp("postgres", "postgres", sslmode);
        let (mut base, mut watched, mut cpu_per_stmt) = (Vec::new(), Vec::new(), Vec::new());
        let (mut statements, mut dropped) = (0, 0);
        for round in 0..rounds {
            if round % 2 == 0 {
                base.push(pgbench(&cg, &conninfo, SECS)?);
            }
            let agent = Agent::start(&["--identity", &cg.identity_flag("bench")]);
            let cpu0 = cpu_us(agent.pid())?;
            watched.push(pgbench(&cg, &conninfo, SECS)?);
            std::thread::sleep(Duration::from_millis(500));
            let cpu1 = cpu_us(agent.pid())?;
            let records = agent.stop();
            let n = count(&records, "sql");
            statements += n;
            dropped += lost(&records, "data");
            cpu_per_stmt.push((cpu1 - cpu0) / n.max(1) as f64);
            if round % 2 == 1 {
                base.push(pgbench(&cg, &conninfo, SECS)?);
            }
            eprintln!(
                "[bench] pgbench -S {label} round {}: unwatched {:.0} tps, watched {:.0} tps",
                round + 1,
                base[(round as usize).min(base.len() - 1)],
                watched[round as usize]
            );
        }
        let (b, w) = (median(base), median(watched));
        println!("pgbench -S over {label} (2 clients, {SECS} s, {rounds} rounds, medians):");
        println!("  unwatched:                    {b:>9.0} tps");
        println!(
            "  watched, every statement recorded: {w:>9.0} tps   ratio {:.3} (goal >= 0.95)",
            w / b
        );
        println!(
            "  agent CPU per statement:      {:>9.1} us",
            median(cpu_per_stmt)
        );
        println!("  sql records {statements}, data events lost {dropped}");
    }
    Ok(())
}
