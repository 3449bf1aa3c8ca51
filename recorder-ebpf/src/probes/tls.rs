//! OpenSSL plaintext: uprobes on `SSL_write`, `SSL_write_ex`, `SSL_read`, `SSL_read_ex` in each
//! libssl the agent attaches to. Entry saves the call; the return probe, knowing the byte count,
//! sends the plaintext with the socket learnt from the library's own system calls.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use recorder_common::{
    DATA_HELD, DATA_NO_SOCKET, DIR_EGRESS, DIR_INGRESS, DataSource, HOLD_TLS_WRITE, ProcInfo,
};

use crate::{
    data::{begin_call, send_data},
    hold::{cancel_stop, stop_if_held},
    maps::{PROCS, TLS_CALLS, TLS_SOCKETS, TlsCall},
};

#[uprobe]
pub fn ssl_write(ctx: ProbeContext) -> u32 {
    if crate::emit::floor() {
        return 0;
    }
    enter(&ctx, DIR_EGRESS, false)
}
#[uprobe]
pub fn ssl_write_ex(ctx: ProbeContext) -> u32 {
    if crate::emit::floor() {
        return 0;
    }
    enter(&ctx, DIR_EGRESS, true)
}
#[uprobe]
pub fn ssl_read(ctx: ProbeContext) -> u32 {
    if crate::emit::floor() {
        return 0;
    }
    enter(&ctx, DIR_INGRESS, false)
}
#[uprobe]
pub fn ssl_read_ex(ctx: ProbeContext) -> u32 {
    if crate::emit::floor() {
        return 0;
    }
    enter(&ctx, DIR_INGRESS, true)
}
/// One return probe serves all four: `SSL_write`/`SSL_read` return the byte count, the `_ex`
/// forms return 1 and store the count through their fourth argument.
#[uretprobe]
pub fn ssl_return(ctx: RetProbeContext) -> u32 {
    if crate::emit::floor() {
        return 0;
    }
    leave(&ctx)
}

#[inline(always)]
fn enter(ctx: &ProbeContext, direction: u32, ex: bool) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    // SAFETY: the map value is copied out at once.
    let Some(info) = (unsafe { PROCS.get(&tgid) }).copied() else {
        return 0;
    };
    let mut call = TlsCall {
        ssl: ctx.arg(0).unwrap_or(0),
        buf: ctx.arg(1).unwrap_or(0),
        count_ptr: if ex { ctx.arg(3).unwrap_or(0) } else { 0 },
        direction,
        active: 1,
    };
    if direction == DIR_EGRESS {
        // A held write is captured here, with the length asked, before its bytes leave; its
        // return then has nothing to send.
        let num = if ex {
            ctx.arg::<u64>(2).unwrap_or(0)
        } else {
            ctx.arg::<i32>(2).unwrap_or(0).max(0) as u64
        };
        if num > 0 && stop_if_held(info.identity, HOLD_TLS_WRITE) != 0 {
            call.active = 0;
            if !send_plaintext(&info, tgid, &call, num, DATA_HELD) {
                cancel_stop();
            }
        }
    }
    match TLS_CALLS.get_ptr_mut(&id) {
        // SAFETY: the entry is this thread's own; no other program writes it meanwhile.
        Some(slot) => unsafe { *slot = call },
        None => {
            let _ = TLS_CALLS.insert(&id, &call, 0);
        }
    }
    0
}

#[inline(always)]
fn leave(ctx: &RetProbeContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let Some(slot) = TLS_CALLS.get_ptr_mut(&id) else {
        return 0;
    };
    // SAFETY: the entry is this thread's own; it is copied out, then marked ended.
    let call = unsafe { *slot };
    if call.active == 0 {
        return 0;
    }
    unsafe { (*slot).active = 0 };
    let ret: i64 = ctx.ret::<i64>() as i32 as i64;
    let count = if call.count_ptr != 0 {
        if ret != 1 {
            return 0;
        }
        // SAFETY: a user pointer read; the helper fails softly.
        unsafe { bpf_probe_read_user(call.count_ptr as *const u64) }.unwrap_or(0)
    } else if ret > 0 {
        ret as u64
    } else {
        0
    };
    if count == 0 {
        return 0;
    }
    let tgid = (id >> 32) as u32;
    // SAFETY: the value is copied out at once.
    let Some(info) = (unsafe { PROCS.get(&tgid) }).copied() else {
        return 0;
    };
    let _ = send_plaintext(&info, tgid, &call, count, 0);
    0
}

/// Sends `count` plaintext bytes of `call` as data events with `flags`. Returns whether every
/// event reached the ring buffer.
#[inline(always)]
fn send_plaintext(info: &ProcInfo, tgid: u32, call: &TlsCall, count: u64, flags: u32) -> bool {
    let Some(send) = begin_call(info, tgid) else {
        return false;
    };
    send.head.tls = call.ssl;
    send.head.source = DataSource::OpenSsl as u32;
    send.head.direction = call.direction;
    send.head.flags = flags;
    // SAFETY: a pointer into the map value, read at once.
    match unsafe { TLS_SOCKETS.get(&call.ssl) } {
        Some(s) => {
            send.head.sock = s.sock;
            send.head.fd = s.fd;
        }
        None => send.head.flags |= DATA_NO_SOCKET,
    }
    send_data(send, call.buf, count)
}
