//! Every structure that crosses the kernel/user boundary, defined once.
//!
//! Rules: `#[repr(C)]`, `Copy`, no `bool` (flags are integers), explicit padding so the layout is
//! the same for the bpf target and x86_64, and a size test per event below.
#![no_std]

/// The most argv bytes one `exec` record carries (NUL-separated arguments). Longer argv is cut
/// here and the record says `argv_truncated: true`.
pub const ARGV_MAX: usize = 65536;
/// Path components kept for `exe` and `cwd`, from the leaf upwards.
pub const PATH_DEPTH: usize = 24;
/// Bytes kept per path component (with its NUL). Longer names are cut and flagged.
pub const PATH_COMPONENT: usize = 96;
/// Identities one agent can watch (index into the loss counters).
pub const MAX_IDENTITIES: u32 = 256;
/// Deepest cgroup level the kernel checks when it looks for a watched ancestor.
pub const MAX_CGROUP_LEVEL: u32 = 32;

/// Numeric event kinds; stable, they are part of the kernel/user contract.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Exec = 1,
    Exit = 2,
    /// Not an event: the loss slot for processes the tracking map had no room for.
    Track = 3,
    /// Bytes a tracked process wrote to or read from a stream socket, or through TLS.
    Data = 4,
    /// A tracked process mapped a TLS library for execution (the agent attaches its probes).
    Library = 5,
    /// A tracked process set up an io_uring: its I/O through it is not captured.
    IoUring = 6,
    /// A tracked process closed a stream socket.
    Close = 7,
    /// A line read by an interactive shell (bash's `readline`).
    Shell = 8,
    /// A process that carries per-process TLS probes forked: the child needs its own.
    Fork = 9,
}

impl EventKind {
    /// The name used in `loss` records (`lost_kind`) and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::Exit => "exit",
            Self::Track => "process",
            Self::Data => "data",
            Self::Library => "library",
            Self::IoUring => "io_uring",
            Self::Close => "close",
            Self::Shell => "shell",
            Self::Fork => "fork",
        }
    }

    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Exec),
            2 => Some(Self::Exit),
            3 => Some(Self::Track),
            4 => Some(Self::Data),
            5 => Some(Self::Library),
            6 => Some(Self::IoUring),
            7 => Some(Self::Close),
            8 => Some(Self::Shell),
            9 => Some(Self::Fork),
            _ => None,
        }
    }
}

/// Number of slots per identity in the loss counter map (indexed by `EventKind as u32`).
pub const LOSS_KINDS: u32 = 10;

/// A process image instance: when (boot-clock ns) and which thread-group id. Unique per boot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ProcKey {
    pub ktime: u64,
    pub pid: u32,
    pub _pad: u32,
}

impl ProcKey {
    pub const NONE: ProcKey = ProcKey {
        ktime: 0,
        pid: 0,
        _pad: 0,
    };
    pub fn is_none(&self) -> bool {
        self.ktime == 0 && self.pid == 0
    }
}

/// Kernel-side state of a tracked (watched) thread group, keyed by tgid in `PROCS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcInfo {
    pub identity: u32,
    /// `PROC_*` flags.
    pub flags: u32,
    /// The newest exec of this lineage: the process's own exec, or its parent's if it only forked.
    pub exec: ProcKey,
    /// The session root's exec.
    pub session: ProcKey,
}

/// The process exec'd (or was adopted) itself, so its exit is reported.
pub const PROC_OWN_EXEC: u32 = 1;

