//! `pgbench -S` over plain TCP and over TLS: no agent, agent on with the client unwatched, and
//! watched (every statement recorded); the agent's CPU and the kernel's eBPF run time per
//! statement.
use std::{collections::BTreeMap, process::Command, time::Duration};

use anyhow::{Context as _, bail};
use recorder_tests::{Agent, Cgroup, postgres::Postgres};

use super::{
    Builds, count, cpu_us, lost, start_agent,
    stats::{Goal, Samples, line},
};

/// `sysctl kernel.bpf_stats_enabled`.
const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";
const SECS: u32 = 8;

/// One configuration: its label, `sslmode`, `--tls-probes`, clients, and the goals for the
/// watched ratio, the eBPF time and the agent's CPU per statement.
struct Run {
    label: &'static str,
    sslmode: &'static str,
    tls_probes: &'static str,
    clients: u32,
    unwatched_goal: Goal,
    watched_goal: Goal,
    ebpf_goal: Goal,
    cpu_goal: Goal,
}

/// With 2 clients, pgbench and its 2 server backends keep both cores of a 2-core machine busy,
/// so the agent's own CPU is taken from them; with 1 client a core is left for it, and the ratio
/// shows the added latency per statement instead.
const RUNS: [Run; 5] = [
    Run {
        label: "plain TCP",
        sslmode: "disable",
        tls_probes: "all",
        clients: 2,
        unwatched_goal: Goal::AtLeast(0.99),
        watched_goal: Goal::AtLeast(0.95),
        ebpf_goal: Goal::AtMost(3.0),
        cpu_goal: Goal::AtMost(3.0),
    },
    Run {
        label: "TLS, --tls-probes watched",
        sslmode: "require",
        tls_probes: "watched",
        clients: 2,
        unwatched_goal: Goal::AtLeast(0.99),
        watched_goal: Goal::AtLeast(0.90),
        ebpf_goal: Goal::AtMost(5.0),
        cpu_goal: Goal::AtMost(3.0),
    },
    Run {
        label: "TLS, --tls-probes watched",
        sslmode: "require",
        tls_probes: "watched",
        clients: 1,
        unwatched_goal: Goal::None,
        watched_goal: Goal::AtLeast(0.90),
        ebpf_goal: Goal::AtMost(5.0),
        cpu_goal: Goal::AtMost(3.0),
    },
    Run {
        label: "TLS, --tls-probes all",
        sslmode: "require",
        tls_probes: "all",
        clients: 2,
        unwatched_goal: Goal::None,
        watched_goal: Goal::None,
        ebpf_goal: Goal::None,
        cpu_goal: Goal::None,
    },
    Run {
        label: "plain TCP",
        sslmode: "disable",
        tls_probes: "all",
        clients: 1,
        unwatched_goal: Goal::None,
        watched_goal: Goal::None,
        ebpf_goal: Goal::None,
        cpu_goal: Goal::None,
    },
];

/// What one `pgbench` run did.
struct PgbenchRun {
    tps: f64,
    /// Transactions processed: one statement each with `-S`.
    transactions: u64,
}

/// `pgbench -S` with `clients` for `secs` seconds in `cg`.
fn pgbench(cg: &Cgroup, conninfo: &str, clients: u32, secs: u32) -> anyhow::Result<PgbenchRun> {
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
    let tps = text
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no tps line in pgbench's output")?;
    let transactions = text
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.trim().parse().ok())
        .context("no transaction count in pgbench's output")?;
    Ok(PgbenchRun { tps, transactions })
}

pub fn bench(builds: &Builds, rounds: u32) -> anyhow::Result<()> {
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
    let result = RUNS
        .iter()
        .try_for_each(|run| measure(builds, rounds, &pg, &cg, &outside, run));
    let _ = std::fs::write(BPF_STATS, stats_before.trim());
    result
}

/// What one build's agent did in one configuration.
#[derive(Default, Clone)]
struct Runs {
    unwatched: Samples,
    watched: Samples,
    cpu_per_stmt: Samples,
    ebpf_per_stmt: Samples,
    /// Nanoseconds of eBPF run time, by program, over the watched runs.
    ebpf_by_program: BTreeMap<String, f64>,
    statements: u64,
    transactions: u64,
    dropped: u64,
}

