//! The fallback socket capture, for kernels without the socket tracepoints (older than 6.3; see
//! `sock.rs`): every system call tracepoint attached puts every task of the host on the slow
//! system-call path, so this is used only where nothing else works.
//!
//! Socket reads and writes of tracked processes, from the system call tracepoints: `write`,
//! `read`, `sendto`, `recvfrom` (what libpq, the MariaDB client and OpenSSL's socket BIO use),
//! and the vectored `writev`, `readv`, `sendmsg`, `recvmsg` (libuv, Go's `net.Buffers`, many
//! event loops). Only their exits are probed: knowing how many bytes moved, and the arguments
//! still being in the task's saved registers, the exit sends the bytes if the fd is a stream
//! socket. Inside an OpenSSL call the bytes are ciphertext: they are not sent, but teach us
//! which socket the TLS connection runs on.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use recorder_common::{CloseEvent, DIR_EGRESS, DIR_INGRESS, DataSource, EventKind};

use crate::{
    data::{begin_call, file_of_fd, send_data, send_iovecs, sock_info, sock_of_file, socket_of_fd},
    emit::{count_loss, wakeup_flags},
    maps::{EVENTS, PROCS, TLS_CALLS, TLS_SOCKETS, TlsSocket},
};

// The syscall tracepoints' records: an 8-byte common header, the syscall number, then each
// argument as 8 bytes (`fd` at 16); on exit, `ret` at 16. Stable ABI of tracefs.
const ARG0: usize = 16;
const RET: usize = 16;
/// `struct user_msghdr`: `msg_iov` and `msg_iovlen` (x86-64 layout, after `msg_name` and the
/// padded `msg_namelen`).
const MSG_IOV: u64 = 16;
const MSG_IOVLEN: u64 = 24;

#[tracepoint(category = "syscalls", name = "sys_exit_write")]
pub fn sys_exit_write(ctx: TracePointContext) -> u32 {
    if crate::emit::floor() {
        return 0;
    }
    exit(&ctx, DIR_EGRESS, Buffers::One)
}
#[tracepoint(category = "syscalls", name = "sys_exit_sendto")]
pub fn sys_exit_sendto(ctx: TracePointContext) -> u32 {
    if crate::emit::floor() {
        return 0;
    }
    exit(&ctx, DIR_EGRESS, Buffers::One)
}
#[tracepoint(category = "syscalls", name = "sys_exit_read")]
pub fn sys_exit_read(ctx: TracePointContext) -> u32 {
    if crate::emit::floor() {
        return 0;
    }
    exit(&ctx, DIR_INGRESS, Buffers::One)
}
#[tracepoint(category = "syscalls", name = "sys_exit_recvfrom")]
pub fn sys_exit_recvfrom(ctx: TracePointContext) -> u32 {
    if crate::emit::floor() {
        return 0;
    }
    exit(&ctx, DIR_INGRESS, Buffers::One)
}
#[tracepoint(category = "syscalls", name = "sys_exit_writev")]
pub fn sys_exit_writev(ctx: TracePointContext) -> u32 {
    if crate::emit::floor() {
        return 0;
    }
    exit(&ctx, DIR_EGRESS, Buffers::Vector)
}
#[tracepoint(category = "syscalls", name = "sys_exit_readv")]
pub fn sys_exit_readv(ctx: TracePointContext) -> u32 {
    if crate::emit::floor() {
        return 0;
    }
    exit(&ctx, DIR_INGRESS, Buffers::Vector)
}
#[tracepoint(category = "syscalls", name = "sys_exit_sendmsg")]
pub fn sys_exit_sendmsg(ctx: TracePointContext) -> u32 {
    if crate::emit::floor() {
        return 0;
    }
    exit(&ctx, DIR_EGRESS, Buffers::Message)
}
#[tracepoint(category = "syscalls", name = "sys_exit_recvmsg")]
pub fn sys_exit_recvmsg(ctx: TracePointContext) -> u32 {
    if crate::emit::floor() {
        return 0;
    }
    exit(&ctx, DIR_INGRESS, Buffers::Message)
}

/// Where a call's bytes are, from its second and third arguments.
#[derive(Clone, Copy)]
enum Buffers {
    /// `write(fd, buf, n)`, `read`, `sendto`, `recvfrom`.
    One,
    /// `writev(fd, iov, iovcnt)`, `readv`.
    Vector,
    /// `sendmsg(fd, msg, flags)`, `recvmsg`: the message's `iovec` array.
    Message,
}

