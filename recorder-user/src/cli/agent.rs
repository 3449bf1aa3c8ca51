//! `recorder agent`: load the eBPF programs and record the watched identities.
use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use clap::Args;

use crate::{
    agent::{self, AgentPlan},
    config::{self, AgentConfig, IdentityConfig},
    sink::{Sink, jsonl::JsonlSink},
};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  # record everything run in one cgroup v2 directory as identity \"claude\"
  recorder agent --identity claude=/sys/fs/cgroup/agents/claude --jsonl /var/log/recorder.jsonl

  # a systemd unit, with metrics on :9464 (GET /metrics, GET /readyz)
  recorder agent --identity ops=unit:ops-bot.service --jsonl out.jsonl --metrics-addr 127.0.0.1:9464

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
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(path) = &jsonl {
        sinks.push(Box::new(JsonlSink::open(path)?));
    }
    if sinks.is_empty() {
        anyhow::bail!("nowhere to record to: give --jsonl PATH (or jsonl = \"...\" in the config)");
    }
    Ok(AgentPlan {
        host: args
            .host
            .clone()
            .or(config.host.clone())
            .unwrap_or_else(agent::kernel_hostname),
        identities: config.identities,
        metrics_addr: args.metrics_addr.or(config.metrics_addr),
        ring_buffer_kib: config.ring_buffer_kib.unwrap_or(16 * 1024),
        sinks,
    })
}
