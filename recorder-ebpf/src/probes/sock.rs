//! Socket reads and writes of tracked processes, from the system call tracepoints: `write`,
//! `read`, `sendto`, `recvfrom` (what libpq, the MariaDB client and OpenSSL's socket BIO use),
//! and the vectored `writev`, `readv`, `sendmsg`, `recvmsg` (libuv, Go's `net.Buffers`, many
//! event loops). Entry saves the buffer (or the `iovec` array); exit, knowing how many bytes
//! moved, sends them if the fd is a stream socket. Inside an OpenSSL call the bytes are
//! ciphertext: they are not sent, but teach us which socket the TLS connection runs on.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use recorder_common::{CloseEvent, DIR_EGRESS, DIR_INGRESS, DataHead, DataSource, EventKind};

use crate::{
    data::{send_data, send_iovecs, socket_of_fd},
    emit::{count_loss, wakeup_flags},
    maps::{EVENTS, PROCS, SOCKET_CALLS, SocketCall, TLS_CALLS, TLS_SOCKETS, TlsSocket},
};

// The syscall tracepoints' records: an 8-byte common header, the syscall number, then each
// argument as 8 bytes (`fd` at 16, `buf` at 24); on exit, `ret` at 16. Stable ABI of tracefs.
const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;
const RET: usize = 16;
/// `struct user_msghdr`: `msg_iov` and `msg_iovlen` (x86-64 layout, after `msg_name` and the
/// padded `msg_namelen`).
const MSG_IOV: u64 = 16;
const MSG_IOVLEN: u64 = 24;

#[tracepoint(category = "syscalls", name = "sys_enter_write")]
pub fn sys_enter_write(ctx: TracePointContext) -> u32 {
    enter(&ctx, DIR_EGRESS)
}
#[tracepoint(category = "syscalls", name = "sys_enter_sendto")]
pub fn sys_enter_sendto(ctx: TracePointContext) -> u32 {
    enter(&ctx, DIR_EGRESS)
}
#[tracepoint(category = "syscalls", name = "sys_enter_read")]
pub fn sys_enter_read(ctx: TracePointContext) -> u32 {
    enter(&ctx, DIR_INGRESS)
}
#[tracepoint(category = "syscalls", name = "sys_enter_recvfrom")]
pub fn sys_enter_recvfrom(ctx: TracePointContext) -> u32 {
    enter(&ctx, DIR_INGRESS)
}
#[tracepoint(category = "syscalls", name = "sys_enter_writev")]
pub fn sys_enter_writev(ctx: TracePointContext) -> u32 {
    enter_vectored(&ctx, DIR_EGRESS)
}
#[tracepoint(category = "syscalls", name = "sys_enter_readv")]
pub fn sys_enter_readv(ctx: TracePointContext) -> u32 {
    enter_vectored(&ctx, DIR_INGRESS)
}
#[tracepoint(category = "syscalls", name = "sys_enter_sendmsg")]
pub fn sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    enter_msg(&ctx, DIR_EGRESS)
}
#[tracepoint(category = "syscalls", name = "sys_enter_recvmsg")]
pub fn sys_enter_recvmsg(ctx: TracePointContext) -> u32 {
    enter_msg(&ctx, DIR_INGRESS)
}
#[tracepoint(category = "syscalls", name = "sys_exit_writev")]
pub fn sys_exit_writev(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}
#[tracepoint(category = "syscalls", name = "sys_exit_readv")]
pub fn sys_exit_readv(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}
#[tracepoint(category = "syscalls", name = "sys_exit_sendmsg")]
pub fn sys_exit_sendmsg(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}
#[tracepoint(category = "syscalls", name = "sys_exit_recvmsg")]
pub fn sys_exit_recvmsg(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}
#[tracepoint(category = "syscalls", name = "sys_exit_write")]
pub fn sys_exit_write(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}
#[tracepoint(category = "syscalls", name = "sys_exit_sendto")]
pub fn sys_exit_sendto(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}
#[tracepoint(category = "syscalls", name = "sys_exit_read")]
pub fn sys_exit_read(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}
#[tracepoint(category = "syscalls", name = "sys_exit_recvfrom")]
pub fn sys_exit_recvfrom(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}

