//! `recorder ship`: send an existing JSON Lines file of records (what `recorder agent --jsonl`
//! writes) to a collector, through a spool, exactly as the agent does.
use std::{io::BufRead as _, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use clap::Args;

use super::client::{TlsArgs, block_on};
use crate::{record::Record, spool::Spool, transport::sender::Sender};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  # ship records written while the collector was unreachable (agent certificate of host web-1)
  recorder ship --jsonl /var/log/recorder.jsonl --spool /var/lib/recorder/ship-spool \\
      --collector https://collector.example:7443 --tls-ca ca.pem --tls-cert web-1.pem --tls-key web-1-key.pem

  # only finish sending what an earlier, interrupted run left in the spool
  recorder ship --spool /var/lib/recorder/ship-spool --collector ... --tls-ca ... --tls-cert ... --tls-key ...

Every line must be a record of one host (the certificate's name). The lines are appended to the
spool, then sent; the command returns once the collector acknowledged all of them as stored. If
it is interrupted, run it again with the same --spool and no --jsonl: nothing is sent twice.")]
pub struct ShipArgs {
    /// The JSON Lines file to send.
    #[arg(long, value_name = "FILE")]
    pub jsonl: Option<PathBuf>,
    /// Spool directory (write-ahead log of what is not yet acknowledged).
    #[arg(long, value_name = "DIR")]
    pub spool: PathBuf,
    /// Spool size bound in MiB.
    #[arg(long, default_value_t = 1024)]
    pub spool_max_mib: u64,
    /// Host name sent with the batches (default: the `host` of the records).
    #[arg(long)]
    pub host: Option<String>,
    /// Give up after this many seconds of failing to reach the collector (0 = keep trying).
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,
    #[command(flatten)]
    pub tls: TlsArgs,
}

pub fn run(args: ShipArgs) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    let mut host = args.host.clone();
    if let Some(path) = &args.jsonl {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        for (n, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let rec: Record = serde_json::from_slice(&line)
                .with_context(|| format!("{} line {}: not a record", path.display(), n + 1))?;
            match &host {
                None => host = Some(rec.host.clone()),
                Some(h) if *h != rec.host => {
                    bail!(
                        "{} line {}: host {:?}, but the file's records are of host {h:?}",
                        path.display(),
                        n + 1,
                        rec.host
                    )
                }
                Some(_) => {}
            }
            lines.push(line);
        }
    }
    let host = match host {
        Some(h) => h,
        None => std::fs::read_to_string(args.spool.join("host"))
            .map(|s| s.trim().to_string())
            .map_err(|_| anyhow::anyhow!("no host: give --host, or --jsonl with records in it"))?,
    };
    let (mut spool, recovered) =
        Spool::open(&args.spool, &host, args.spool_max_mib.max(1) * 1024 * 1024)?;
    for problem in &recovered {
        eprintln!("recorder: spool damaged, recovered what was valid: {problem}");
    }
    std::fs::write(args.spool.join("host"), format!("{host}\n"))
        .context("writing the spool's host file")?;
    let mut dropped = 0u64;
    for line in &lines {
        if !spool.append(line)? {
            dropped += 1;
        }
    }
    spool.flush()?;
    if dropped > 0 {
        eprintln!(
            "recorder: the spool is full: {dropped} records were not spooled (a loss record says so)"
        );
    }
    let until = spool.next_sequence();
    let reader = spool.reader();
    let sender = Sender::new(
        args.tls.client_tls(),
        reader.clone(),
        host,
        spool.boot().to_string(),
    );
    let deadline = (args.timeout > 0).then(|| Duration::from_secs(args.timeout));
    block_on(sender.run(Some(until), true, deadline))??;
    println!(
        "shipped {} records; everything in the spool is stored",
        lines.len()
    );
    Ok(())
}