/// Fixed header at the start of every ring buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventHeader {
    /// `EventKind as u32`.
    pub kind: u32,
    pub identity: u32,
    /// Thread-group id (the user-visible pid).
    pub pid: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_boot_ns()` when the event happened.
    pub ktime: u64,
    /// cgroup v2 id of the process when the event happened; exec events only (0 in the others).
    pub cgroup_id: u64,
}

/// A path as up to `PATH_DEPTH` components, leaf first; each is NUL-terminated in its slot.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawPath {
    /// How many slots are filled.
    pub depth: u32,
    /// `PATH_*` flags.
    pub flags: u32,
    pub components: [[u8; PATH_COMPONENT]; PATH_DEPTH],
}

/// The walk stopped at `PATH_DEPTH` before reaching the root.
pub const PATH_TOO_DEEP: u32 = 1;
/// The file has no links left (deleted, or a memfd never linked).
pub const PATH_UNLINKED: u32 = 2;
/// No path could be read (no such object).
pub const PATH_MISSING: u32 = 4;

/// The fixed part of an `exec` event.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecHead {
    pub header: EventHeader,
    pub exec: ProcKey,
    pub parent_exec: ProcKey,
    pub session: ProcKey,
    pub ppid: u32,
    pub uid: u32,
    /// `EXEC_*` flags.
    pub flags: u32,
    pub argv_len: u32,
    /// Full argv length as the kernel laid it out (may exceed `ARGV_MAX`).
    pub argv_total: u64,
    pub exe: RawPath,
    pub cwd: RawPath,
}

/// `exec` event. Sent with only the first `head.argv_len` bytes of `argv`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    pub head: ExecHead,
    /// NUL-separated arguments, as laid out by the kernel in the new process's memory.
    pub argv: [u8; ARGV_MAX],
}

/// argv was longer than `ARGV_MAX` and was cut.
pub const EXEC_ARGV_TRUNCATED: u32 = 1;
/// First exec of a new session (the parent is outside the identity).
pub const EXEC_SESSION_ROOT: u32 = 2;
/// Not seen at exec time: a process already inside a watched cgroup, found when it forked.
pub const EXEC_ADOPTED: u32 = 4;
/// The process runs outside every cgroup of its identity (it or an ancestor moved).
pub const EXEC_OUTSIDE_IDENTITY: u32 = 8;
/// argv memory could not be read.
pub const EXEC_ARGV_UNREADABLE: u32 = 16;
/// The process was stopped (`SIGSTOP`) right after this event, before the new image's first
/// instruction: its identity has approval rules for execs. The agent continues or kills it.
pub const EXEC_HELD: u32 = 32;

/// `HOLDS` flags, per identity: what the programs stop for the agent to look at first.
pub const HOLD_EXEC: u32 = 1;
/// Every TLS write (OpenSSL, Go), stopped before its bytes leave.
pub const HOLD_TLS_WRITE: u32 = 2;

/// Bytes of an `ExecEvent` before `argv`.
pub const EXEC_FIXED_LEN: usize = core::mem::size_of::<ExecHead>();

/// `exit` event, for a tracked process with its own exec, when its last thread ends.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitEvent {
    pub header: EventHeader,
    pub exec: ProcKey,
    pub session: ProcKey,
    /// `task_struct.exit_code`: `(status << 8) | signal`, `0x80` for a core dump.
    pub exit_code: u32,
    pub _pad: u32,
}

/// Payload bytes one `data` event carries. A larger read or write is sent as several events
/// (`offset` says where each starts), up to `DATA_SYSCALL_MAX` bytes per call.
pub const DATA_CHUNK: usize = 16384;
/// Bytes captured from one read/write call; beyond this the event says `DATA_TRUNCATED`.
pub const DATA_SYSCALL_MAX: usize = 1 << 20;
/// Buffers captured from one vectored call (`writev`, `readv`, `sendmsg`, `recvmsg`); bytes in
/// later buffers are reported as not captured (`DATA_TRUNCATED`).
pub const DATA_IOV_MAX: u32 = 64;

/// Where the bytes of a `data` event were seen.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// A socket system call (plaintext, or ciphertext of a TLS library we did not hook).
    Socket = 0,
    /// OpenSSL's SSL_write/SSL_read: plaintext of a TLS connection.
    OpenSsl = 1,
    /// Go's `crypto/tls.(*Conn).Write`/`Read`: plaintext of a TLS connection of a Go program.
    GoTls = 2,
}

/// The process wrote the bytes (to the peer).
pub const DIR_EGRESS: u32 = 0;
/// The process read the bytes (from the peer).
pub const DIR_INGRESS: u32 = 1;

/// The call moved more than `DATA_SYSCALL_MAX` bytes (or, vectored, used more than
/// `DATA_IOV_MAX` buffers); the rest was not captured. An event with this flag, `offset` 0 and
/// `len` 0 stands for `total` bytes that were not captured at all.
pub const DATA_TRUNCATED: u32 = 1;
/// The socket is not known for these TLS bytes yet (no system call inside the TLS library was
/// seen for this TLS connection).
pub const DATA_NO_SOCKET: u32 = 2;
/// `total` bytes moved on the socket with no user buffer to read them from (io_uring, sendfile,
/// splice, a kernel thread): not captured. `syscall` says which system call the task was in.
/// The event has no payload.
pub const DATA_UNCAPTURED: u32 = 4;
/// `total` received bytes were discarded by the kernel, not copied to the process (`MSG_TRUNC`
/// on a TCP socket): not captured. The event has no payload.
pub const DATA_DISCARDED: u32 = 8;
/// A TLS write captured at its entry, before its bytes left; after the call's last event the
/// process was stopped (`SIGSTOP`) for the agent to continue or kill (`HOLD_TLS_WRITE`).
pub const DATA_HELD: u32 = 16;
/// `syscall` of a `DATA_UNCAPTURED` event made by a kernel thread or an io_uring worker.
pub const SYSCALL_NONE: u32 = u32::MAX;

/// A connection endpoint as the kernel's `sock_common` holds it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockInfo {
    /// `struct sock *`, the connection's identity while it lives.
    pub sock: u64,
    /// The socket's cookie: unique for the host's uptime, never reused, so it tells two
    /// connections apart that the kernel placed at one address. 0 when not known (system-call
    /// capture, or a socket no cookie was made for).
    pub cookie: u64,
    /// AF_INET (2), AF_INET6 (10), AF_UNIX (1).
    pub family: u16,
    /// Local and remote ports, host byte order.
    pub lport: u16,
    pub rport: u16,
    pub _pad: u16,
    /// IPv4 in the first 4 bytes, or IPv6.
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
}

/// Fixed part of a `data` event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DataHead {
    pub header: EventHeader,
    pub exec: ProcKey,
    pub session: ProcKey,
    pub sock: SockInfo,
    /// `SSL *` for OpenSSL data, 0 for socket data.
    pub tls: u64,
    /// `DataSource as u32`.
    pub source: u32,
    /// `DIR_EGRESS` or `DIR_INGRESS`.
    pub direction: u32,
    pub fd: u32,
    /// `DATA_*` flags.
    pub flags: u32,
    /// Bytes the call moved in all.
    pub total: u64,
    /// Where this chunk starts within the call's bytes.
    pub offset: u32,
    /// Payload bytes in this event.
    pub len: u32,
    /// The system call the task was in (its number on this architecture), or `SYSCALL_NONE`.
    pub syscall: u32,
    pub _pad: u32,
}

impl DataHead {
    /// Whether this event carries the last captured bytes of its call.
    pub fn is_last_chunk(&self) -> bool {
        let captured = if self.total > DATA_SYSCALL_MAX as u64 {
            DATA_SYSCALL_MAX as u64
        } else {
            self.total
        };
        self.offset as u64 + self.len as u64 >= captured
    }
}

/// `data` event. Sent with only the first `head.len` bytes of `data`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DataEvent {
    pub head: DataHead,
    pub data: [u8; DATA_CHUNK],
}

pub const DATA_FIXED_LEN: usize = core::mem::size_of::<DataHead>();

/// `library` event: the file a tracked process is mapping executable.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LibraryEvent {
    pub header: EventHeader,
    pub path: RawPath,
}

/// Longest shell line sent; a longer one is cut and flagged `SHELL_TRUNCATED`.
pub const SHELL_LINE_MAX: usize = 4096;
/// The line was longer than `SHELL_LINE_MAX` bytes.
pub const SHELL_TRUNCATED: u32 = 1;

/// `shell` event: a line an interactive bash read with `readline`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ShellEvent {
    pub header: EventHeader,
    pub exec: ProcKey,
    pub session: ProcKey,
    /// Bytes of `line` in use (no terminating NUL).
    pub len: u32,
    /// `SHELL_*` flags.
    pub flags: u32,
    pub line: [u8; SHELL_LINE_MAX],
}

/// `fork` event: a process listed in `TLS_HOOKED` forked. The header's pid is the child's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ForkEvent {
    pub header: EventHeader,
    pub parent: u32,
    pub _pad: u32,
}

/// `io_uring` event: a tracked process created an io_uring instance.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoUringEvent {
    pub header: EventHeader,
    pub exec: ProcKey,
    pub session: ProcKey,
}

/// `close` event: a tracked process closed an fd that was a stream socket. The kernel reuses
/// the memory of a closed socket, so this is what separates two connections at one address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CloseEvent {
    pub header: EventHeader,
    pub sock: u64,
}

/// Declares [`KernelOffsets`] and where each offset comes from, once: the eBPF programs read
/// the fields by name, and the agent resolves each from the running kernel's BTF by the member
/// path written here (a path of several hops adds their offsets).
macro_rules! kernel_offsets {
    ($( $field:ident : [ $( $struct:literal . $member:literal ),+ ] ),* $(,)?) => {
        /// Byte offsets of kernel struct members, read from the running kernel's BTF by the agent
        /// and written into the programs' globals before load. No offset is compiled in.
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct KernelOffsets {
            $( pub $field: u32, )*
        }

        impl KernelOffsets {
            /// What the programs are built with; the loader overwrites every field.
            pub const ZERO: Self = Self { $( $field: 0, )* };

            /// Every offset's name and its member path: (struct, member) hops from the struct
            /// the programs hold a pointer to.
            pub const PATHS: &'static [(&'static str, &'static [(&'static str, &'static str)])] =
                &[ $( (stringify!($field), &[ $( ($struct, $member) ),+ ]) ),* ];

            /// Resolves every offset with `member`, which gives the offset of one (struct, member)
            /// hop; the hops of a path add up.
            pub fn resolve<E>(
                mut member: impl FnMut(&str, &str) -> Result<u32, E>,
            ) -> Result<Self, E> {
                Ok(Self {
                    $( $field: 0 $( + member($struct, $member)? )+, )*
                })
            }
        }
    };
}

kernel_offsets! {
    task_tgid: ["task_struct"."tgid"],
    task_pid: ["task_struct"."pid"],
    task_real_parent: ["task_struct"."real_parent"],
    task_mm: ["task_struct"."mm"],
    task_fs: ["task_struct"."fs"],
    task_signal: ["task_struct"."signal"],
    task_exit_code: ["task_struct"."exit_code"],
    task_start_boottime: ["task_struct"."start_boottime"],
    mm_arg_start: ["mm_struct"."arg_start"],
    mm_arg_end: ["mm_struct"."arg_end"],
    mm_exe_file: ["mm_struct"."exe_file"],
    binprm_file: ["linux_binprm"."file"],
    file_f_path: ["file"."f_path"],
    fs_pwd: ["fs_struct"."pwd"],
    path_mnt: ["path"."mnt"],
    path_dentry: ["path"."dentry"],
    dentry_d_parent: ["dentry"."d_parent"],
    dentry_d_name: ["dentry"."d_name"],
    dentry_d_inode: ["dentry"."d_inode"],
    qstr_name: ["qstr"."name"],
    inode_i_nlink: ["inode"."i_nlink"],
    vfsmount_mnt_root: ["vfsmount"."mnt_root"],
    mount_mnt: ["mount"."mnt"],
    mount_mnt_parent: ["mount"."mnt_parent"],
    mount_mnt_mountpoint: ["mount"."mnt_mountpoint"],
    signal_live: ["signal_struct"."live"],
    task_files: ["task_struct"."files"],
    files_fdt: ["files_struct"."fdt"],
    fdtable_fd: ["fdtable"."fd"],
    fdtable_max_fds: ["fdtable"."max_fds"],
    file_f_inode: ["file"."f_inode"],
    file_private_data: ["file"."private_data"],
    inode_i_mode: ["inode"."i_mode"],
    socket_sk: ["socket"."sk"],
    socket_type: ["socket"."type"],
    // `struct sock` starts with its `sock_common`; the programs read through a `struct sock *`.
    skc_family: ["sock"."__sk_common", "sock_common"."skc_family"],
    skc_daddr: ["sock"."__sk_common", "sock_common"."skc_daddr"],
    skc_rcv_saddr: ["sock"."__sk_common", "sock_common"."skc_rcv_saddr"],
    skc_dport: ["sock"."__sk_common", "sock_common"."skc_dport"],
    skc_num: ["sock"."__sk_common", "sock_common"."skc_num"],
    skc_v6_daddr: ["sock"."__sk_common", "sock_common"."skc_v6_daddr"],
    skc_v6_rcv_saddr: ["sock"."__sk_common", "sock_common"."skc_v6_rcv_saddr"],
    skc_cookie: ["sock"."__sk_common", "sock_common"."skc_cookie"],
    sock_sk_type: ["sock"."sk_type"],
    sock_sk_socket: ["sock"."sk_socket"],
    socket_file: ["socket"."file"],
    task_flags: ["task_struct"."flags"],
}

/// System call numbers the socket capture reads buffers for, and the ones its notices name, per
/// architecture (the eBPF side picks by `bpf_target_arch`, the agent by `target_arch`).
pub mod syscalls {
    /// x86-64.
    pub mod x86_64 {
        pub const READ: u32 = 0;
        pub const WRITE: u32 = 1;
        pub const MMAP: u32 = 9;
        pub const READV: u32 = 19;
        pub const WRITEV: u32 = 20;
        pub const SENDFILE: u32 = 40;
        pub const SENDTO: u32 = 44;
        pub const RECVFROM: u32 = 45;
        pub const SENDMSG: u32 = 46;
        pub const RECVMSG: u32 = 47;
        pub const SPLICE: u32 = 275;
        pub const RECVMMSG: u32 = 299;
        pub const SENDMMSG: u32 = 307;
        pub const PREADV2: u32 = 327;
        pub const PWRITEV2: u32 = 328;
        pub const IO_URING_ENTER: u32 = 426;
    }
    /// arm64 (the generic table).
    pub mod aarch64 {
        pub const READ: u32 = 63;
        pub const WRITE: u32 = 64;
        pub const MMAP: u32 = 222;
        pub const READV: u32 = 65;
        pub const WRITEV: u32 = 66;
        pub const SENDFILE: u32 = 71;
        pub const SENDTO: u32 = 206;
        pub const RECVFROM: u32 = 207;
        pub const SENDMSG: u32 = 211;
        pub const RECVMSG: u32 = 212;
        pub const SPLICE: u32 = 76;
        pub const RECVMMSG: u32 = 243;
        pub const SENDMMSG: u32 = 269;
        pub const PREADV2: u32 = 286;
        pub const PWRITEV2: u32 = 287;
        pub const IO_URING_ENTER: u32 = 426;
    }
}

/// The names both sides use for the object's maps, globals and programs. The eBPF side names
/// them by their identifiers (the `#[map]` and probe macros take no constants); the agent looks
/// them up by these, and its test `the_object_has_every_name` checks the built object against
/// this list.
pub mod names {
    /// Maps the agent opens.
    pub const EVENTS: &str = "EVENTS";
    pub const WATCHED: &str = "WATCHED";
    /// The tracked processes (the agent adds those already running in a cgroup it starts to
    /// watch).
    pub const PROCS: &str = "PROCS";
    pub const LOSS: &str = "LOSS";
    pub const SETTINGS: &str = "SETTINGS";
    pub const TLS_HOOKED: &str = "TLS_HOOKED";
    pub const HOLDS: &str = "HOLDS";
    /// Per-CPU scratch maps, sized by the agent to the number of CPUs.
    pub const SCRATCH: &str = "SCRATCH";
    pub const DATA_SCRATCH: &str = "DATA_SCRATCH";
    pub const PER_CPU_MAPS: [&str; 2] = [SCRATCH, DATA_SCRATCH];

