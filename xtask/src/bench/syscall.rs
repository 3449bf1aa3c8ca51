//! System-call-heavy loops, which pay for any program attached to the system-call path: a
//! 1-byte `dd` (2 million read/write calls, file I/O the agent does not capture) and a loop of
//! `getppid` (the cheapest system call), in an unwatched cgroup and in a watched one, against
//! the same loops with no agent.
use std::process::Command;

use recorder_tests::Cgroup;

use super::{
    Builds, start_agent,
    stats::{Goal, Samples, line},
    timed,
};

/// `getppid` calls per loop run.
pub const GETPPID_CALLS: u64 = 5_000_000;

/// The loops.
#[derive(Clone, Copy)]
enum Loop {
    Dd,
    Getppid,
}

impl Loop {
    const ALL: [Loop; 2] = [Loop::Dd, Loop::Getppid];

    fn label(self) -> &'static str {
        match self {
            Loop::Dd => "dd bs=1 count=1000000 (2M read/write calls)",
            Loop::Getppid => "getppid loop (5M calls)",
        }
    }

    /// The loop as a command run in `cg`.
    fn command(self, cg: &Cgroup) -> Command {
        match self {
            Loop::Dd => {
                let mut cmd = cg.command("/bin/dd");
                cmd.args(["if=/dev/zero", "of=/dev/null", "bs=1", "count=1000000"]);
                cmd
            }
            Loop::Getppid => {
                // This very program, run as `xtask syscall-loop N`.
                let exe = std::env::current_exe().unwrap_or_else(|_| "xtask".into());
                let mut cmd = cg.command(&exe.to_string_lossy());
                cmd.args(["syscall-loop", &GETPPID_CALLS.to_string()]);
                cmd
            }
        }
    }
}

/// `cargo xtask syscall-loop N`: N `getppid` calls, nothing else.
pub fn getppid_loop(calls: u64) {
    for _ in 0..calls {
        // SAFETY: getppid has no preconditions.
        std::hint::black_box(unsafe { libc::getppid() });
    }
}

pub fn bench(builds: &Builds, rounds: u32) -> anyhow::Result<()> {
    let watched = Cgroup::new("bench-sys-watched");
    let unwatched = Cgroup::new("bench-sys-unwatched");
    // Seconds per loop: [loop] without the agent, [loop][build] with it.
    let mut base = vec![Samples::default(); Loop::ALL.len()];
    let mut outside = vec![vec![Samples::default(); builds.len()]; Loop::ALL.len()];
    let mut inside = outside.clone();
    for l in Loop::ALL {
        timed(&mut l.command(&unwatched))?; // warm-up
    }
    for round in 0..rounds {
        // The baseline runs before the agents on even rounds and after them on odd ones, so a
        // drift of the machine does not favour one side.
        let baseline = |base: &mut Vec<Samples>| -> anyhow::Result<()> {
            for (i, l) in Loop::ALL.into_iter().enumerate() {
                base[i].push(timed(&mut l.command(&unwatched))?);
            }
            Ok(())
        };
        if round % 2 == 0 {
            baseline(&mut base)?;
        }
        for (b, _, build) in builds.iter() {
            let agent = start_agent(build, &["--identity", &watched.identity_flag("bench")]);
            for (i, l) in Loop::ALL.into_iter().enumerate() {
                outside[i][b].push(timed(&mut l.command(&unwatched))?);
                inside[i][b].push(timed(&mut l.command(&watched))?);
            }
            drop(agent);
        }
        if round % 2 == 1 {
            baseline(&mut base)?;
        }
        eprintln!("[bench] syscall round {} of {rounds}", round + 1);
    }
    for (i, l) in Loop::ALL.into_iter().enumerate() {
        println!("{}, {rounds} rounds, medians (spread):", l.label());
        line("no agent", &base[i], " s", 3, Goal::None);
        for (b, build, _) in builds.iter() {
            println!("  {build}:");
            // Speed ratios: the time without the agent over the time with it.
            line(
                "unwatched, agent on / no agent",
                &base[i].ratio_to(&outside[i][b]),
                "",
                3,
                Goal::AtLeast(0.99),
            );
            line(
                "watched (not captured) / no agent",
                &base[i].ratio_to(&inside[i][b]),
                "",
                3,
                Goal::AtLeast(0.97),
            );
        }
    }
    Ok(())
}
