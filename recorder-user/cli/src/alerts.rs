//! `recorder alerts test`: try alert rules on a stored log before turning them on.
use std::path::PathBuf;

use clap::{Args, Subcommand};
use recorder_collector::{TrySource, try_rules};

#[derive(Debug, Args)]
pub(crate) struct AlertsArgs {
    #[command(subcommand)]
    command: AlertsCommand,
}

#[derive(Debug, Subcommand)]
enum AlertsCommand {
    /// Run alert rules over a stored log (read only) and print what would have fired.
    Test(TestArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  recorder alerts test --rules alerts.toml --data /var/lib/recorder
  recorder alerts test --rules alerts.toml --store 'postgres://auditor@db.example/recorder' --from 1500000

Each alert is printed as the webhook would receive it (one JSON object per line: rule, severity,
detail, log_index, records, record), then a summary on stderr. Records before --from only feed
the rules' memory (threshold windows, values a first_seen rule has seen), as a running
collector's history does; times are the records' own, so a rule fires as it would have live.
Exits 0 whether or not anything fired.")]
struct TestArgs {
    /// The rules file (the collector's --alerts file; its webhooks are not called).
    #[arg(long, value_name = "FILE")]
    rules: PathBuf,
    /// An embedded store's data directory (read only; a copy is fine).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "store",
        conflicts_with = "store"
    )]
    data: Option<PathBuf>,
    /// A PostgreSQL log (read only): `postgres://…`.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// With --store: the CA certificate (PEM) of the database's server certificate.
    #[arg(long, value_name = "FILE", requires = "store")]
    store_ca: Option<PathBuf>,
    /// Report alerts from this log index on.
    #[arg(long, value_name = "INDEX", default_value_t = 0)]
    from: u64,
}

pub(crate) fn run(args: &AlertsArgs) -> anyhow::Result<()> {
    let AlertsCommand::Test(args) = &args.command;
    let source = match (&args.data, &args.store) {
        (Some(dir), _) => TrySource::Data(dir),
        (None, Some(url)) => TrySource::Postgres {
            url,
            ca: args.store_ca.as_deref(),
        },
        (None, None) => anyhow::bail!("give --data DIR or --store URL"),
    };
    let tried = try_rules(&args.rules, &source, args.from, |alert| println!("{alert}"))?;
    eprintln!(
        "{} records read, {} alerts from log index {}",
        tried.records, tried.alerts, args.from
    );
    Ok(())
}
