//! Go's TLS plaintext: uprobes on `crypto/tls.(*Conn).Write` (entry) and
//! `crypto/tls.(*Conn).Read` (entry, and each of its `RET` instructions: a return probe rewrites
//! the return address on the stack, which Go's growable stacks do not survive). The agent finds
//! these addresses in the binary's `.gopclntab`. Arguments and results are in registers (Go's
//! register ABI on x86-64): receiver in RAX, the slice's pointer and length in RBX and RCX, the
//! byte count returned in RAX, the current goroutine in R14.
use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::uprobe,
    programs::ProbeContext,
};
use recorder_common::{
    DATA_HELD, DATA_NO_SOCKET, DIR_EGRESS, DIR_INGRESS, DataHead, DataSource, HOLD_TLS_WRITE,
};

use crate::{
    data::{begin_call, file_of_fd, send_data, sock_info, sock_of_file, stored_cookie},
    hold::{cancel_stop, stop_if_held},
    maps::{GO_READS, GoCallKey, GoRead, PROCS},
};

/// The registers at the probe.
#[inline(always)]
fn regs(ctx: &ProbeContext) -> pt_regs {
    // SAFETY: the context points at the saved user registers for the program's whole run.
    unsafe { *ctx.regs }
}

#[uprobe]
pub fn go_tls_write(ctx: ProbeContext) -> u32 {
    if crate::emit::floor() {
        return 0;
    }
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    // SAFETY: the map value is copied out at once.
    let Some(info) = (unsafe { PROCS.get(&tgid) }).copied() else {
        return 0;
    };
    let r = regs(&ctx);
    if r.rcx == 0 {
        return 0;
    }
    let Some(call) = begin_call(&info, tgid) else {
        return 0;
    };
    fill_head(&mut call.head, r.rax, DIR_EGRESS);
    // Captured at the entry, the bytes have not left yet: a held write is stopped here.
    if stop_if_held(info.identity, HOLD_TLS_WRITE) != 0 {
        call.head.flags |= DATA_HELD;
        if !send_data(call, r.rbx, r.rcx) {
            cancel_stop();
        }
        return 0;
    }
    let _ = send_data(call, r.rbx, r.rcx);
    0
}

#[uprobe]
pub fn go_tls_read(ctx: ProbeContext) -> u32 {
    if crate::emit::floor() {
        return 0;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: only tests presence.
    if unsafe { PROCS.get(&tgid) }.is_none() {
        return 0;
    }
    let r = regs(&ctx);
    let key = GoCallKey {
        g: r.r14,
        tgid,
        _pad: 0,
    };
    let _ = GO_READS.insert(
        &key,
        &GoRead {
            conn: r.rax,
            buf: r.rbx,
        },
        0,
    );
    0
}

/// At a `RET` of `(*Conn).Read`: RAX holds the byte count.
#[uprobe]
pub fn go_tls_read_return(ctx: ProbeContext) -> u32 {
    if crate::emit::floor() {
        return 0;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let r = regs(&ctx);
    let key = GoCallKey {
        g: r.r14,
        tgid,
        _pad: 0,
    };
    // SAFETY: the value is copied out at once.
    let Some(call) = (unsafe { GO_READS.get(&key) }).copied() else {
        return 0;
    };
    let _ = GO_READS.remove(&key);
    let count = r.rax as i64;
    if count <= 0 {
        return 0;
    }
    // SAFETY: the map value is copied out at once.
    let Some(info) = (unsafe { PROCS.get(&tgid) }).copied() else {
        return 0;
    };
    let Some(send) = begin_call(&info, tgid) else {
        return 0;
    };
    fill_head(&mut send.head, call.conn, DIR_INGRESS);
    let _ = send_data(send, call.buf, count as u64);
    0
}

/// Fills the data head for TLS connection `conn`, with its socket when the connection sits on a
/// `*net.TCPConn` (or any `net.Conn` whose first word leads to a `netFD`): `tls.Conn` starts
/// with its `net.Conn` interface (type word, then data pointer); the connection value starts
/// with its `*netFD`, whose `poll.FD` holds the file descriptor after a 16-byte mutex. These
/// layouts have held since Go 1.9; a wrong guess yields an fd that is no stream socket, and
/// the event then says `DATA_NO_SOCKET`.
#[inline(always)]
fn fill_head(head: &mut DataHead, conn: u64, direction: u32) {
    head.tls = conn;
    head.source = DataSource::GoTls as u32;
    head.direction = direction;
    let sk = go_conn_fd(conn).and_then(file_of_fd).and_then(sock_of_file);
    match sk {
        Some(sk) if sock_info(sk, &mut head.sock) => head.sock.cookie = stored_cookie(sk),
        _ => head.flags |= DATA_NO_SOCKET,
    }
}

#[inline(always)]
fn go_conn_fd(conn: u64) -> Option<u32> {
    // SAFETY: user memory reads; the helper fails softly on bad addresses.
    unsafe {
        let data: u64 = bpf_probe_read_user((conn + 8) as *const u64).ok()?;
        let net_fd: u64 = bpf_probe_read_user(data as *const u64).ok()?;
        let sysfd: i64 = bpf_probe_read_user((net_fd + 16) as *const i64).ok()?;
        u32::try_from(sysfd).ok()
    }
}
