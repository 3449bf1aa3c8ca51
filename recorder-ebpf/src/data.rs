//! Shared by the socket and TLS probes: which socket an fd is, and sending the bytes of one
//! read/write call as `data` events (in chunks, under `bpf_loop`).
use aya_ebpf::bindings::BPF_RB_FORCE_WAKEUP;
use aya_ebpf::helpers::{
    bpf_get_current_task, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns,
    generated::{bpf_loop, bpf_probe_read_user, bpf_ringbuf_output},
};
use recorder_common::{
    DATA_CHUNK, DATA_FIXED_LEN, DATA_HELD, DATA_IOV_MAX, DATA_SYSCALL_MAX, DATA_TRUNCATED,
    DataEvent, EventKind, ProcInfo, SockInfo,
};

use crate::{
    emit::{count_loss, wakeup_flags},
    kernel::{off, read, read_into, read_ptr},
    maps::{DATA_SCRATCH, EVENTS, SOCKETS},
};

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;
const SOCK_STREAM: u16 = 1;
const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// The `struct file *` behind `fd` of the current task.
#[inline(always)]
pub fn file_of_fd(fd: u32) -> Option<*const u8> {
    // SAFETY: plain helper call.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let files = read_ptr(task, off!(task_files)).ok()?;
    let fdt = read_ptr(files, off!(files_fdt)).ok()?;
    let max: u32 = read(fdt, off!(fdtable_max_fds)).ok()?;
    if fd >= max {
        return None;
    }
    let fds = read_ptr(fdt, off!(fdtable_fd)).ok()?;
    let file = read_ptr(fds, fd.wrapping_mul(8)).ok()?;
    if file.is_null() { None } else { Some(file) }
}

/// The stream socket behind `fd` of the current task, if it is one (TCP over IPv4/IPv6, or Unix).
#[inline(always)]
pub fn socket_of_fd(fd: u32) -> Option<SockInfo> {
    socket_of_file(file_of_fd(fd)?)
}

/// The `struct sock *` of the socket the open `file` is, if it is a socket.
#[inline(always)]
pub fn sock_of_file(file: *const u8) -> Option<*const u8> {
    let inode = read_ptr(file, off!(file_f_inode)).ok()?;
    let mode: u16 = read(inode, off!(inode_i_mode)).ok()?;
    if mode & S_IFMT != S_IFSOCK {
        return None;
    }
    let socket = read_ptr(file, off!(file_private_data)).ok()?;
    read_ptr(socket, off!(socket_sk)).ok()
}

/// The stream socket that the open `file` is, if it is one, with the cookie it has.
#[inline(always)]
pub fn socket_of_file(file: *const u8) -> Option<SockInfo> {
    let sk = sock_of_file(file)?;
    let mut info = SockInfo::default();
    if !sock_info(sk, &mut info) {
        return None;
    }
    info.cookie = stored_cookie(sk);
    Some(info)
}

/// Whether descriptor `fd` of the current task is socket `sk` (its open file is the socket's).
#[inline(always)]
pub fn fd_is_socket(fd: u32, sk: *const u8) -> bool {
    let Some(file) = file_of_fd(fd) else {
        return false;
    };
    read_ptr(sk, off!(sock_sk_socket))
        .and_then(|socket| read_ptr(socket, off!(socket_file)))
        .is_ok_and(|socket_file| socket_file == file)
}

/// The endpoints of socket `sk`, whose cookie is `cookie`, into `info`: from the sockets
/// already seen (keyed by cookie, which no other socket ever has, so no entry goes stale), else
/// read from the socket and kept. False if it is no stream socket the agent decodes.
#[inline(always)]
pub fn socket_with_cookie(sk: *const u8, cookie: u64, info: &mut SockInfo) -> bool {
    // SAFETY: the map value is copied out at once.
    if let Some(known) = unsafe { SOCKETS.get(&cookie) } {
        *info = *known;
        return true;
    }
    if !sock_info(sk, info) {
        return false;
    }
    info.cookie = cookie;
    let _ = SOCKETS.insert(&cookie, info, 0);
    true
}

/// The cookie socket `sk` has already been given (by the socket tracepoints), or 0 when the
/// cookies are not in use.
#[inline(always)]
pub fn stored_cookie(sk: *const u8) -> u64 {
    // SAFETY: a plain static; the volatile read keeps the unpatched 0 from being folded in.
    if unsafe { core::ptr::read_volatile(&raw const USE_COOKIES) } == 0 {
        return 0;
    }
    read(sk, off!(skc_cookie)).unwrap_or(0)
}

/// Whether socket cookies identify connections (patched by the loader: 1 with the socket
/// tracepoints, which make a cookie for every socket they see; 0 with the system-call capture,
/// where a cookie could appear in the middle of a connection).
#[unsafe(no_mangle)]
pub(crate) static USE_COOKIES: u8 = 0;

