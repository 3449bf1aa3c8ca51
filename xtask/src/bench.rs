//! `cargo xtask bench`: what the agent costs, measured as ratios within one run (never as timed
//! assertions in tests). Uses the end-to-end harness: real cgroups, the real agent, a real
//! PostgreSQL server.
//!
//! - exec: a fork+exec storm in a cgroup with no agent running (baseline), with the agent watching
//!   that cgroup, and in an unwatched cgroup with the agent running; agent CPU per exec, events
//!   generated / recorded / lost, idle RSS.
//! - sql: `pgbench -S` over TLS (OpenSSL probes for all processes, and for watched ones only)
//!   and over plain TCP: no agent, agent on but the client unwatched, and watched; agent CPU
//!   and eBPF run time per statement.
//! - kube: Kubernetes API calls against a local HTTPS API server, by kubectl (Go TLS, HTTP/2) in a
//!   loop and by one curl process (OpenSSL, HTTP/2) making many requests: no agent, agent on but
//!   the client unwatched, and watched; the cost per hooked TLS call.
//!
//! Figures are medians over interleaved rounds.
use std::{
    os::unix::process::CommandExt,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use recorder_tests::{Agent, Cgroup, kube_api::KubeApi, postgres::Postgres};
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

/// Runs the benchmarks named in `only` (all when empty).
pub fn run(only: &[String], execs: u64, rounds: u32) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the benchmark loads the agent's eBPF programs: run it as root");
    }
    // SAFETY: setting an environment variable before any thread is started.
    unsafe { std::env::set_var("RECORDER_BIN", recorder_bin()) };
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    if wanted("exec") {
        exec_bench(execs, rounds)?;
    }
    if wanted("sql") {
        sql_bench(rounds)?;
    }
    if wanted("kube") {
        kube_bench(rounds)?;
    }
    Ok(())
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