    /// Globals the agent writes before load.
    pub const OFFSETS: &str = "OFFSETS";
    pub const WAKEUP_BYTES: &str = "WAKEUP_BYTES";

    /// Per-thread state of `sendmmsg`/`recvmmsg` calls (which message is next).
    pub const MMSG_CALLS: &str = "MMSG_CALLS";
    /// Globals the agent writes before load: whether socket cookies identify connections, and
    /// whether the data programs return at once (the benchmark's floor).
    pub const USE_COOKIES: &str = "USE_COOKIES";
    pub const FLOOR: &str = "FLOOR";

    /// BTF-typed tracepoints attached in every mode, each named after its tracepoint.
    pub const BTF_TRACEPOINTS: [&str; 3] = [
        "sched_process_fork",
        "sched_process_exec",
        "sched_process_exit",
    ];
    /// tracefs tracepoints attached in every mode: (category, name), the program named after it.
    pub const TRACEPOINTS: [(&str, &str); 1] = [("io_uring", "io_uring_create")];

    /// Socket capture off the system-call path (Linux 6.3 and later): the end of
    /// `sock_sendmsg`/`sock_recvmsg`, BTF-typed; and the search for a mapping's address, where
    /// a library being mapped is seen.
    pub const SOCKET_TRACEPOINTS: [&str; 2] = ["sock_send_length", "sock_recv_length"];
    pub const MAPPING_TRACEPOINT: (&str, &str) = ("mmap", "vm_unmapped_area");

