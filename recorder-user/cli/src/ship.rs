//! `recorder ship`: send an existing JSON Lines file of records (what `recorder agent --jsonl`
//! writes) to a collector, through a spool, exactly as the agent does.
use std::{path::PathBuf, time::Duration};

use clap::Args;
use recorder_agent::{ShipFile, ship_file};

use crate::client::TlsArgs;

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
pub(crate) struct ShipArgs {
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

pub(crate) fn run(args: ShipArgs) -> anyhow::Result<()> {
    let shipped = ship_file(&ShipFile {
        jsonl: args.jsonl,
        spool: args.spool,
        spool_max_mib: args.spool_max_mib,
        host: args.host,
        timeout: (args.timeout > 0).then(|| Duration::from_secs(args.timeout)),
        tls: args.tls.client_tls(),
    })?;
    if shipped.dropped > 0 {
        eprintln!(
            "recorder: the spool is full: {} records were not spooled (a loss record says so)",
            shipped.dropped
        );
    }
    println!(
        "shipped {} records; everything in the spool is stored",
        shipped.records
    );
    Ok(())
}
