//! The recorder: an eBPF host agent that records what agent identities run, and the collector and
//! operator commands around it. Data flows one way:
//! kernel -> `agent` (load, read) -> `capture` (decode, lineage) -> `record` -> sinks.

/// The compiled eBPF object (empty when built with `RECORDER_SKIP_EBPF=1`).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/recorder"));

pub mod agent;
pub mod capture;
pub mod cli;
pub mod collector;
pub mod config;
pub mod identity;
pub mod integrity;
pub mod kube;
pub mod metrics;
pub mod pki;
pub mod proto;
pub mod protocol;
pub mod record;
pub mod sink;
pub mod spool;
pub mod store;
pub mod transport;