/// Unwatched processes stop here: one hash lookup.
#[inline(always)]
fn tracked(id: u64) -> bool {
    // SAFETY: only tests presence.
    unsafe { PROCS.get(&((id >> 32) as u32)) }.is_some()
}

/// `write(fd, buf, n)`, `read`, `sendto`, `recvfrom`.
#[inline(always)]
fn enter(ctx: &TracePointContext, direction: u32) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if !tracked(id) {
        return 0;
    }
    // SAFETY: reads of the tracepoint record at fixed offsets.
    let (fd, buf) = unsafe {
        (
            ctx.read_at::<u64>(ARG0).unwrap_or(u64::MAX),
            ctx.read_at::<u64>(ARG1).unwrap_or(0),
        )
    };
    save_call(id, fd, buf, 0, direction);
    0
}

/// `writev(fd, iov, iovcnt)`, `readv`.
#[inline(always)]
fn enter_vectored(ctx: &TracePointContext, direction: u32) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if !tracked(id) {
        return 0;
    }
    // SAFETY: reads of the tracepoint record at fixed offsets.
    let (fd, iov, iovcnt) = unsafe {
        (
            ctx.read_at::<u64>(ARG0).unwrap_or(u64::MAX),
            ctx.read_at::<u64>(ARG1).unwrap_or(0),
            ctx.read_at::<u64>(ARG2).unwrap_or(0),
        )
    };
    save_call(id, fd, iov, iovcnt, direction);
    0
}

/// `sendmsg(fd, msg, flags)`, `recvmsg`: the buffers are the message's `iovec` array.
#[inline(always)]
fn enter_msg(ctx: &TracePointContext, direction: u32) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if !tracked(id) {
        return 0;
    }
    // SAFETY: reads of the tracepoint record at fixed offsets.
    let (fd, msg) = unsafe {
        (
            ctx.read_at::<u64>(ARG0).unwrap_or(u64::MAX),
            ctx.read_at::<u64>(ARG1).unwrap_or(0),
        )
    };
    // SAFETY: reads of user memory; a bad address fails the read, not the program.
    let (iov, iovcnt) = unsafe {
        (
            bpf_probe_read_user((msg + MSG_IOV) as *const u64).unwrap_or(0),
            bpf_probe_read_user((msg + MSG_IOVLEN) as *const u64).unwrap_or(0),
        )
    };
    save_call(id, fd, iov, iovcnt, direction);
    0
}

#[inline(always)]
fn save_call(id: u64, fd: u64, buf: u64, iovcnt: u64, direction: u32) {
    let _ = SOCKET_CALLS.insert(
        &id,
        &SocketCall {
            buf,
            fd: fd as u32,
            direction,
            iovcnt: iovcnt.min(u32::MAX as u64) as u32,
            _pad: 0,
        },
        0,
    );
}

#[inline(always)]
fn exit(ctx: &TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out at once.
    let Some(call) = (unsafe { SOCKET_CALLS.get(&id) }).copied() else {
        return 0;
    };
    let _ = SOCKET_CALLS.remove(&id);
    // SAFETY: read of the tracepoint record at a fixed offset.
    let ret: i64 = unsafe { ctx.read_at::<i64>(RET) }.unwrap_or(-1);
    if ret <= 0 {
        return 0;
    }
    let Some(sock) = socket_of_fd(call.fd) else {
        return 0;
    };
    // Inside SSL_read/SSL_write: ciphertext. Remember the TLS connection's socket instead.
    // SAFETY: the value is copied out at once.
    if let Some(tls) = unsafe { TLS_CALLS.get(&id) }.copied() {
        let _ = TLS_SOCKETS.insert(
            &tls.ssl,
            &TlsSocket {
                sock,
                fd: call.fd,
                _pad: 0,
            },
            0,
        );
        return 0;
    }
    let tgid = (id >> 32) as u32;
    // SAFETY: the value is copied out at once.
    let Some(info) = (unsafe { PROCS.get(&tgid) }).copied() else {
        return 0;
    };
    let head = DataHead {
        sock,
        source: DataSource::Socket as u32,
        direction: call.direction,
        fd: call.fd,
        ..DataHead::default()
    };
    if call.iovcnt == 0 {
        send_data(&info, tgid, head, call.buf, ret as u64);
    } else {
        send_iovecs(&info, tgid, head, call.buf, call.iovcnt, ret as u64);
    }
    0
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
