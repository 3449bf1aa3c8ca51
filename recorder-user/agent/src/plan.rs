//! `recorder agent` as a whole: the configuration checked and completed with its defaults
//! (everything that can be checked before touching the kernel), then the running agent until
//! SIGINT or SIGTERM.
use std::{
    collections::HashSet,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use recorder_api::tls::{ClientTls, TlsError};

use crate::{
    approve::ApprovalPlan,
    config::{
        self, AgentConfig, CollectorConfig, ConfigError, IdentityConfig, KubernetesConfig,
        SocketCaptureSetting, TlsProbes,
    },
    identity::{Identities, IdentityError},
    loader::{CaptureMode, LoadError, Probes, SocketCapture},
    pipeline::{Output, Pipeline},
    pods::{FIRST_LIST_WAIT, PodIdentities, PodsError},
    ship::Shipper,
    sink::{Sink, SinkError, jsonl::JsonlSink, spool::SpoolSink},
    spool::{Spool, SpoolError},
};

/// Kernel ring buffer size when the configuration does not say.
pub(crate) const DEFAULT_RING_BUFFER_KIB: u32 = 16 * 1024;
/// Spool size bound when the configuration does not say.
const DEFAULT_SPOOL_MAX_MIB: u64 = 1024;
/// Where the kernel's BTF is read from when the configuration does not say.
const DEFAULT_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("no identity to watch: give --identity NAME=CGROUP or [[identity]] in --config")]
    NoIdentity,
    #[error("identity {0:?} is given twice")]
    DuplicateIdentity(String),
    #[error(
        "nowhere to record to: give --jsonl PATH and/or --collector URL (or the same in the config)"
    )]
    NoSink,
    #[error("--collector needs --{flag} (or {key} in [collector])")]
    CollectorNeeds {
        flag: &'static str,
        key: &'static str,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Pods(#[from] PodsError),
    #[error("registering the watched cgroups: {0}")]
    Watch(LoadError),
    #[error("cannot listen on --metrics-addr {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Start {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the capture thread panicked")]
    CapturePanicked,
    #[error(transparent)]
    Redaction(#[from] recorder_redact::RedactError),
    #[error(transparent)]
    Approval(#[from] recorder_approval::ApprovalError),
    #[error(
        "approval rules need a collector to ask: give --collector URL (or [collector] url); \
         operators decide there (`recorder approvals`)"
    )]
    ApprovalNeedsCollector,
}

/// Everything the agent will do, checked, with defaults filled in.
struct Plan {
    host: String,
    identities: Vec<IdentityConfig>,
    kubernetes: KubernetesConfig,
    metrics_addr: Option<SocketAddr>,
    ring_buffer_kib: u32,
    tls_probes: TlsProbes,
    socket_capture: SocketCaptureSetting,
    btf_path: PathBuf,
    sinks: Vec<Box<dyn Sink>>,
    redactor: Option<recorder_redact::Redactor>,
    approval: Option<ApprovalPlan>,
}

/// Runs the agent until SIGINT or SIGTERM; then drains the ring buffer, flushes the sinks and
/// returns. `config` is the configuration file with the command line's flags applied.
pub fn run(config: AgentConfig) -> Result<(), AgentError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| AgentError::Start {
            what: "starting the async runtime",
            source,
        })?;
    // The spool's shipper and the metrics endpoint run on the runtime: plan inside it.
    runtime.block_on(async { run_plan(plan(config)?).await })
}

/// Checks the configuration and opens the sinks (and the spool and its shipper), before
/// anything touches the kernel.
fn plan(mut config: AgentConfig) -> Result<Plan, AgentError> {
    if config.identities.is_empty() {
        return Err(AgentError::NoIdentity);
    }
    if config.identities.len() > recorder_common::MAX_IDENTITIES as usize {
        return Err(IdentityError::TooMany(config.identities.len()).into());
    }
    let mut names = HashSet::new();
    for identity in &config.identities {
        identity.spec()?;
        if !names.insert(identity.name.as_str()) {
            return Err(AgentError::DuplicateIdentity(identity.name.clone()));
        }
    }
    let ring_buffer_kib = config.ring_buffer_kib.unwrap_or(DEFAULT_RING_BUFFER_KIB);
    config::check_ring_buffer_kib(ring_buffer_kib)
        .map_err(|message| ConfigError::Invalid { message })?;
    let host = config.host.clone().unwrap_or_else(kernel_hostname);
    let approval = approval_plan(&config)?;
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(path) = &config.jsonl {
        sinks.push(Box::new(JsonlSink::open(path)?));
    }
    if let Some(collector) = config.collector.take()
        && let Some(spool) = collector_sink(collector, &host)?
    {
        sinks.push(spool);
    }
    if sinks.is_empty() {
        return Err(AgentError::NoSink);
    }
    let redactor = redactor(&config.redaction)?;
    Ok(Plan {
        host,
        identities: config.identities,
        kubernetes: config.kubernetes,
        metrics_addr: config.metrics_addr,
        ring_buffer_kib,
        tls_probes: config.tls_probes.unwrap_or_default(),
        socket_capture: config.socket_capture.unwrap_or_default(),
        btf_path: config.btf.unwrap_or_else(|| PathBuf::from(DEFAULT_BTF)),
        sinks,
        redactor,
        approval,
    })
}

