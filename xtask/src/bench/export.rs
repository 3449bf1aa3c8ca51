//! `cargo xtask bench --only export`: exporters must not slow ingest. Each round runs
//! `recorder bench-collector` (embedded store, 3 agents over gRPC/mTLS) once with no exporter
//! and once with three: syslog (to Debian's rsyslog over TCP on this machine), OTLP over gRPC
//! (to tests/peers/otlp_receiver.py, the official generated classes, decoding every request)
//! and files, interleaved; the ratio of the ingest rates and each exporter's delivery rate
//! (from the start of ingest until its cursor passed the last record), medians over the rounds.
use std::process::Command;

use recorder_tests::rsyslog::Rsyslog;

use super::{
    stats::{Goal, Samples, line},
    store::{checked, number_after},
};
use crate::util::recorder_bin;

const RECORDS: &str = "300000";

struct Run {
    ingest: f64,
    syslog: Option<f64>,
    otlp: Option<f64>,
    files: Option<f64>,
}

/// The Python OTLP receiver, counting what it decodes; killed on drop.
struct OtlpReceiver(std::process::Child);

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn bench_collector(extra: &[&str]) -> anyhow::Result<Run> {
    let out = checked(
        Command::new(recorder_bin())
            .args(["bench-collector", "--records", RECORDS, "--samples", "10"])
            .args(extra)
            .env("RECORDER_LOG", "warn"),
    )?;
    let rate = |prefix: &str| -> anyhow::Result<Option<f64>> {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .map(|l| number_after(l, " s = ").or_else(|_| number_after(l, " = ")))
            .transpose()
    };
    Ok(Run {
        ingest: rate("end to end")?.ok_or_else(|| anyhow::anyhow!("no ingest rate in:\n{out}"))?,
        syslog: rate("exporter syslog:")?,
        otlp: rate("exporter otlp:")?,
        files: rate("exporter files:")?,
    })
}

pub fn bench(rounds: u32) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let _rsyslog = Rsyslog::start(&dir.path().join("rsyslog"), port, None);
    let (grpc, http) = (free_port()?, free_port()?);
    let script = crate::util::root().join("tests/peers/otlp_receiver.py");
    let _otlp = OtlpReceiver(
        Command::new("python3")
            .arg(script)
            .args([grpc.to_string(), http.to_string()])
            .arg(dir.path().join("otlp-counts"))
            .env("OTLP_RECEIVER_COUNT", "1")
            .spawn()?,
    );
    while std::net::TcpStream::connect(("127.0.0.1", grpc)).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let config = dir.path().join("collector.toml");
    // confirm_ms short so the delivery rate measures sending, not the confirmation window.
    std::fs::write(
        &config,
        format!(
            "[[export]]\nname = \"syslog\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{port}\"\nconfirm_ms = 100\n\n\
             [[export]]\nname = \"otlp\"\ntype = \"otlp\"\nendpoint = \"http://127.0.0.1:{grpc}\"\n\n\
             [[export]]\nname = \"files\"\ntype = \"file\"\ndir = \"{}\"\n",
            dir.path().join("files").display()
        ),
    )?;
    let config = config.to_string_lossy().into_owned();
    let (mut without, mut with) = (Samples::default(), Samples::default());
    let (mut syslog, mut otlp, mut files) =
        (Samples::default(), Samples::default(), Samples::default());
    for round in 0..rounds {
        eprintln!("[bench] export round {} of {rounds}", round + 1);
        without.push(bench_collector(&[])?.ingest);
        let _ = std::fs::remove_dir_all(dir.path().join("files"));
        let run = bench_collector(&["--config", &config])?;
        with.push(run.ingest);
        syslog.push(
            run.syslog
                .ok_or_else(|| anyhow::anyhow!("no syslog rate"))?,
        );
        otlp.push(run.otlp.ok_or_else(|| anyhow::anyhow!("no otlp rate"))?);
        files.push(run.files.ok_or_else(|| anyhow::anyhow!("no files rate"))?);
    }
    println!(
        "exporters, {RECORDS} records from 3 agents, embedded store ({rounds} rounds, median (min..max)):"
    );
    line("ingest, no exporter", &without, " rec/s", 0, Goal::None);
    line(
        "ingest, syslog + OTLP + file exporters",
        &with,
        " rec/s",
        0,
        Goal::None,
    );
    line(
        "  with / without",
        &with.ratio_to(&without),
        "",
        2,
        Goal::AtLeast(0.9),
    );
    line(
        "syslog (rsyslog, TCP) delivery",
        &syslog,
        " rec/s",
        0,
        Goal::None,
    );
    line("OTLP (gRPC) delivery", &otlp, " rec/s", 0, Goal::None);
    line("file delivery", &files, " rec/s", 0, Goal::None);
    Ok(())
}