/// Fills `info` with the endpoints of stream socket `sk` (not its cookie); false if it is no
/// stream socket of a family the agent decodes (TCP over IPv4/IPv6, Unix). Written in place:
/// the struct is part of the event being built, not of the stack.
#[inline(always)]
pub fn sock_info(sk: *const u8, info: &mut SockInfo) -> bool {
    sock_info_parts(sk, info).is_some()
}

#[inline(always)]
fn sock_info_parts(sk: *const u8, info: &mut SockInfo) -> Option<()> {
    let kind: u16 = read(sk, off!(sock_sk_type)).ok()?;
    if kind != SOCK_STREAM {
        return None;
    }
    info.family = read(sk, off!(skc_family)).ok()?;
    info.sock = sk as u64;
    let family = info.family;
    // The addresses are read straight into the struct: reading them into arrays and copying
    // them made the compiler move them byte by byte through the stack, whose frame then passed
    // the verifier's 512-byte bound for the vectored calls.
    let len = match family {
        AF_INET => 4,
        AF_INET6 => 16,
        AF_UNIX => 0,
        _ => return None,
    };
    if len != 0 {
        let (raddr, laddr) = if family == AF_INET {
            (off!(skc_daddr), off!(skc_rcv_saddr))
        } else {
            (off!(skc_v6_daddr), off!(skc_v6_rcv_saddr))
        };
        read_into(info.raddr.as_mut_ptr(), len, sk, raddr).ok()?;
        read_into(info.laddr.as_mut_ptr(), len, sk, laddr).ok()?;
        let dport: u16 = read(sk, off!(skc_dport)).ok()?;
        info.rport = u16::from_be(dport);
        info.lport = read(sk, off!(skc_num)).ok()?;
    }
    Some(())
}

/// Starts the `data` events of one call of a tracked process: this CPU's event slot, its head
/// blank but for the process, for the caller to fill (socket, source, direction, flags) in
/// place; every event of the call is then sent from it. Large structs stay out of the programs'
/// stacks, whose frames add up across the `bpf_loop` callbacks to a bound of 512 bytes.
#[inline(always)]
pub fn begin_call(info: &ProcInfo, tgid: u32) -> Option<&'static mut DataEvent> {
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(event) = DATA_SCRATCH.get_ptr_mut(cpu) else {
        count_loss(info.identity, EventKind::Data);
        return None;
    };
    // SAFETY: this CPU's slot; programs on one CPU do not nest here. The head is zeroed in
    // place, not built on the stack and copied.
    let ev = unsafe {
        core::ptr::write_bytes(&raw mut (*event).head, 0, 1);
        &mut *event
    };
    ev.head.header.kind = EventKind::Data as u32;
    ev.head.header.identity = info.identity;
    ev.head.header.pid = tgid;
    ev.head.exec = info.exec;
    ev.head.session = info.session;
    Some(ev)
}

/// State of one chunked send, shared with the `bpf_loop` callback.
#[repr(C)]
struct ChunkSend {
    event: *mut DataEvent,
    buf: u64,
    captured: u64,
    /// 1 once an event of the call found no room in the ring buffer.
    failed: u64,
}

/// Sends the `total` bytes at user address `buf` as data events of the call in `ev`. Returns
/// whether every event reached the ring buffer.
#[inline(always)]
pub fn send_data(ev: &mut DataEvent, buf: u64, total: u64) -> bool {
    let captured = if total > DATA_SYSCALL_MAX as u64 {
        DATA_SYSCALL_MAX as u64
    } else {
        total
    };
    stamp(ev, total);
    if captured < total {
        ev.head.flags |= DATA_TRUNCATED;
    }
    let mut send = ChunkSend {
        event: ev,
        buf,
        captured,
        failed: 0,
    };
    let send_ptr = (&raw mut send).cast::<core::ffi::c_void>();
    if captured <= DATA_CHUNK as u64 {
        // Most calls fit one chunk: a direct call spares bpf_loop's set-up.
        send_chunk(0, send_ptr);
    } else {
        let chunks = captured.div_ceil(DATA_CHUNK as u64) as u32;
        // SAFETY: the callback only touches `send`, which outlives the call.
        unsafe { bpf_loop(chunks, send_chunk as *mut _, send_ptr, 0) };
    }
    send.failed == 0
}

/// Stamps the next run of events of the call: now, `total` bytes, no truncation yet.
#[inline(always)]
fn stamp(ev: &mut DataEvent, total: u64) {
    // SAFETY: plain helper call.
    ev.head.header.ktime = unsafe { bpf_ktime_get_boot_ns() };
    ev.head.total = total;
    ev.head.flags &= !DATA_TRUNCATED;
}

/// State of one vectored send, shared with the `bpf_loop` callback.
#[repr(C)]
struct IovSend {
    event: *mut DataEvent,
    iov: u64,
    /// Bytes of the call not yet sent, within `DATA_SYSCALL_MAX`.
    left: u64,
}

