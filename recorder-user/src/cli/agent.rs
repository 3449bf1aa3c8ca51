//! `recorder agent`: load the eBPF programs and record the watched identities.
use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use clap::Args;

use crate::{
    agent::{self, AgentPlan},
    config::{self, AgentConfig, CollectorConfig, IdentityConfig},
    sink::{Sink, jsonl::JsonlSink, spool::SpoolSink},
    spool::Spool,
    transport::{
        sender::{self, Sender},
        tls::ClientTls,
    },
};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  # record everything run in one cgroup v2 directory as identity \"claude\"
  recorder agent --identity claude=/sys/fs/cgroup/agents/claude --jsonl /var/log/recorder.jsonl

  # a systemd unit, with metrics on :9464 (GET /metrics, GET /readyz)
  recorder agent --identity ops=unit:ops-bot.service --jsonl out.jsonl --metrics-addr 127.0.0.1:9464

  # ship to a remote collector (agent certificate named after this host), spooling meanwhile
  recorder agent --identity claude=agents/claude --collector https://collector.example:7443 \\
      --tls-ca ca.pem --tls-cert web-1.pem --tls-key web-1-key.pem --spool /var/lib/recorder/spool

Processes started by a watched process stay attributed to its identity even if they move to
another cgroup (a `notice` with reason `cgroup_migration` says so). Cgroups created later below a
watched cgroup are watched too. Needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN).")]
pub struct AgentArgs {
    /// Watch an identity: NAME=CGROUP, where CGROUP is a cgroup v2 directory (absolute, or
    /// relative to the cgroup v2 mount) or unit:NAME.service. Repeatable; adds to the config file.
    #[arg(long = "identity", value_name = "NAME=CGROUP")]
    pub identities: Vec<String>,
    /// Append records to this file as JSON Lines.
    #[arg(long, value_name = "PATH")]
    pub jsonl: Option<PathBuf>,
    /// TOML configuration file (see docs/configuration.md); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve Prometheus /metrics and /readyz on this address.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Host name written in every record (default: the kernel's host name).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Kernel ring buffer size in KiB (power of two; default 16384).
    #[arg(long, value_name = "KIB")]
    pub ring_buffer_kib: Option<u32>,
    /// Which processes carry the OpenSSL probes: all (every libssl user traps, none of a watched
    /// process's TLS is missed) or watched (only watched processes trap; a very short-lived
    /// client may get a notice instead of its first bytes). Default: all.
    #[arg(long, value_enum, value_name = "SCOPE")]
    pub tls_probes: Option<config::TlsProbes>,
    /// Send records to this collector (https://HOST:PORT) over mutual TLS, through --spool.
    #[arg(long, value_name = "URL")]
    pub collector: Option<String>,
    /// CA certificate that signed the collector's certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// This host's agent certificate (PEM; its CN must be the host name recorded).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The agent certificate's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Spool directory: every record is written here before it is sent, and deleted only once
    /// the collector acknowledged it as stored.
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Spool size bound in MiB; when full, new records are dropped and a `loss` record counts them.
    #[arg(long, value_name = "MIB")]
    pub spool_max_mib: Option<u64>,
    /// Kernel BTF to read struct offsets from.
    #[arg(long, value_name = "FILE", default_value = "/sys/kernel/btf/vmlinux")]
    pub btf: PathBuf,
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let plan = plan(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(agent::run(plan))
}

/// Merges the config file and the flags into what the agent will do, checking everything that
/// can be checked before touching the kernel.
fn plan(args: &AgentArgs) -> anyhow::Result<AgentPlan> {
    let mut config = match &args.config {
        Some(path) => AgentConfig::load(path)?,
        None => AgentConfig::default(),
    };
    for spec in &args.identities {
        config.identities.push(IdentityConfig::from_flag(spec)?);
    }
    if config.identities.is_empty() {
        anyhow::bail!(
            "no identity to watch: give --identity NAME=CGROUP or [[identity]] in --config"
        );
    }
    let mut names = std::collections::HashSet::new();
    for identity in &config.identities {
        if !names.insert(identity.name.as_str()) {
            anyhow::bail!("identity {:?} is given twice", identity.name);
        }
    }
    if let Some(kib) = args.ring_buffer_kib {
        config::check_ring_buffer_kib(kib).map_err(anyhow::Error::msg)?;
        config.ring_buffer_kib = Some(kib);
    }
    let jsonl = args.jsonl.clone().or(config.jsonl.clone());
    let host = args
        .host
        .clone()
        .or(config.host.clone())
        .unwrap_or_else(agent::kernel_hostname);
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(path) = &jsonl {
        sinks.push(Box::new(JsonlSink::open(path)?));
    }
    if let Some(collector) =
        collector_sink(args, config.collector.take().unwrap_or_default(), &host)?
    {
        sinks.push(collector);
    }
    if sinks.is_empty() {
        anyhow::bail!(
            "nowhere to record to: give --jsonl PATH and/or --collector URL (or the same in the config)"
        );
    }
    Ok(AgentPlan {
        host,
        identities: config.identities,
        metrics_addr: args.metrics_addr.or(config.metrics_addr),
        ring_buffer_kib: config.ring_buffer_kib.unwrap_or(16 * 1024),
        tls_probes: args.tls_probes.or(config.tls_probes).unwrap_or_default(),
        btf_path: args.btf.clone(),
        sinks,
    })
}

/// `--collector`: the spool sink, and the sender thread that empties the spool.
fn collector_sink(
    args: &AgentArgs,
    file: CollectorConfig,
    host: &str,
) -> anyhow::Result<Option<Box<dyn Sink>>> {
    let Some(url) = args.collector.clone().or(file.url) else {
        return Ok(None);
    };
    let need = |flag: Option<PathBuf>, key: Option<PathBuf>, name: &str| {
        flag.or(key).ok_or_else(|| {
            anyhow::anyhow!(
                "--collector needs --{name} (or {} in [collector])",
                name.replace('-', "_")
            )
        })
    };
    let tls = ClientTls {
        url,
        ca: need(args.tls_ca.clone(), file.tls_ca, "tls-ca")?,
        cert: need(args.tls_cert.clone(), file.tls_cert, "tls-cert")?,
        key: need(args.tls_key.clone(), file.tls_key, "tls-key")?,
    };
    // Fail now on an unusable URL or unreadable certificate, not in the sender thread later.
    tls.endpoint()?;
    let spool_dir = need(args.spool.clone(), file.spool, "spool")?;
    let max_mib = args
        .spool_max_mib
        .or(file.spool_max_mib)
        .unwrap_or(1024)
        .max(1);
    let (spool, recovered) = Spool::open(&spool_dir, host, max_mib * 1024 * 1024)?;
    for problem in recovered {
        tracing::warn!(%problem, "spool damaged; recovered what was valid (a notice record says so)");
    }
    let sender = Sender::new(
        tls,
        spool.reader(),
        host.to_string(),
        spool.boot().to_string(),
    );
    sender::spawn(sender).context("starting the sender thread")?;
    Ok(Some(Box::new(SpoolSink::new(spool))))
}
