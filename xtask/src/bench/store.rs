//! `cargo xtask bench --only store`: the collector's ingest end to end over gRPC/mTLS on the
//! embedded store, on PostgreSQL with one collector and with two, and the latency from the
//! agent's spool to an acknowledged record. Each round runs `recorder bench-collector` once per
//! store, interleaved, against a PostgreSQL 15 started here with its default durability
//! (fsync and synchronous commit on: an acknowledged record is on disk, as in the embedded
//! store), shared_buffers 1 GiB. Medians over the rounds.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::stats::{Goal, Samples, line};
use crate::util::recorder_bin;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const RECORDS: &str = "300000";

/// A PostgreSQL cluster of its own in a temporary directory, stopped on drop.
struct Postgres {
    dir: PathBuf,
    port: u16,
}

fn as_postgres(program: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--", &format!("{PG_BIN}/{program}")]);
    cmd
}

pub(super) fn checked(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Postgres {
    fn start() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("recorder-bench-pg-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        checked(Command::new("chown").arg("postgres").arg(&dir))?;
        let data = dir.join("data");
        checked(
            as_postgres("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-A", "trust", "-U", "postgres"]),
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        // shared_buffers as PostgreSQL's documentation advises for a database server (a
        // quarter of memory, here capped at 1 GiB): the default 128 MiB is smaller than one
        // run's records and indexes, and would measure backends writing out pages instead.
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nshared_buffers = '1GB'\n",
            dir.display()
        );
        let path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path)?;
        text.push_str(&conf);
        std::fs::write(&path, text)?;
        checked(
            as_postgres("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("log"))
                .args(["-w", "start"]),
        )?;
        Ok(Self { dir, port })
    }

    /// A new, empty database.
    fn database(&self, name: &str) -> anyhow::Result<String> {
        checked(
            Command::new("psql")
                .args(["-X", "-q", "-h"])
                .arg(&self.dir)
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                ])
                .args(["-c", &format!("CREATE DATABASE {name}")]),
        )?;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.port
        ))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The number after `key` in `text` (`... = 123.4 records/s`).
pub(super) fn number_after(text: &str, key: &str) -> anyhow::Result<f64> {
    let at = text
        .find(key)
        .with_context(|| format!("no {key:?} in {text}"))?
        + key.len();
    let digits: String = text[at..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    Ok(digits.parse()?)
}

/// The figures of one run of `recorder bench-collector`.
struct Run {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn bench_collector(bin: &Path, extra: &[&str]) -> anyhow::Result<Run> {
    let out = checked(
        Command::new(bin)
            .args(["bench-collector", "--records", RECORDS, "--samples", "300"])
            .args(extra)
            .env("RECORDER_LOG", "warn"),
    )?;
    let find = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .map(str::to_string)
            .with_context(|| format!("no {prefix:?} line in:\n{out}"))
    };
    let end_to_end = find("end to end")?;
    let rate = number_after(&end_to_end, " s = ")?;
    let latency = find("latency spool append -> stored and acknowledged")?;
    Ok(Run {
        rate,
        p50_ms: number_after(&latency, "p50")?,
        p99_ms: number_after(&latency, "p99")?,
    })
}

#[derive(Default)]
struct Measure {
    rate: Samples,
    p50: Samples,
    p99: Samples,
}

impl Measure {
    fn push(&mut self, r: &Run) {
        self.rate.push(r.rate);
        self.p50.push(r.p50_ms);
        self.p99.push(r.p99_ms);
    }
}

pub fn bench(rounds: u32) -> anyhow::Result<()> {
    let bin = recorder_bin();
    let pg = Postgres::start()?;
    let (mut embedded, mut one, mut two) =
        (Measure::default(), Measure::default(), Measure::default());
    for round in 0..rounds {
        eprintln!("[bench] store round {} of {rounds}", round + 1);
        embedded.push(&bench_collector(&bin, &[])?);
        let url = pg.database(&format!("one_{round}"))?;
        one.push(&bench_collector(&bin, &["--store", &url])?);
        let url = pg.database(&format!("two_{round}"))?;
        two.push(&bench_collector(
            &bin,
            &["--store", &url, "--collectors", "2"],
        )?);
    }
    println!(
        "collector ingest, {RECORDS} records from 3 agents over gRPC/mTLS, acknowledged once durable ({rounds} rounds, median (min..max)):"
    );
    line(
        "embedded store",
        &embedded.rate,
        " rec/s",
        0,
        Goal::AtLeast(150_000.0),
    );
    line(
        "PostgreSQL, one collector",
        &one.rate,
        " rec/s",
        0,
        Goal::AtLeast(50_000.0),
    );
    line(
        "PostgreSQL, two collectors",
        &two.rate,
        " rec/s",
        0,
        Goal::None,
    );
    line(
        "  two collectors / one",
        &two.rate.ratio_to(&one.rate),
        "",
        2,
        Goal::AtLeast(1.0),
    );
    println!("latency from the spool to an acknowledged record, 1 record per 10 ms:");
    line("embedded p50", &embedded.p50, " ms", 2, Goal::None);
    line("embedded p99", &embedded.p99, " ms", 2, Goal::None);
    line("PostgreSQL p50", &one.p50, " ms", 2, Goal::None);
    line("PostgreSQL p99", &one.p99, " ms", 2, Goal::AtMost(50.0));
    Ok(())
}