/// `[approval]`: the rules compiled, the collectors to ask, where holds are kept.
fn approval_plan(config: &AgentConfig) -> Result<Option<ApprovalPlan>, AgentError> {
    let approval = &config.approval;
    if approval.rules.is_empty() {
        return Ok(None);
    }
    let names: Vec<String> = config.identities.iter().map(|i| i.name.clone()).collect();
    let policy = recorder_approval::Policy::new(&approval.rules, &names)?;
    let collector = config
        .collector
        .clone()
        .ok_or(AgentError::ApprovalNeedsCollector)?;
    let spool = collector.spool.clone();
    let targets = collector_targets(collector)?;
    if targets.is_empty() {
        return Err(AgentError::ApprovalNeedsCollector);
    }
    let holds_file = match (&approval.state_file, spool) {
        (Some(path), _) => path.clone(),
        (None, Some(spool)) => spool.join("holds.json"),
        (None, None) => {
            return Err(AgentError::CollectorNeeds {
                flag: "spool",
                key: "spool",
            });
        }
    };
    tracing::info!(
        rules = policy.rules().len(),
        timeout_secs = approval.timeout().as_secs(),
        on_restart = approval.on_restart.as_str(),
        "approval rules on: matching actions wait for an operator"
    );
    Ok(Some(ApprovalPlan {
        policy,
        targets,
        holds_file,
        timeout: approval.timeout(),
        on_restart: approval.on_restart,
    }))
}

/// The collectors of `[collector]`, with the client certificate, checked (none without a URL).
fn collector_targets(config: CollectorConfig) -> Result<Vec<ClientTls>, AgentError> {
    let urls = config.url.into_vec();
    if urls.is_empty() {
        return Ok(Vec::new());
    }
    let need =
        |value: Option<PathBuf>, flag, key| value.ok_or(AgentError::CollectorNeeds { flag, key });
    let (ca, cert, key) = (
        need(config.tls_ca, "tls-ca", "tls_ca")?,
        need(config.tls_cert, "tls-cert", "tls_cert")?,
        need(config.tls_key, "tls-key", "tls_key")?,
    );
    let mut targets = Vec::new();
    for url in urls {
        let tls = ClientTls {
            url,
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        };
        // Fail now on an unusable URL or unreadable certificate, not in the shipper later.
        tls.endpoint()?;
        targets.push(tls);
    }
    Ok(targets)
}

/// `[redaction]`: the rules and the key, or None when redaction is turned off. A key file
/// named in the configuration must be usable; the default one falls back to a key for this run
/// only (markers then differ after a restart), said in the log.
fn redactor(
    config: &recorder_redact::RedactionConfig,
) -> Result<Option<recorder_redact::Redactor>, AgentError> {
    if !config.enabled {
        tracing::warn!(
            "redaction is off ([redaction] enabled = false): secrets in commands and statements are recorded as they are"
        );
        return Ok(None);
    }
    let key = if let Some(path) = &config.key_file {
        recorder_redact::key::load_or_create(path)?
    } else {
        let path = std::path::Path::new(recorder_redact::key::DEFAULT_KEY_FILE);
        match recorder_redact::key::load_or_create(path) {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!(error = %e, "no redaction key can be kept; using one for this run only (the same secret gets another marker after a restart): set [redaction] key_file");
                recorder_redact::key::ephemeral()?
            }
        }
    };
    let redactor = recorder_redact::Redactor::new(&key, config)?;
    tracing::info!(
        rules = redactor.rule_names().len(),
        "redaction on: secrets become keyed-hash markers before records are written"
    );
    Ok(Some(redactor))
}

/// `[collector]`: the spool sink, and the shipper thread that empties the spool.
fn collector_sink(
    config: CollectorConfig,
    host: &str,
) -> Result<Option<Box<dyn Sink>>, AgentError> {
    let spool_dir = config.spool.clone();
    let max_mib = config.spool_max_mib;
    let targets = collector_targets(config)?;
    if targets.is_empty() {
        return Ok(None);
    }
    let spool_dir = spool_dir.ok_or(AgentError::CollectorNeeds {
        flag: "spool",
        key: "spool",
    })?;
    let max_mib = max_mib.unwrap_or(DEFAULT_SPOOL_MAX_MIB).max(1);
    let (spool, recovered) = Spool::open(&spool_dir, host, max_mib * 1024 * 1024)?;
    for problem in recovered {
        tracing::warn!(%problem, "spool damaged; recovered what was valid (a notice record says so)");
    }
    let shipper = Shipper::new(
        targets,
        spool.reader(),
        host.to_string(),
        spool.boot().to_string(),
    );
    shipper.spawn().map_err(|source| AgentError::Start {
        what: "starting the shipper thread",
        source,
    })?;
    Ok(Some(Box::new(SpoolSink::new(spool))))
}