/// `pgbench -S` with `clients` for `secs` seconds in `cg`; returns transactions per second.
fn pgbench(cg: &Cgroup, conninfo: &str, clients: u32, secs: u32) -> anyhow::Result<f64> {
    let clients = clients.to_string();
    let out = cg.run(
        "/usr/bin/pgbench",
        &[
            "-n",
            "-S",
            "-c",
            &clients,
            "-j",
            &clients,
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
    let outside = Cgroup::new("bench-sql-unwatched");
    // The kernel's per-program run time, for the eBPF share of the cost (restored after).
    let stats_before = std::fs::read_to_string(BPF_STATS).unwrap_or_else(|_| "0".into());
    std::fs::write(BPF_STATS, "1").context("enabling kernel.bpf_stats_enabled")?;
    let result = sql_runs(rounds, &pg, &cg, &outside);
    let _ = std::fs::write(BPF_STATS, stats_before.trim());
    result
}

/// `sysctl kernel.bpf_stats_enabled`.
const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Each round: pgbench without the agent, then with it, first outside the watched cgroup (what
/// the agent costs a client it does not record), then inside (every statement recorded).
fn sql_runs(rounds: u32, pg: &Postgres, cg: &Cgroup, outside: &Cgroup) -> anyhow::Result<()> {
    const SECS: u32 = 8;
    // With 2 clients, pgbench and its 2 server backends keep both cores of a 2-core machine
    // busy, so the agent's own CPU is taken from them; with 1 client a core is left for it, and
    // the ratio shows the added latency per statement instead.
    let runs = [
        ("TLS, --tls-probes all", "require", "all", 2),
        ("TLS, --tls-probes watched", "require", "watched", 2),
        ("plain TCP", "disable", "all", 2),
        ("TLS, --tls-probes watched", "require", "watched", 1),
        ("plain TCP", "disable", "all", 1),
    ];
    for (label, sslmode, tls_probes, clients) in runs {
        let conninfo = pg.tcp("postgres", "postgres", sslmode);
        let (mut base, mut unwatched, mut watched) = (Vec::new(), Vec::new(), Vec::new());
        let mut cpu_per_stmt = Vec::new();
        let mut bpf_per_stmt = Vec::new();
        let (mut statements, mut dropped) = (0, 0);
        for round in 0..rounds {
            if round % 2 == 0 {
                base.push(pgbench(cg, &conninfo, clients, SECS)?);
            }
            let agent = Agent::start(&[
                "--identity",
                &cg.identity_flag("bench"),
                "--tls-probes",
                tls_probes,
            ]);
            unwatched.push(pgbench(outside, &conninfo, clients, SECS)?);
            let cpu0 = cpu_us(agent.pid())?;
            let bpf0 = agent.metric_sum("recorder_bpf_program_run_ns");
            watched.push(pgbench(cg, &conninfo, clients, SECS)?);
            std::thread::sleep(Duration::from_millis(500));
            let cpu1 = cpu_us(agent.pid())?;
            let bpf1 = agent.metric_sum("recorder_bpf_program_run_ns");
            let records = agent.stop();
            let n = count(&records, "sql");
            statements += n;
            dropped += lost(&records, "data");
            cpu_per_stmt.push((cpu1 - cpu0) / n.max(1) as f64);
            bpf_per_stmt.push((bpf1 - bpf0) / 1000.0 / n.max(1) as f64);
            if round % 2 == 1 {
                base.push(pgbench(cg, &conninfo, clients, SECS)?);
            }
            eprintln!(
                "[bench] pgbench -S {label}, {clients} clients, round {}: no agent {:.0} tps, unwatched {:.0} tps, watched {:.0} tps",
                round + 1,
                base[(round as usize).min(base.len() - 1)],
                unwatched[round as usize],
                watched[round as usize]
            );
        }
        let (b, o, w) = (median(base), median(unwatched), median(watched));
        println!(
            "pgbench -S over {label} ({clients} client{}, {SECS} s, {rounds} rounds, medians):",
            if clients == 1 { "" } else { "s" }
        );
        println!("  no agent:                     {b:>9.0} tps");
        println!(
            "  agent on, client unwatched:   {o:>9.0} tps   ratio {:.3}",
            o / b
        );
        println!(
            "  watched, every statement recorded: {w:>9.0} tps   ratio {:.3} to no agent, {:.3} to unwatched (goal >= 0.95)",
            w / b,
            w / o
        );
        println!(
            "  agent CPU per statement:      {:>9.1} us",
            median(cpu_per_stmt)
        );
        println!(
            "  eBPF run time per statement:  {:>9.1} us (all programs, every process; traps not included)",
            median(bpf_per_stmt)
        );
        println!("  sql records {statements}, data events lost {dropped}");
    }
    Ok(())
}

/// Runs `script` with bash in `cg` and returns the seconds it took.
fn timed_bash(cg: &Cgroup, script: &str, env: &[(&str, &str)]) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut cmd = cg.command("/bin/bash");
    cmd.args(["-c", script]).envs(env.iter().copied());
    let out = cmd.output()?;
    if !out.status.success() {
        bail!(
            "benchmark client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(start.elapsed().as_secs_f64())
}

fn kube_bench(rounds: u32) -> anyhow::Result<()> {
    // kubectl throttles itself past a burst of 10 requests (then 5/s): each run fetches 8 names
    // (8 GETs on one HTTP/2 connection), 25 runs in a row. curl makes all its calls in one
    // process, on one connection.
    const KUBECTL_RUNS: usize = 25;
    const KUBECTL_NAMES: usize = 8;
    const CURL_CALLS: usize = 1000;
    let dir = tempfile::tempdir()?;
    let api = KubeApi::start(dir.path());
    let kubeconfig = api
        .kubeconfig()
        .to_str()
        .context("kubeconfig path")?
        .to_string();
    let cache = api.cache_dir().to_str().context("cache path")?.to_string();
    let env = [("KUBECACHEDIR", cache.as_str())];
    // `kubectl get` fetches each name it is given, one request each.
    let names = ["web-2"; KUBECTL_NAMES].join(" ");
    let kubectl_many = format!(
        "for i in $(seq {KUBECTL_RUNS}); do \
         kubectl --kubeconfig {kubeconfig} get pods -n team-a -o name {names} >/dev/null || exit 1; done"
    );
    let url = format!("{}/api/v1/namespaces/team-a/pods/web-2", api.url());
    let ca = api.ca_cert().to_str().context("CA path")?.to_string();
    // One process, one HTTP/2 connection, many requests: the per-call cost of the OpenSSL probes.
    let curl_many = format!(
        "urls=(); for i in $(seq {CURL_CALLS}); do urls+=({url}); done; \
         curl -sS --http2 --cacert {ca} -o /dev/null \"${{urls[@]}}\""
    );
    let clients = [
        (
            "kubectl get, 25 runs of 8 calls (Go TLS, HTTP/2)",
            kubectl_many,
            "kubectl",
        ),
        ("curl, one process (OpenSSL, HTTP/2)", curl_many, "curl"),
    ];
    let watched = Cgroup::new("bench-kube-watched");
    let unwatched = Cgroup::new("bench-kube-unwatched");
    for (label, script, agent_name) in clients {
        timed_bash(&unwatched, &script, &env)?; // warm-up: page cache, discovery cache
        let served_before = api.requests().len();
        timed_bash(&unwatched, &script, &env)?;
        let calls = (api.requests().len() - served_before) as f64;
        let (mut base, mut outside, mut inside, mut cpu_per_call) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut recorded, mut generated) = (0, 0);
        for round in 0..rounds {
            if round % 2 == 0 {
                base.push(timed_bash(&unwatched, &script, &env)?);
            }
            let agent = Agent::start(&["--identity", &watched.identity_flag("bench")]);
            outside.push(timed_bash(&unwatched, &script, &env)?);
            let cpu0 = cpu_us(agent.pid())?;
            let served_before = api.requests().len();
            inside.push(timed_bash(&watched, &script, &env)?);
            generated += (api.requests().len() - served_before) as u64;
            std::thread::sleep(Duration::from_millis(500));
            let cpu1 = cpu_us(agent.pid())?;
            let records = agent.stop();
            let api_records = records
                .iter()
                .filter(|r| r["kind"] == "k8s" && r["source"] == "api")
                .count() as u64;
            recorded += api_records;
            cpu_per_call.push((cpu1 - cpu0) / api_records.max(1) as f64);
            if round % 2 == 1 {
                base.push(timed_bash(&unwatched, &script, &env)?);
            }
            eprintln!(
                "[bench] {agent_name} round {}: no agent {:.3} s, unwatched {:.3} s, watched {:.3} s",
                round + 1,
                base[(round as usize).min(base.len() - 1)],
                outside[round as usize],
                inside[round as usize]
            );
        }
        let (b, o, w) = (median(base), median(outside), median(inside));
        println!("{label}: {calls:.0} API calls per run ({rounds} rounds, medians):");
        println!("  no agent:                     {:>9.0} calls/s", calls / b);
        println!(
            "  agent on, client unwatched:   {:>9.0} calls/s   ratio {:.3}",
            calls / o,
            b / o
        );
        println!(
            "  watched, every call recorded: {:>9.0} calls/s   ratio {:.3}",
            calls / w,
            b / w
        );
        println!(
            "  added time per hooked call:   {:>9.1} us (watched vs no agent)",
            (w - b) * 1e6 / calls
        );
        println!(
            "  agent CPU per API call:       {:>9.1} us",
            median(cpu_per_call)
        );
        println!("  API calls served / recorded: {generated} / {recorded}");
    }
    Ok(())
}