/// Sends the `total` bytes a vectored call moved through the `iovcnt` buffers of the `iovec`
/// array at `iov`, buffer after buffer: each buffer's bytes are one run of `data` events, so
/// the stream reads the same as if they had come from one `write`. Bytes past `DATA_IOV_MAX`
/// buffers or `DATA_SYSCALL_MAX` bytes are reported as not captured.
#[inline(always)]
pub fn send_iovecs(ev: &mut DataEvent, iov: u64, iovcnt: u32, total: u64) {
    let budget = if total > DATA_SYSCALL_MAX as u64 {
        DATA_SYSCALL_MAX as u64
    } else {
        total
    };
    let mut send = IovSend {
        event: ev,
        iov,
        left: budget,
    };
    let buffers = if iovcnt > DATA_IOV_MAX {
        DATA_IOV_MAX
    } else {
        iovcnt
    };
    // SAFETY: the callback only touches `send`, which outlives the call.
    unsafe { bpf_loop(buffers, send_iovec as *mut _, (&raw mut send).cast(), 0) };
    let sent = budget - send.left;
    if sent < total {
        // SAFETY: the event slot outlives the loop; the callback is done with it.
        send_gap(unsafe { &mut *send.event }, total - sent, DATA_TRUNCATED);
    }
}

/// Sends buffer `index` of a vectored call: 0 to go on, 1 to stop.
extern "C" fn send_iovec(index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: ctx is the `IovSend` that `send_iovecs` passed to bpf_loop.
    let send = unsafe { &mut *(ctx as *mut IovSend) };
    if send.left == 0 {
        return 1;
    }
    // `struct iovec { void *iov_base; size_t iov_len; }`
    let mut vec = [0u64; 2];
    // SAFETY: 16 bytes into a 16-byte array; the helper fails softly on bad addresses.
    let rc = unsafe {
        bpf_probe_read_user(
            vec.as_mut_ptr() as *mut _,
            16,
            (send.iov + index * 16) as *const _,
        )
    };
    if rc != 0 {
        return 1;
    }
    let len = if vec[1] > send.left {
        send.left
    } else {
        vec[1]
    };
    if len > 0 {
        // SAFETY: the event slot outlives the loop.
        let _ = send_data(unsafe { &mut *send.event }, vec[0], len);
        send.left -= len;
    }
    0
}

/// One event that stands for `total` bytes of the call in `ev` that moved but were not
/// captured: `flags` says why (`DATA_TRUNCATED`: past the bounds of one call;
/// `DATA_UNCAPTURED`: no user buffer; `DATA_DISCARDED`: the kernel copied nothing).
#[inline(always)]
pub fn send_gap(ev: &mut DataEvent, total: u64, flags: u32) {
    stamp(ev, total);
    ev.head.flags |= flags;
    ev.head.offset = 0;
    ev.head.len = 0;
    let identity = ev.head.header.identity;
    // SAFETY: the event is valid for DATA_FIXED_LEN bytes.
    let rc = unsafe {
        bpf_ringbuf_output(
            &raw const EVENTS as *mut _,
            (ev as *mut DataEvent).cast(),
            DATA_FIXED_LEN as u64,
            wakeup_flags(),
        )
    };
    if rc != 0 {
        count_loss(identity, EventKind::Data);
    }
}

/// Sends chunk `index` of a call's bytes: 0 to go on, 1 to stop. Never inlined: a direct call
/// keeps the length check and the read it bounds together, where the verifier can see them.
#[inline(never)]
extern "C" fn send_chunk(index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: ctx is the `ChunkSend` that `send_data` passed.
    let send = unsafe { &mut *(ctx as *mut ChunkSend) };
    // SAFETY: the scratch slot outlives the loop.
    let ev = unsafe { &mut *send.event };
    let offset = index * DATA_CHUNK as u64;
    if offset > send.captured {
        return 1;
    }
    let mut len = send.captured - offset;
    if len > DATA_CHUNK as u64 {
        len = DATA_CHUNK as u64;
    }
    // SAFETY: len <= DATA_CHUNK, the size of `data`; the helper fails softly on bad addresses.
    let rc = unsafe {
        bpf_probe_read_user(
            ev.data.as_mut_ptr() as *mut _,
            len as u32,
            (send.buf + offset) as *const _,
        )
    };
    if rc != 0 {
        len = 0;
    }
    ev.head.offset = offset as u32;
    ev.head.len = len as u32;
    // A held process waits for the agent: wake it now, not at its next poll.
    let wakeup = if ev.head.flags & DATA_HELD != 0 {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        wakeup_flags()
    };
    // SAFETY: the event is valid for DATA_FIXED_LEN + len bytes.
    let rc = unsafe {
        bpf_ringbuf_output(
            &raw const EVENTS as *mut _,
            send.event as *mut _,
            DATA_FIXED_LEN as u64 + len,
            wakeup,
        )
    };
    if rc != 0 {
        send.failed = 1;
        count_loss(ev.head.header.identity, EventKind::Data);
    }
    0
}