    /// The fallback for kernels without the socket tracepoints: system-call tracepoints, which
    /// put every task of the host on the slow system-call path.
    /// Where library mappings are seen when `vm_unmapped_area` is missing (also one of
    /// `SYSCALL_TRACEPOINTS`).
    pub const SYSCALL_MMAP_TRACEPOINT: (&str, &str) = ("syscalls", "sys_enter_mmap");
    pub const SYSCALL_TRACEPOINTS: [(&str, &str); 10] = [
        ("syscalls", "sys_enter_close"),
        ("syscalls", "sys_exit_writev"),
        ("syscalls", "sys_exit_readv"),
        ("syscalls", "sys_exit_sendmsg"),
        ("syscalls", "sys_exit_recvmsg"),
        ("syscalls", "sys_exit_write"),
        ("syscalls", "sys_exit_sendto"),
        ("syscalls", "sys_exit_read"),
        ("syscalls", "sys_exit_recvfrom"),
        ("syscalls", "sys_enter_mmap"),
    ];
    /// OpenSSL entry probes, one per function (or per internal function the wrappers share),
    /// and the one return probe they all share.
    pub const SSL_READ: &str = "ssl_read";
    pub const SSL_READ_EX: &str = "ssl_read_ex";
    pub const SSL_WRITE: &str = "ssl_write";
    pub const SSL_WRITE_EX: &str = "ssl_write_ex";
    pub const SSL_RETURN: &str = "ssl_return";
    /// Go's `crypto/tls`: at the entry of `(*Conn).Write`, at the entry of `(*Conn).Read`, and
    /// at each `RET` of `Read`.
    pub const GO_TLS_WRITE: &str = "go_tls_write";
    pub const GO_TLS_READ: &str = "go_tls_read";
    pub const GO_TLS_READ_RETURN: &str = "go_tls_read_return";
    /// The return probe on bash's `readline`.
    pub const READLINE_RETURN: &str = "readline_return";
    /// Every uprobe program, loaded at start and attached per file as files are found.
    pub const UPROBES: [&str; 9] = [
        SSL_READ,
        SSL_READ_EX,
        SSL_WRITE,
        SSL_WRITE_EX,
        SSL_RETURN,
        GO_TLS_WRITE,
        GO_TLS_READ,
        GO_TLS_READ_RETURN,
        READLINE_RETURN,
    ];
}