/// The first three arguments of the system call the current task is leaving, from its saved
/// user registers: the kernel changes only the return value's register for these calls.
#[inline(always)]
fn syscall_args() -> Option<[u64; 3]> {
    let call = crate::syscall::current()?;
    Some([call.args[0], call.args[1], call.args[2]])
}

/// Every capture happens at the call's exit, which knows how many bytes moved; the arguments
/// are still in the saved registers, so no entry probe (and no map of calls in flight) is
/// needed. Unwatched processes stop at the first lookup.
#[inline(always)]
fn exit(ctx: &TracePointContext, direction: u32, buffers: Buffers) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    // SAFETY: the value is copied out at once.
    let Some(info) = (unsafe { PROCS.get(&tgid) }).copied() else {
        return 0;
    };
    // SAFETY: read of the tracepoint record at a fixed offset.
    let ret: i64 = unsafe { ctx.read_at::<i64>(RET) }.unwrap_or(-1);
    if ret <= 0 {
        return 0;
    }
    let Some([fd, buf, count]) = syscall_args() else {
        // Never expected (the registers are kernel memory of the current task); counted, so
        // it could not go unseen.
        count_loss(info.identity, EventKind::Data);
        return 0;
    };
    let fd = fd as u32;
    // Inside SSL_read/SSL_write: ciphertext. Remember the TLS connection's socket instead.
    // SAFETY: the value is copied out at once.
    if let Some(tls) = unsafe { TLS_CALLS.get(&id) }
        .copied()
        .filter(|call| call.active != 0)
    {
        learn_tls_socket(tls.ssl, fd);
        return 0;
    }
    let Some(file) = file_of_fd(fd) else {
        return 0;
    };
    let Some(sk) = sock_of_file(file) else {
        return 0;
    };
    let Some(call) = begin_call(&info, tgid) else {
        return 0;
    };
    if !sock_info(sk, &mut call.head.sock) {
        return 0;
    }
    call.head.source = DataSource::Socket as u32;
    call.head.direction = direction;
    call.head.fd = fd;
    match buffers {
        Buffers::One => {
            let _ = send_data(call, buf, ret as u64);
        }
        Buffers::Vector => send_iovecs(call, buf, clamp(count), ret as u64),
        Buffers::Message => {
            // SAFETY: reads of user memory; a bad address fails the read, not the program.
            let (iov, iovcnt) = unsafe {
                (
                    bpf_probe_read_user((buf + MSG_IOV) as *const u64).unwrap_or(0),
                    bpf_probe_read_user((buf + MSG_IOVLEN) as *const u64).unwrap_or(0),
                )
            };
            send_iovecs(call, iov, clamp(iovcnt), ret as u64);
        }
    }
    0
}

/// Records that TLS connection `ssl` runs on `fd`, if that is a stream socket. A library makes
/// several system calls per TLS record, all on the same socket: when the open file is the one
/// already known, the socket's addresses are not read again, nor the LRU entry rewritten (an
/// update costs more than the lookup).
#[inline(always)]
fn learn_tls_socket(ssl: u64, fd: u32) {
    let Some(file) = file_of_fd(fd) else {
        return;
    };
    // SAFETY: only compared.
    let known =
        unsafe { TLS_SOCKETS.get(&ssl) }.is_some_and(|s| s.file == file as u64 && s.fd == fd);
    if known {
        return;
    }
    let Some(sk) = sock_of_file(file) else {
        return;
    };
    let mut socket = TlsSocket {
        file: file as u64,
        fd,
        ..TlsSocket::default()
    };
    if !sock_info(sk, &mut socket.sock) {
        return;
    }
    let _ = TLS_SOCKETS.insert(&ssl, &socket, 0);
}

#[inline(always)]
fn clamp(count: u64) -> u32 {
    count.min(u32::MAX as u64) as u32
}

/// `close` of a stream socket by a tracked process: the connection ends here for the agent.
#[tracepoint(category = "syscalls", name = "sys_enter_close")]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the map value is copied out at once.
    let Some(info) = (unsafe { PROCS.get(&tgid) }).copied() else {
        return 0;
    };
    // SAFETY: read of the tracepoint record at a fixed offset.
    let fd = unsafe { ctx.read_at::<u64>(ARG0) }.unwrap_or(u64::MAX);
    let Some(sock) = socket_of_fd(fd as u32) else {
        return 0;
    };
    let event = CloseEvent {
        header: crate::emit::header_now(EventKind::Close, info.identity, tgid),
        sock: sock.sock,
    };
    if EVENTS.output::<CloseEvent>(&event, wakeup_flags()).is_err() {
        count_loss(info.identity, EventKind::Close);
    }
    0
}
