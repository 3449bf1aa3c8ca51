//! `recorder collector`: the remote, tamper-evident store agents send to.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;
use recorder_collector::{
    CheckpointPolicy, CollectorPlan, DEFAULT_SEGMENT_BYTES, StoreLocation, is_postgres_url,
};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  recorder pki init --dir pki && recorder pki issue --dir pki --role agent --name web-1
  recorder collector --listen 0.0.0.0:7443 --data /var/lib/recorder \\
      --tls-ca pki/ca.pem --tls-crl pki/crl.pem --tls-cert pki/collector.pem --tls-key pki/collector-key.pem \\
      --alerts /etc/recorder/alerts.toml --metrics-addr 127.0.0.1:9465 --ui-listen 0.0.0.0:7444

Clients must present a certificate signed by --tls-ca: agents (OU=agent) may only send records
for the host named by their CN; operators (OU=operator) may only read. There is no plaintext
listener. `recorder pki revoke` takes a certificate back: with --tls-crl, the collector refuses
it within seconds, and ends the streams it holds open. The data directory holds the append-only log, signed checkpoints and the signing key
(created on first start); see docs/collector.md.

Several collectors on one PostgreSQL database (each with the same signing key: copy
checkpoint-key.p8 from the first one's data directory):
  RECORDER_STORE='postgres://recorder:PASSWORD@db.example/recorder' \
  recorder collector --listen 0.0.0.0:7443 --data /var/lib/recorder --tls-ca ... --tls-cert ... --tls-key ...
Agents then name every collector: --collector https://c1:7443 --collector https://c2:7443.")]
pub(crate) struct CollectorArgs {
    /// Address for gRPC over mutual TLS (port 0 picks a free port; the chosen address is printed).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Data directory (created if missing): the embedded log, and the checkpoint signing key.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Where the log lives: `embedded` (segment files in --data, one collector) or a
    /// PostgreSQL connection string (`postgres://user:password@host:port/db`, shared by a
    /// group of collectors). Prefer the environment variable: a password on the command line
    /// is visible to every user of the host.
    #[arg(
        long,
        value_name = "embedded|URL",
        env = "RECORDER_STORE",
        default_value = "embedded",
        hide_env_values = true
    )]
    pub store: String,
    /// The CA certificate (PEM) of the database's server certificate, checked whenever the
    /// connection uses TLS (`sslmode=require` in the connection string makes TLS required;
    /// default `prefer`). Default: the system's CAs.
    #[arg(long, value_name = "FILE", env = "RECORDER_STORE_CA")]
    pub store_ca: Option<PathBuf>,
    /// CA certificate that client certificates must chain to (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: PathBuf,
    /// The CA's revocation list (`crl.pem`, written by `recorder pki init` and `recorder pki
    /// revoke`): certificates it names are refused, agents and operators alike, and so are
    /// console tokens signed with them. Read again within two seconds of a change; a changed
    /// list that is not signed by the CA, or older than the one in force, is refused and the
    /// one in force stays (logged, and counted in /metrics).
    #[arg(long, value_name = "FILE", env = "RECORDER_TLS_CRL")]
    pub tls_crl: Option<PathBuf>,
    /// The collector's certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: PathBuf,
    /// The collector's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: PathBuf,
    /// Alert rules and webhooks (TOML; see docs/collector.md).
    #[arg(long, value_name = "FILE")]
    pub alerts: Option<PathBuf>,
    /// The collector's configuration file (TOML): `[[export]]` tables that deliver the log to
    /// syslog receivers and rotated JSON Lines files (see docs/export.md).
    #[arg(long, value_name = "FILE", env = "RECORDER_COLLECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Serve the web console on this address (HTTPS with the collector's certificate; port 0
    /// picks a free port, printed as `console on https://ADDR`). Operators log in with an
    /// operator token (`recorder token`) or present an operator certificate; see
    /// docs/console.md.
    #[arg(long, value_name = "ADDR", env = "RECORDER_UI_LISTEN")]
    pub ui_listen: Option<SocketAddr>,
    /// Serve Prometheus /metrics on this address (plain HTTP).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Segment file size in MiB before a new one is started (default 64).
    #[arg(long, hide = true)]
    pub segment_mib: Option<u64>,
    /// Sign a checkpoint after this many new records (default 100000)...
    #[arg(long)]
    pub checkpoint_records: Option<u64>,
    /// ...or after this many seconds with new records (default 10; and always on shutdown).
    #[arg(long)]
    pub checkpoint_secs: Option<u64>,
}

pub(crate) fn run(args: CollectorArgs) -> anyhow::Result<()> {
    let defaults = CheckpointPolicy::default();
    let store = match args.store.as_str() {
        "embedded" => StoreLocation::Embedded,
        url if is_postgres_url(url) => StoreLocation::Postgres {
            url: url.to_string(),
            ca: args.store_ca.clone(),
        },
        other => anyhow::bail!(
            "--store {other:?}: give `embedded` or a postgres:// (or postgresql://) connection string"
        ),
    };
    let (exports, retention) = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            let bad = |e: &dyn std::fmt::Display| anyhow::anyhow!("{}: {e}", path.display());
            (
                recorder_export::config::parse(&text).map_err(|e| bad(&e))?,
                recorder_retention::config::parse(&text).map_err(|e| bad(&e))?,
            )
        }
        None => (Vec::new(), None),
    };
    let plan = CollectorPlan {
        listen: args.listen,
        store,
        data: args.data,
        ca: args.tls_ca,
        crl: args.tls_crl,
        cert: args.tls_cert,
        key: args.tls_key,
        rules: args.alerts,
        metrics_addr: args.metrics_addr,
        segment_bytes: args
            .segment_mib
            .map_or(DEFAULT_SEGMENT_BYTES, |mib| mib.max(1) * 1024 * 1024),
        checkpoint: CheckpointPolicy {
            every_records: args
                .checkpoint_records
                .map_or(defaults.every_records, |n| n.max(1)),
            every: args
                .checkpoint_secs
                .map_or(defaults.every, |s| Duration::from_secs(s.max(1))),
        },
        exports,
        retention,
        console: args.ui_listen,
    };
    Ok(recorder_collector::run(plan)?)
}