/// Runtime settings the agent can change without reloading, in the `SETTINGS` array map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Settings {
    /// Shallowest and deepest cgroup level that holds a watched cgroup (levels to check).
    pub min_level: u32,
    pub max_level: u32,
}

/// `aya::Pod` for every type that crosses: read from the ring buffer or a map, or written into
/// a map or a global. Also what lets user space read one out of bytes safely.
#[cfg(feature = "user")]
mod pod {
    use super::*;

    macro_rules! pod {
        ($($t:ty),* $(,)?) => {
            $(
                // SAFETY: repr(C) and Copy, made only of integers and arrays of integers, with
                // every padding byte an explicit field (the size tests below hold the layout):
                // any bit pattern is a valid value, and no byte is uninitialised.
                unsafe impl aya::Pod for $t {}
            )*
        };
    }

    pod!(
        ProcKey,
        ProcInfo,
        EventHeader,
        RawPath,
        ExecHead,
        ExecEvent,
        ExitEvent,
        SockInfo,
        DataHead,
        DataEvent,
        LibraryEvent,
        ShellEvent,
        ForkEvent,
        IoUringEvent,
        CloseEvent,
        KernelOffsets,
        Settings,
    );
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    // The layouts must not depend on the target: every field is naturally aligned, no implicit padding.
    #[test]
    fn event_sizes_are_stable() {
        assert_eq!(size_of::<ProcKey>(), 16);
        assert_eq!(size_of::<ProcInfo>(), 40);
        assert_eq!(size_of::<EventHeader>(), 32);
        assert_eq!(size_of::<RawPath>(), 8 + PATH_COMPONENT * PATH_DEPTH);
        assert_eq!(EXEC_FIXED_LEN, 32 + 48 + 16 + 8 + 2 * size_of::<RawPath>());
        assert_eq!(size_of::<ExecEvent>(), EXEC_FIXED_LEN + ARGV_MAX);
        assert_eq!(core::mem::offset_of!(ExecEvent, argv), EXEC_FIXED_LEN);
        assert_eq!(size_of::<ExitEvent>(), 32 + 32 + 8);
        assert_eq!(size_of::<KernelOffsets>(), 47 * 4);
        assert_eq!(size_of::<SockInfo>(), 56);
        assert_eq!(size_of::<DataHead>(), 32 + 32 + 56 + 8 + 16 + 8 + 8 + 8);
        assert_eq!(size_of::<DataEvent>(), DATA_FIXED_LEN + DATA_CHUNK);
        assert_eq!(size_of::<ShellEvent>(), 32 + 32 + 8 + SHELL_LINE_MAX);
        assert_eq!(size_of::<ForkEvent>(), 32 + 8);
        assert_eq!(size_of::<LibraryEvent>(), 32 + size_of::<RawPath>());
        assert_eq!(size_of::<IoUringEvent>(), 32 + 32);
        assert_eq!(size_of::<CloseEvent>(), 32 + 8);
        assert_eq!(size_of::<Settings>(), 8);
    }

    #[test]
    fn every_offset_has_a_path_and_resolves_by_it() {
        assert_eq!(KernelOffsets::PATHS.len(), size_of::<KernelOffsets>() / 4);
        // Each hop counts once: a path of two hops adds both.
        let offsets = KernelOffsets::resolve(|s, m| {
            Ok::<_, ()>(if (s, m) == ("sock", "__sk_common") {
                1000
            } else {
                8
            })
        })
        .unwrap();
        assert_eq!(offsets.task_tgid, 8);
        assert_eq!(offsets.skc_family, 1008);
        assert_eq!(
            KernelOffsets::resolve(|_, _| Err::<u32, _>("no BTF")),
            Err("no BTF")
        );
    }
}
