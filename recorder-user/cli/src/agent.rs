//! `recorder agent`: load the eBPF programs and record the watched identities.
use std::{net::SocketAddr, path::PathBuf};

use clap::Args;
use recorder_agent::{AgentConfig, IdentityConfig, SocketCaptureSetting, TlsProbes};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  # record everything run in one cgroup v2 directory as identity \"claude\"
  recorder agent --identity claude=/sys/fs/cgroup/agents/claude --jsonl /var/log/recorder.jsonl

  # a systemd unit, with metrics on :9464 (GET /metrics, GET /readyz)
  recorder agent --identity ops=unit:ops-bot.service --jsonl out.jsonl --metrics-addr 127.0.0.1:9464

  # Kubernetes (a DaemonSet sets NODE_NAME): the containers of pods in namespace \"agents\"
  # labelled app=claude, found through the API server; records carry k8s.pod.name and more
  recorder agent --identity 'claude=k8s:namespace=agents;labels=app=claude,tier in (ops)' \\
      --copy-label app --jsonl out.jsonl

  # ship to a remote collector (agent certificate named after this host), spooling meanwhile
  recorder agent --identity claude=agents/claude --collector https://collector.example:7443 \\
      --tls-ca ca.pem --tls-cert web-1.pem --tls-key web-1-key.pem --spool /var/lib/recorder/spool

Processes started by a watched process stay attributed to its identity even if they move to
another cgroup (a `notice` with reason `cgroup_migration` says so). Cgroups created later below a
watched cgroup are watched too. Needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN).")]
pub(crate) struct AgentArgs {
    /// Watch an identity: NAME=CGROUP, where CGROUP is a cgroup v2 directory (absolute, or
    /// relative to the cgroup v2 mount), unit:NAME.service, or k8s:SELECTOR for the containers
    /// of this node's pods, SELECTOR being `;`-separated namespace=, labels= (a label selector),
    /// service-account= and container= terms. Repeatable; adds to the config file.
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
    #[arg(long, value_name = "all|watched")]
    pub tls_probes: Option<TlsProbes>,
    /// Send records to this collector (https://HOST:PORT) over mutual TLS, through --spool.
    /// Give it once per collector of a group: records go to the first that answers, and to the
    /// next when it fails. A name with several addresses is tried address by address.
    #[arg(long, value_name = "URL")]
    pub collector: Vec<String>,
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
    /// Where socket data is captured: auto (the socket tracepoints of Linux 6.3 and later,
    /// which cost unwatched processes one map lookup per socket operation; the system-call
    /// tracepoints on older kernels) or syscalls (the system-call tracepoints, which slow every
    /// system call on the host; for comparison). Default: auto.
    #[arg(long, value_name = "auto|syscalls")]
    pub socket_capture: Option<SocketCaptureSetting>,
    /// Kubernetes: this node's name (default: `NODE_NAME` from the environment, which a
    /// DaemonSet sets from the downward API).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Kubernetes: a kubeconfig file (default: the pod's service account in a cluster, else
    /// `KUBECONFIG` or ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubernetes: copy this pod label onto the records of selected pods, as
    /// k8s.pod.label.<KEY>. Repeatable; adds to the config file.
    #[arg(long = "copy-label", value_name = "KEY")]
    pub copy_labels: Vec<String>,
    /// Kernel BTF to read struct offsets from (default: /sys/kernel/btf/vmlinux).
    #[arg(long, value_name = "FILE")]
    pub btf: Option<PathBuf>,
    /// The redaction key file (made, 32 random bytes, mode 0600, if missing; default
    /// /var/lib/recorder/redaction.key). Agents given the same key mark one secret alike.
    #[arg(long, value_name = "FILE")]
    pub redaction_key: Option<PathBuf>,
    /// Record secrets as they are: no redaction (said in the log at start).
    #[arg(long)]
    pub no_redaction: bool,
}

pub(crate) fn run(args: AgentArgs) -> anyhow::Result<()> {
    let config = config(args)?;
    Ok(recorder_agent::run(config)?)
}

/// The configuration file with the flags applied: identities add to the file's, everything else
/// overrides it.
fn config(args: AgentArgs) -> anyhow::Result<AgentConfig> {
    let mut config = match &args.config {
        Some(path) => AgentConfig::load(path)?,
        None => AgentConfig::default(),
    };
    for spec in &args.identities {
        config.identities.push(IdentityConfig::from_flag(spec)?);
    }
    set(args.jsonl, &mut config.jsonl);
    set(args.metrics_addr, &mut config.metrics_addr);
    set(args.host, &mut config.host);
    set(args.ring_buffer_kib, &mut config.ring_buffer_kib);
    set(args.tls_probes, &mut config.tls_probes);
    set(args.btf, &mut config.btf);
    set(args.redaction_key, &mut config.redaction.key_file);
    if args.no_redaction {
        config.redaction.enabled = false;
    }
    set(args.socket_capture, &mut config.socket_capture);
    set(args.node_name, &mut config.kubernetes.node);
    set(args.kubeconfig, &mut config.kubernetes.kubeconfig);
    config.kubernetes.copy_labels.extend(args.copy_labels);
    if !args.collector.is_empty()
        || args.tls_ca.is_some()
        || args.tls_cert.is_some()
        || args.tls_key.is_some()
        || args.spool.is_some()
        || args.spool_max_mib.is_some()
    {
        let collector = config.collector.get_or_insert_with(Default::default);
        if !args.collector.is_empty() {
            collector.url = recorder_agent::Urls::Many(args.collector);
        }
        set(args.tls_ca, &mut collector.tls_ca);
        set(args.tls_cert, &mut collector.tls_cert);
        set(args.tls_key, &mut collector.tls_key);
        set(args.spool, &mut collector.spool);
        set(args.spool_max_mib, &mut collector.spool_max_mib);
    }
    Ok(config)
}

/// A flag given overrides the file's value.
fn set<T>(flag: Option<T>, slot: &mut Option<T>) {
    if flag.is_some() {
        *slot = flag;
    }
}
