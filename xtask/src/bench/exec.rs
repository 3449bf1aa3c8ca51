//! A fork+exec storm in a watched cgroup and in an unwatched one, against the same storm with
//! no agent; the agent's CPU per exec, events generated / recorded / counted lost, idle RSS.
use std::{os::unix::process::CommandExt as _, process::Command, time::Duration};

use anyhow::{Context as _, bail};
use recorder_tests::Cgroup;

use super::{
    Builds, count, cpu_us, lost, start_agent,
    stats::{Goal, Samples, line},
};

/// Runs `execs` fork+execs of /bin/true from a bash loop inside `cg`; returns execs per second.
pub(super) fn storm(cg: &Cgroup, execs: u64) -> anyhow::Result<f64> {
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
    let start = std::time::Instant::now();
    let status = cmd.status().context("running the storm")?;
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("the storm failed: {status}");
    }
    Ok(execs as f64 / secs)
}

/// (total RSS, RSS of the ring buffer's mapping) in KiB. The ring buffer is kernel memory the
/// agent maps (twice, by design of BPF ring buffers): it shows in RSS without being its heap.
pub(super) fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
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

/// What one build's agent did over the rounds.
#[derive(Default, Clone)]
struct Runs {
    watched: Samples,
    unwatched: Samples,
    cpu_per_exec: Samples,
    rss: (u64, u64),
    generated: u64,
    recorded: u64,
    dropped: u64,
}

pub fn bench(builds: &Builds, execs: u64, rounds: u32) -> anyhow::Result<()> {
    let watched = Cgroup::new("bench-watched");
    let unwatched = Cgroup::new("bench-unwatched");
    eprintln!("[bench] exec: warm-up");
    storm(&watched, execs / 4)?;
    let mut base = Samples::default();
    let mut runs = vec![Runs::default(); builds.len()];
    for round in 0..rounds {
        if round % 2 == 0 {
            base.push(storm(&watched, execs)?);
        }
        for (b, _, build) in builds.iter() {
            let r = &mut runs[b];
            let agent = start_agent(build, &["--identity", &watched.identity_flag("bench")]);
            std::thread::sleep(Duration::from_secs(2));
            let rss = rss_kib(agent.pid())?;
            r.rss = r.rss.max(rss);
            let cpu0 = cpu_us(agent.pid())?;
            r.watched.push(storm(&watched, execs)?);
            std::thread::sleep(Duration::from_millis(500)); // the agent finishes the last events
            let cpu1 = cpu_us(agent.pid())?;
            r.unwatched.push(storm(&unwatched, execs)?);
            let records = agent.stop();
            // Per watched storm: bash itself + `execs` × true.
            r.generated += execs + 1;
            r.recorded += count(&records, "exec");
            r.dropped += lost(&records, "exec");
            r.cpu_per_exec.push((cpu1 - cpu0) / (execs + 1) as f64);
        }
        if round % 2 == 1 {
            base.push(storm(&watched, execs)?);
        }
        eprintln!("[bench] exec round {} of {rounds}", round + 1);
    }
    println!(
        "exec storm ({execs} fork+exec of /bin/true from bash, {rounds} rounds, medians (spread)):"
    );
    line("no agent", &base, " execs/s", 0, Goal::None);
    for (b, build, _) in builds.iter() {
        let r = &runs[b];
        println!("  {build}:");
        line(
            "unwatched cgroup, agent on / no agent",
            &r.unwatched.ratio_to(&base),
            "",
            3,
            Goal::AtLeast(0.99),
        );
        line(
            "watched cgroup / no agent",
            &r.watched.ratio_to(&base),
            "",
            3,
            Goal::AtLeast(0.97),
        );
        line(
            "agent CPU per watched exec",
            &r.cpu_per_exec,
            " us",
            1,
            Goal::None,
        );
        println!(
            "  execs generated / recorded / counted lost: {} / {} / {}",
            r.generated, r.recorded, r.dropped
        );
        println!(
            "  agent RSS idle: {:.1} MiB (goal < 64), of which {:.1} MiB is the mapped ring buffer",
            r.rss.0 as f64 / 1024.0,
            r.rss.1 as f64 / 1024.0
        );
    }
    Ok(())
}
