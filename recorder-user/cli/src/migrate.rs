//! `recorder migrate`: copy an embedded store into PostgreSQL, proofs intact.
use std::{io::Write as _, path::PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use recorder_store::integrity::checkpoint::{KEY_FILE, Signer};
use recorder_store_postgres::{PgLog, is_postgres_url, redact};

use crate::client::block_on;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  # stop the collector, then copy its data directory into a new, empty database
  systemctl stop recorder-collector
  RECORDER_STORE='postgres://recorder:PASSWORD@db.example/recorder' recorder migrate --data /var/lib/recorder
  # then run the collectors of the group on it, each with a copy of checkpoint-key.p8
  RECORDER_STORE='postgres://…' recorder collector --data /var/lib/recorder ...

Every record keeps its log index, hash-chain link and leaf hash; every checkpoint is copied with
its signature and the new head is signed with the same key, so `recorder verify --store URL`
finds the same roots, and proofs against checkpoints an auditor kept still verify. The log is
read and checked as it is copied: a log that fails verification is not copied. One transaction:
the database ends with the whole log or nothing. The database must hold no records.")]
pub(crate) struct MigrateArgs {
    /// The embedded store's data directory (its collector stopped).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// The PostgreSQL database to copy into (`postgres://…`).
    #[arg(
        long,
        value_name = "URL",
        env = "RECORDER_STORE",
        hide_env_values = true
    )]
    pub to: String,
    /// The CA certificate (PEM) of the database's server certificate (default: the system's).
    #[arg(long, value_name = "FILE", env = "RECORDER_STORE_CA")]
    pub store_ca: Option<PathBuf>,
}

pub(crate) fn run(args: &MigrateArgs) -> anyhow::Result<()> {
    if !is_postgres_url(&args.to) {
        bail!(
            "--to {:?}: give a postgres:// (or postgresql://) connection string",
            redact(&args.to)
        );
    }
    if !args.data.join(KEY_FILE).is_file() {
        bail!(
            "{} has no {KEY_FILE}: not a collector's data directory",
            args.data.display()
        );
    }
    let signer = Signer::load_or_create(&args.data)?;
    let migrated = block_on(async {
        let log = PgLog::open(
            &args.to,
            args.store_ca.as_deref(),
            signer,
            recorder_store::CheckpointPolicy::default(),
        )
        .await
        .with_context(|| redact(&args.to))?;
        let mut shown = 0u64;
        let migrated = log
            .import(&args.data, |copied| {
                if copied >= shown + 100_000 {
                    shown = copied;
                    eprint!("\rrecorder: copied {copied} records");
                    let _ = std::io::stderr().flush();
                }
            })
            .await?;
        if shown > 0 {
            eprintln!();
        }
        Ok::<_, anyhow::Error>(migrated)
    })??;
    println!(
        "migrated {} records and {} signed checkpoints to {}; signed head: tree size {}, root {}",
        migrated.records,
        migrated.checkpoints,
        redact(&args.to),
        migrated.records,
        migrated.root
    );
    Ok(())
}
