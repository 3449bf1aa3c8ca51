//! Socket reads and writes of tracked processes, off the system-call path: the tracepoints
//! `sock_send_length` and `sock_recv_length` fire at the end of `sock_sendmsg` and
//! `sock_recvmsg`, for sockets only, after the bytes were copied (into the socket on a send, to
//! the process on a receive), with the `struct sock *` and the byte count. A process that is
//! not tracked pays one map lookup per socket operation and nothing per system call.
//!
//! The bytes are read from the user buffers of the system call the task is in, found in its
//! saved registers: `read`/`write`/`recvfrom`/`sendto` (one buffer), `readv`/`writev`/
//! `preadv2`/`pwritev2` (an `iovec` array), `recvmsg`/`sendmsg` (a `msghdr`), `recvmmsg`/
//! `sendmmsg` (one `msghdr` per message, each its own firing). The call's file descriptor must
//! be this very socket. Anything else (io_uring, `sendfile`, `splice`, a kernel thread) has no
//! user buffer to read: a `DATA_UNCAPTURED` event says how many bytes went by, never garbage.
//!
//! Semantics checked on Linux 6.18: each firing follows the copy of exactly `ret` bytes (a
//! partial read or write reports what moved); `MSG_PEEK` reads are skipped (the bytes come again
//! with the read that consumes them); a TCP `MSG_TRUNC` receive discards the bytes without
//! copying them (`DATA_DISCARDED`).
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, generated::bpf_get_socket_cookie},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use recorder_common::{
    DATA_DISCARDED, DATA_UNCAPTURED, DIR_EGRESS, DIR_INGRESS, DataEvent, DataSource, SYSCALL_NONE,
};

use crate::{
    data::{begin_call, fd_is_socket, send_data, send_gap, send_iovecs, socket_with_cookie},
    maps::{MMSG_CALLS, MmsgCall, PROCS, TLS_CALLS, TLS_SOCKETS, TlsSocket},
    syscall::{self, nr},
};

const MSG_PEEK: i32 = 2;
const MSG_TRUNC: i32 = 0x20;
const MSG_DONTWAIT: i32 = 0x40;
const MSG_WAITFORONE: i32 = 0x1_0000;
/// `struct user_msghdr`: `msg_iov` and `msg_iovlen` (after `msg_name` and the padded
/// `msg_namelen`); `struct mmsghdr` is one, then `msg_len`, padded to 64 bytes.
const MSG_IOV: u64 = 16;
const MSG_IOVLEN: u64 = 24;
const MMSGHDR_SIZE: u64 = 64;
const MMSG_LEN: u64 = 56;

#[btf_tracepoint(function = "sock_send_length")]
pub fn sock_send_length(ctx: BtfTracePointContext) -> i32 {
    if crate::emit::floor() {
        return 0;
    }
    on_socket_io(&ctx, DIR_EGRESS);
    0
}

#[btf_tracepoint(function = "sock_recv_length")]
pub fn sock_recv_length(ctx: BtfTracePointContext) -> i32 {
    if crate::emit::floor() {
        return 0;
    }
    on_socket_io(&ctx, DIR_INGRESS);
    0
}

/// Where the bytes of one socket operation are in the process's memory.
enum Buffers {
    One {
        buf: u64,
    },
    Vector {
        iov: u64,
        count: u64,
    },
    Message {
        msg: u64,
    },
    /// No user buffer: the system call the task was in (`SYSCALL_NONE`: none).
    None {
        syscall: u32,
    },
}

#[inline(always)]
fn on_socket_io(ctx: &BtfTracePointContext, direction: u32) {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    // SAFETY: the value is copied out at once.
    let Some(info) = (unsafe { PROCS.get(&tgid) }).copied() else {
        return;
    };
    let sk: *const u8 = ctx.arg(0);
    let ret: i32 = ctx.arg(1);
    let flags: i32 = ctx.arg(2);
    if ret <= 0 || (direction == DIR_INGRESS && flags & MSG_PEEK != 0) {
        return;
    }
    // Inside SSL_read/SSL_write: ciphertext. Remember the TLS connection's socket instead.
    // SAFETY: the value is copied out at once.
    if let Some(tls) = unsafe { TLS_CALLS.get(&id) }
        .copied()
        .filter(|call| call.active != 0)
    {
        learn_tls_socket(tls.ssl, sk);
        return;
    }
    let Some(call) = begin_call(&info, tgid) else {
        return;
    };
    // SAFETY: `sk` is the tracepoint's `struct sock *` argument, a pointer the verifier knows.
    let cookie = unsafe { bpf_get_socket_cookie(sk as *mut _) };
    if !socket_with_cookie(sk, cookie, &mut call.head.sock) {
        return;
    }
    call.head.source = DataSource::Socket as u32;
    call.head.direction = direction;
    let total = ret as u64;
    if direction == DIR_INGRESS && flags & MSG_TRUNC != 0 {
        send_gap(call, total, DATA_DISCARDED);
        return;
    }
    match user_buffers(id, sk, direction, flags, total) {
        Buffers::One { buf } => {
            let _ = send_data(call, buf, total);
        }
        Buffers::Vector { iov, count } => send_iovecs(call, iov, clamp(count), total),
        Buffers::Message { msg } => send_message(call, msg, total),
        Buffers::None { syscall } => {
            call.head.syscall = syscall;
            send_gap(call, total, DATA_UNCAPTURED);
        }
    }
}

