//! Maps shared by the probes. Names are part of the contract with the agent's loader.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, RingBuf},
};
use recorder_common::{ExecEvent, LOSS_KINDS, MAX_IDENTITIES, ProcInfo, Settings};

/// Events to user space. The loader sets its size (`ring_buffer_kib`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Watched cgroup v2 id -> identity index. Written by the agent.
#[map]
pub static WATCHED: HashMap<u64, u32> = HashMap::with_max_entries(4096, 0);

/// Tracked thread groups (tgid -> lineage). Filled by the probes; seeded by nothing else.
#[map]
pub static PROCS: HashMap<u32, ProcInfo> = HashMap::with_max_entries(65536, 0);

/// Events that could not be sent, per identity and kind: index `identity * LOSS_KINDS + kind`.
#[map]
pub static LOSS: Array<u64> = Array::with_max_entries(MAX_IDENTITIES * LOSS_KINDS, 0);

/// One exec event under construction per CPU (too big for the stack or a per-CPU map).
/// The loader sets max_entries to the number of possible CPUs.
#[map]
pub static SCRATCH: Array<ExecEvent> = Array::with_max_entries(1, 0);

/// Runtime settings (index 0).
#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);
