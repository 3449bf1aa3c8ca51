//! `cargo xtask bench --only approve`: what approval rules cost the processes they watch. One
//! agent watches two identities; `gated` has an exec rule that no command meets, so every exec
//! of it is stopped in the kernel, looked at by the agent and continued; `plain` has no rule.
//! The same fork+exec storm runs in each, interleaved; the ratio of their rates, and the time
//! one stop-look-continue adds to an exec. A real collector is started (rules need one).
use std::{
    io::BufRead as _,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use recorder_tests::Cgroup;

use super::{
    Builds,
    exec::storm,
    start_agent,
    stats::{Goal, Samples, line},
};

/// A collector on a fresh PKI in `dir`; returns it and its port.
fn collector(
    bin: &std::path::Path,
    dir: &std::path::Path,
) -> anyhow::Result<(std::process::Child, u16)> {
    let pki = dir.join("pki");
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let status = Command::new(bin)
            .args(args)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("recorder {args:?}: {status}");
        }
        Ok(())
    };
    let pki_s = pki.to_str().context("path")?;
    run(&["pki", "init", "--dir", pki_s])?;
    run(&[
        "pki", "issue", "--dir", pki_s, "--role", "agent", "--name", "web-1",
    ])?;
    let mut child = Command::new(bin)
        .args(["collector", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"))
        .arg("--tls-ca")
        .arg(pki.join("ca.pem"))
        .arg("--tls-cert")
        .arg(pki.join("collector.pem"))
        .arg("--tls-key")
        .arg(pki.join("collector-key.pem"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut first)?;
    let port = first
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("the collector said {first:?}"))?;
    Ok((child, port))
}

pub fn bench(builds: &Builds, execs: u64, rounds: u32) -> anyhow::Result<()> {
    let gated = Cgroup::new("bench-gated");
    let plain = Cgroup::new("bench-plain");
    let dir = tempfile::tempdir()?;
    let mut results = Vec::new();
    for (_, label, build) in builds.iter() {
        let (mut col, port) = collector(&build.path, dir.path())?;
        let config = dir.path().join("agent.toml");
        std::fs::write(
            &config,
            "[[approval.rule]]\nname = \"never\"\nidentities = [\"gated\"]\n\
             exec = \"no-such-program-anywhere *\"\n",
        )?;
        let pki = dir.path().join("pki");
        let p = |name: &str| pki.join(name).to_string_lossy().into_owned();
        let spool = dir.path().join("spool");
        let args = [
            "--config".to_string(),
            config.to_string_lossy().into_owned(),
            "--identity".into(),
            gated.identity_flag("gated"),
            "--identity".into(),
            plain.identity_flag("plain"),
            "--host".into(),
            "web-1".into(),
            "--collector".into(),
            format!("https://127.0.0.1:{port}"),
            "--tls-ca".into(),
            p("ca.pem"),
            "--tls-cert".into(),
            p("web-1.pem"),
            "--tls-key".into(),
            p("web-1-key.pem"),
            "--spool".into(),
            spool.to_string_lossy().into_owned(),
        ];
        let agent = start_agent(build, &args.iter().map(String::as_str).collect::<Vec<_>>());
        std::thread::sleep(Duration::from_secs(1));
        storm(&gated, execs / 4)?;
        let (mut g, mut n) = (Samples::default(), Samples::default());
        for round in 0..rounds {
            if round % 2 == 0 {
                g.push(storm(&gated, execs)?);
                n.push(storm(&plain, execs)?);
            } else {
                n.push(storm(&plain, execs)?);
                g.push(storm(&gated, execs)?);
            }
            eprintln!("[bench] approve round {} of {rounds}", round + 1);
        }
        let records = agent.stop();
        let _ = col.kill();
        let _ = col.wait();
        let _ = std::fs::remove_dir_all(dir.path().join("data"));
        let _ = std::fs::remove_dir_all(&spool);
        let _ = std::fs::remove_dir_all(&pki);
        let approvals = super::count(&records, "approval");
        results.push((label.to_string(), g, n, approvals));
    }
    println!(
        "approval rules ({execs} fork+exec of /bin/true from bash per run, {rounds} rounds, medians (spread)):"
    );
    for (label, g, n, approvals) in &results {
        println!("  {label}:");
        line("identity with an exec rule, execs/s", g, "", 0, Goal::None);
        line("identity without rules, execs/s", n, "", 0, Goal::None);
        line("with rule / without", &g.ratio_to(n), "", 3, Goal::None);
        let added = 1e6 / g.median() - 1e6 / n.median();
        println!("  time one stop-look-continue adds to an exec: {added:.0} us (median rates)");
        println!("  approval records (none expected: the rule meets no command): {approvals}");
    }
    Ok(())
}