/// The user buffers of the current socket operation, from the system call the task is in, if
/// that call is a read or write of this very socket.
#[inline(always)]
fn user_buffers(id: u64, sk: *const u8, direction: u32, flags: i32, total: u64) -> Buffers {
    let Some(call) = syscall::current() else {
        return Buffers::None {
            syscall: SYSCALL_NONE,
        };
    };
    let [fd, a1, a2, _, _] = call.args;
    let ingress = direction == DIR_INGRESS;
    let buffers = match call.nr {
        nr::READ | nr::RECVFROM if ingress => Buffers::One { buf: a1 },
        nr::WRITE | nr::SENDTO if !ingress => Buffers::One { buf: a1 },
        nr::READV | nr::PREADV2 if ingress => Buffers::Vector { iov: a1, count: a2 },
        nr::WRITEV | nr::PWRITEV2 if !ingress => Buffers::Vector { iov: a1, count: a2 },
        nr::RECVMSG if ingress => Buffers::Message { msg: a1 },
        nr::SENDMSG if !ingress => Buffers::Message { msg: a1 },
        nr::RECVMMSG if ingress => Buffers::Message {
            msg: next_message(id, a1, a2, flags, total),
        },
        nr::SENDMMSG if !ingress => Buffers::Message {
            msg: next_message(id, a1, a2, flags, total),
        },
        other => return Buffers::None { syscall: other },
    };
    // The call's fd must be this socket: a call that moves bytes on another descriptor has
    // no buffer of this socket's bytes.
    if u32::try_from(fd).is_ok_and(|fd| fd_is_socket(fd, sk)) {
        buffers
    } else {
        Buffers::None { syscall: call.nr }
    }
}

/// The `msghdr` of the message a `sendmmsg`/`recvmmsg` call is moving now. The kernel sends or
/// receives message after message, each a firing of the tracepoint, and writes each message's
/// `msg_len` once it is done: the thread's last firing on the same array continues the same call
/// when the previous message's `msg_len` is the count it moved, the array is not used up, and
/// (`MSG_WAITFORONE`) the firing is not the first, blocking, one of a call. Otherwise this is a
/// new call, at its first message.
#[inline(always)]
fn next_message(id: u64, vec: u64, vlen: u64, flags: i32, total: u64) -> u64 {
    // SAFETY: the value is copied out at once.
    let last = unsafe { MMSG_CALLS.get(&id) }.copied();
    let first_of_call = flags & MSG_WAITFORONE != 0 && flags & MSG_DONTWAIT == 0;
    let index = match last {
        Some(l) if l.vec == vec && l.index > 0 && l.index < vlen && !first_of_call => {
            let done_len = vec + (l.index - 1) * MMSGHDR_SIZE + MMSG_LEN;
            // SAFETY: a user memory read; the helper fails softly.
            let written = unsafe { bpf_probe_read_user(done_len as *const u32) }.unwrap_or(0);
            if u64::from(written) == l.moved {
                l.index
            } else {
                0
            }
        }
        _ => 0,
    };
    let call = MmsgCall {
        vec,
        index: index + 1,
        moved: total,
    };
    let _ = MMSG_CALLS.insert(&id, &call, 0);
    vec + index * MMSGHDR_SIZE
}

/// Sends the bytes of the message described by the user `msghdr` at `msg`.
#[inline(always)]
fn send_message(call: &mut DataEvent, msg: u64, total: u64) {
    // SAFETY: reads of user memory; a bad address fails the read, not the program.
    let (iov, count) = unsafe {
        (
            bpf_probe_read_user((msg + MSG_IOV) as *const u64).unwrap_or(0),
            bpf_probe_read_user((msg + MSG_IOVLEN) as *const u64).unwrap_or(0),
        )
    };
    send_iovecs(call, iov, clamp(count), total);
}

/// Records that TLS connection `ssl` runs on socket `sk`. A library makes several system calls
/// per TLS record, all on the same socket: when the socket is the one already known, its
/// addresses are not read again, nor the LRU entry rewritten (an update costs more than the
/// lookup).
#[inline(always)]
fn learn_tls_socket(ssl: u64, sk: *const u8) {
    // SAFETY: only compared.
    let known = unsafe { TLS_SOCKETS.get(&ssl) }.is_some_and(|s| s.sock.sock == sk as u64);
    if known {
        return;
    }
    let mut socket = TlsSocket::default();
    // SAFETY: `sk` is the tracepoint's `struct sock *` argument.
    let cookie = unsafe { bpf_get_socket_cookie(sk as *mut _) };
    if !socket_with_cookie(sk, cookie, &mut socket.sock) {
        return;
    }
    let _ = TLS_SOCKETS.insert(&ssl, &socket, 0);
}

#[inline(always)]
fn clamp(count: u64) -> u32 {
    count.min(u64::from(u32::MAX)) as u32
}
