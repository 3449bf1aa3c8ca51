//! The running agent: load and attach the programs, read the ring buffer, turn events into
//! records, hand them to the sinks.
use std::net::SocketAddr;

use crate::{config::IdentityConfig, sink::Sink};

/// Everything `recorder agent` was asked to do, checked.
pub struct AgentPlan {
    pub host: String,
    pub identities: Vec<IdentityConfig>,
    pub metrics_addr: Option<SocketAddr>,
    pub ring_buffer_kib: u32,
    pub sinks: Vec<Box<dyn Sink>>,
}

/// The kernel's host name (uname nodename).
pub fn kernel_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

pub async fn run(_plan: AgentPlan) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