/// The kernel's run time of each eBPF program so far (nanoseconds), from the agent's metrics.
fn program_ns(agent: &Agent) -> BTreeMap<String, f64> {
    let metrics = agent.metrics();
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("recorder_bpf_program_run_ns{program=\""))
        .filter_map(|l| {
            let (name, rest) = l.split_once("\"}")?;
            Some((name.to_string(), rest.trim().parse().ok()?))
        })
        .collect()
}

/// Each round: pgbench without the agent, then, for each build, with its agent: first outside
/// the watched cgroup (what the agent costs a client it does not record), then inside.
fn measure(
    builds: &Builds,
    rounds: u32,
    pg: &Postgres,
    cg: &Cgroup,
    outside: &Cgroup,
    run: &Run,
) -> anyhow::Result<()> {
    let conninfo = pg.tcp("postgres", "postgres", run.sslmode);
    let mut base = Samples::default();
    let mut runs = vec![Runs::default(); builds.len()];
    for round in 0..rounds {
        if round % 2 == 0 {
            base.push(pgbench(cg, &conninfo, run.clients, SECS)?.tps);
        }
        for (b, _, build) in builds.iter() {
            let r = &mut runs[b];
            let agent = start_agent(
                build,
                &[
                    "--identity",
                    &cg.identity_flag("bench"),
                    "--tls-probes",
                    run.tls_probes,
                ],
            );
            r.unwatched
                .push(pgbench(outside, &conninfo, run.clients, SECS)?.tps);
            let cpu0 = cpu_us(agent.pid())?;
            let bpf0 = agent.metric_sum("recorder_bpf_program_run_ns");
            let by_program0 = program_ns(&agent);
            let watched = pgbench(cg, &conninfo, run.clients, SECS)?;
            r.watched.push(watched.tps);
            std::thread::sleep(Duration::from_millis(500));
            let cpu1 = cpu_us(agent.pid())?;
            let bpf1 = agent.metric_sum("recorder_bpf_program_run_ns");
            for (program, ns) in program_ns(&agent) {
                let before = by_program0.get(&program).copied().unwrap_or(0.0);
                *r.ebpf_by_program.entry(program).or_default() += ns - before;
            }
            let records = agent.stop();
            r.statements += count(&records, "sql");
            r.transactions += watched.transactions;
            r.dropped += lost(&records, "data");
            // Per statement run (a floor run records none).
            let n = watched.transactions.max(1) as f64;
            r.cpu_per_stmt.push((cpu1 - cpu0) / n);
            r.ebpf_per_stmt.push((bpf1 - bpf0) / 1000.0 / n);
        }
        if round % 2 == 1 {
            base.push(pgbench(cg, &conninfo, run.clients, SECS)?.tps);
        }
        eprintln!(
            "[bench] pgbench -S {}, {} clients, round {} of {rounds}",
            run.label,
            run.clients,
            round + 1
        );
    }
    println!(
        "pgbench -S over {} ({} client{}, {SECS} s, {rounds} rounds, medians (spread)):",
        run.label,
        run.clients,
        if run.clients == 1 { "" } else { "s" }
    );
    line("no agent", &base, " tps", 0, Goal::None);
    for (b, build, _) in builds.iter() {
        let r = &runs[b];
        println!("  {build}:");
        line(
            "agent on, client unwatched / no agent",
            &r.unwatched.ratio_to(&base),
            "",
            3,
            run.unwatched_goal,
        );
        line(
            "watched, every statement recorded / no agent",
            &r.watched.ratio_to(&base),
            "",
            3,
            run.watched_goal,
        );
        line(
            "eBPF run time per statement (all programs)",
            &r.ebpf_per_stmt,
            " us",
            1,
            run.ebpf_goal,
        );
        line(
            "agent CPU per statement",
            &r.cpu_per_stmt,
            " us",
            1,
            run.cpu_goal,
        );
        let mut by_program: Vec<(&String, f64)> = r
            .ebpf_by_program
            .iter()
            .map(|(p, ns)| (p, ns / 1000.0 / r.transactions.max(1) as f64))
            .filter(|(_, us)| *us >= 0.05)
            .collect();
        by_program.sort_by(|a, b| b.1.total_cmp(&a.1));
        let shown: Vec<String> = by_program
            .iter()
            .map(|(p, us)| format!("{p} {us:.2}"))
            .collect();
        println!("  eBPF us per statement by program: {}", shown.join(", "));
        println!(
            "  statements run {}, sql records {}, data events counted lost {}",
            r.transactions, r.statements, r.dropped
        );
    }
    Ok(())
}
