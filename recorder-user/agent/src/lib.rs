//! The host agent: resolves the watched identities to cgroups, loads and attaches the eBPF
//! programs, then one thread reads the ring buffer, turns events into records and hands them to
//! the sinks, in the order the kernel produced them:
//!
//! ```text
//! kernel ─ring buffer─▶ pipeline ─▶ capture (decode, attribute, protocols) ─▶ record ─▶ sinks
//!                                                                     JSONL file ◀─┘└─▶ spool ─▶ ship ─▶ collector
//! ```
//!
//! [`run`] is the whole agent; [`ship_file`] sends a JSON Lines file through a spool, as the
//! agent does. The [`spool`] and the [`Shipper`] are public for tools that feed a collector the
//! way the agent does (`recorder ship`, the collector benchmark).
mod approve;
mod capture;
mod config;
mod identity;
mod loader;
mod pipeline;
mod plan;
mod pods;
mod probes;
mod ship;
mod sink;
pub mod spool;

pub use config::{
    AgentConfig, CollectorConfig, ConfigError, IdentityConfig, KubernetesConfig, PodSelectorConfig,
    SocketCaptureSetting, TlsProbes, Urls,
};
pub use plan::{AgentError, run};
pub use pods::PodsError;
pub use ship::{ShipError, ShipFile, Shipped, Shipper, ship_file};

/// The compiled eBPF object (empty when built with `RECORDER_SKIP_EBPF=1`).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/recorder"));