/// The kernel's host name (uname nodename).
fn kernel_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "localhost".to_string(), |s| s.trim().to_string())
}

async fn run_plan(plan: Plan) -> Result<(), AgentError> {
    let identities = Identities::resolve(&plan.identities)?;
    // Before the kernel is touched: a missing node name or kubeconfig is a configuration error.
    let selectors = identities.pod_selectors();
    let pods = if selectors.is_empty() {
        None
    } else {
        Some(PodIdentities::start(plan.kubernetes, selectors, identities.mount.clone()).await?)
    };
    let (mut probes, ring) = Probes::load(
        crate::EBPF_OBJECT,
        &plan.btf_path,
        plan.ring_buffer_kib,
        plan.socket_capture,
    )?;
    publish_capture_mode(probes.capture);
    probes
        .set_watched(&identities.watched())
        .map_err(AgentError::Watch)?;
    // Parsing the kernel BTF (several MiB) left freed heap behind; give it back to the system.
    // SAFETY: malloc_trim only releases free memory.
    unsafe { libc::malloc_trim(0) };
    for identity in &identities.list {
        match &identity.cgroup {
            Some(cgroup) => {
                tracing::info!(identity = %identity.name, cgroup = %cgroup.dir.display(), cgroup_id = cgroup.id, "watching");
            }
            None => {
                tracing::info!(identity = %identity.name, "watching the containers of selected pods");
            }
        }
    }
    if let Some(pods) = &pods {
        pods.first_list(FIRST_LIST_WAIT).await;
    }

    let ready = Arc::new(AtomicBool::new(false));
    if let Some(addr) = plan.metrics_addr {
        recorder_api::http::spawn(addr, ready.clone())
            .await
            .map_err(|source| AgentError::Metrics { addr, source })?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut pipeline = Pipeline::new(
        plan.host,
        identities,
        probes,
        ring,
        Output {
            sinks: plan.sinks,
            redactor: plan.redactor,
            approval: plan.approval,
        },
        plan.tls_probes,
        pods,
    )
    .map_err(|source| AgentError::Start {
        what: "starting approvals",
        source,
    })?;
    // What already runs in the watched cgroups, and the pods listed at start, are tracked
    // before the agent says it is ready.
    pipeline.adopt_configured();
    pipeline.poll_pods();
    let worker = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || pipeline.run(&stop))
            .map_err(|source| AgentError::Start {
                what: "starting the capture thread",
                source,
            })?
    };
    // Listening for SIGTERM before saying ready: a supervisor that stops the agent right after
    // READY=1 must get a clean stop, not the signal's default action.
    let signal_error = |source| AgentError::Start {
        what: "listening for SIGTERM",
        source,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(signal_error)?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(signal_error)?;
    ready.store(true, Ordering::SeqCst);
    recorder_api::systemd::notify("READY=1");
    tracing::info!("agent ready: probes attached, identities resolved");

    tokio::select! {
        _ = interrupt.recv() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping: draining the ring buffer");
    recorder_api::systemd::notify("STOPPING=1");
    ready.store(false, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    tokio::task::spawn_blocking(move || worker.join())
        .await
        .map_err(|_| AgentError::CapturePanicked)?
        .map_err(|_| AgentError::CapturePanicked)
}

/// Says on `/metrics` how this kernel lets the agent capture: `recorder_socket_capture{mode}` is
/// 1 for the mode in use (`socket_tracepoints`, or `syscall_tracepoints`, which costs every
/// process on the host), and `recorder_mapping_capture{mode}` likewise for library mappings.
fn publish_capture_mode(capture: CaptureMode) {
    let registry = recorder_api::metrics::Registry::global();
    for mode in [SocketCapture::Tracepoints, SocketCapture::Syscalls] {
        registry
            .gauge(
                "recorder_socket_capture",
                "Where socket data is captured: 1 for the mode in use (socket_tracepoints, or \
                 syscall_tracepoints on kernels without them, which slows every process).",
                &[("mode", mode.name())],
            )
            .set(u64::from(capture.sockets == mode));
    }
    for (mode, used) in [
        ("vm_unmapped_area", capture.mappings_off_syscalls),
        ("sys_enter_mmap", !capture.mappings_off_syscalls),
    ] {
        registry
            .gauge(
                "recorder_mapping_capture",
                "Where library mappings are seen: 1 for the tracepoint in use.",
                &[("mode", mode)],
            )
            .set(u64::from(used));
    }
    tracing::info!(
        sockets = capture.sockets.name(),
        mappings_off_syscalls = capture.mappings_off_syscalls,
        "capture mode"
    );
}
