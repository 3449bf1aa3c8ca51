//! The running agent: resolve identities, load and attach the programs, then one loop reads the
//! ring buffer, turns events into records and hands them to the sinks, in order.
pub mod btf;
pub mod gobin;
pub mod loader;
mod mapped_file;
mod metrics_server;
mod openssl;
mod openssl_sites;
mod pipeline;
mod programs;
mod reaper;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::Context as _;

use crate::{
    config::{IdentityConfig, TlsProbes},
    identity::Identities,
    sink::Sink,
};

/// Everything `recorder agent` was asked to do, checked.
pub struct AgentPlan {
    pub host: String,
    pub identities: Vec<IdentityConfig>,
    pub metrics_addr: Option<SocketAddr>,
    pub ring_buffer_kib: u32,
    pub tls_probes: TlsProbes,
    pub btf_path: PathBuf,
    pub sinks: Vec<Box<dyn Sink>>,
}

/// The kernel's host name (uname nodename).
pub fn kernel_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// Runs until SIGINT or SIGTERM; then drains the ring buffer, flushes the sinks and returns.
pub async fn run(plan: AgentPlan) -> anyhow::Result<()> {
    let identities = Identities::resolve(&plan.identities)?;
    let (mut probes, ring) =
        loader::Probes::load(crate::EBPF_OBJECT, &plan.btf_path, plan.ring_buffer_kib)?;
    probes
        .set_watched(&identities.watched())
        .context("registering the watched cgroups")?;
    // Parsing the kernel BTF (several MiB) left freed heap behind; give it back to the system.
    // SAFETY: malloc_trim only releases free memory.
    unsafe { libc::malloc_trim(0) };
    for identity in &identities.list {
        tracing::info!(identity = %identity.name, cgroup = %identity.dir.display(), cgroup_id = identity.cgroup_id, "watching");
    }

    let ready = Arc::new(AtomicBool::new(false));
    if let Some(addr) = plan.metrics_addr {
        metrics_server::spawn(addr, ready.clone()).await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let pipeline = pipeline::Pipeline::new(
        plan.host,
        identities,
        probes,
        ring,
        plan.sinks,
        plan.tls_probes,
    );
    let worker = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || pipeline.run(&stop))
            .context("starting the capture thread")?
    };
    ready.store(true, Ordering::SeqCst);
    tracing::info!("agent ready: probes attached, identities resolved");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping: draining the ring buffer");
    ready.store(false, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    tokio::task::spawn_blocking(move || worker.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the capture thread panicked"))?
}
