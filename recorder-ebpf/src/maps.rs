//! Maps shared by the probes. Names are part of the contract with the agent's loader.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, RingBuf},
};
use recorder_common::{
    DataEvent, ExecEvent, LOSS_KINDS, MAX_IDENTITIES, ProcInfo, Settings, SockInfo,
};

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

/// What to stop for approval, per identity (`HOLD_*` flags). Written by the agent.
#[map]
pub static HOLDS: Array<u32> = Array::with_max_entries(MAX_IDENTITIES, 0);

/// Runtime settings (index 0).
#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// The last OpenSSL read/write of a thread (keyed by pid_tgid), `active` while it is in flight.
/// A thread keeps its entry between calls, which are then written in place: an insert and a
/// delete per call would cost more. LRU, as the map below: entries of ended threads make room.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsCall {
    pub ssl: u64,
    pub buf: u64,
    /// For the `_ex` forms: where the library writes the byte count.
    pub count_ptr: u64,
    pub direction: u32,
    /// 1 from the call's entry to its return.
    pub active: u32,
}

#[map]
pub static TLS_CALLS: LruHashMap<u64, TlsCall> = LruHashMap::with_max_entries(16384, 0);

/// The socket under each TLS connection (`SSL *` -> socket), learnt from the system calls the
/// library makes while inside SSL_read/SSL_write.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct TlsSocket {
    pub sock: SockInfo,
    /// The `struct file *` the socket was found through: while the library's calls come
    /// through the same open file on the same fd, the socket need not be looked up again.
    pub file: u64,
    pub fd: u32,
    pub _pad: u32,
}

#[map]
pub static TLS_SOCKETS: LruHashMap<u64, TlsSocket> = LruHashMap::with_max_entries(16384, 0);

/// One data event under construction per CPU. The loader sets max_entries to the CPU count.
#[map]
pub static DATA_SCRATCH: Array<DataEvent> = Array::with_max_entries(1, 0);

/// The endpoints of the sockets tracked processes used, by cookie: read once per socket, not
/// at every read and write. LRU: sockets long closed make room.
#[map]
pub static SOCKETS: LruHashMap<u64, SockInfo> = LruHashMap::with_max_entries(16384, 0);

/// The last message of a `sendmmsg`/`recvmmsg` call, per thread (keyed by pid_tgid): which
/// array, the index of the next message, and the bytes the last one moved.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MmsgCall {
    pub vec: u64,
    pub index: u64,
    pub moved: u64,
}

#[map]
pub static MMSG_CALLS: LruHashMap<u64, MmsgCall> = LruHashMap::with_max_entries(4096, 0);

/// A Go `crypto/tls.(*Conn).Read` in flight, keyed by goroutine: a goroutine blocked in Read
/// can resume on another OS thread, so the thread id would not find it at the return.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GoCallKey {
    /// The goroutine's `g` (register R14 in Go's register ABI).
    pub g: u64,
    pub tgid: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct GoRead {
    /// The `*tls.Conn`.
    pub conn: u64,
    pub buf: u64,
}

/// A Go program always has reads in flight (HTTP/2's read loop), and those of a process that
/// exits never return; LRU, so the oldest such entries make room instead of filling the map.
#[map]
pub static GO_READS: LruHashMap<GoCallKey, GoRead> = LruHashMap::with_max_entries(16384, 0);

/// Processes the agent attached TLS probes to for themselves (tgid -> 1): their forks are
/// reported, since a forked child shares the parent's libraries but not its probes.
#[map]
pub static TLS_HOOKED: HashMap<u32, u32> = HashMap::with_max_entries(16384, 0);
