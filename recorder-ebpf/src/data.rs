//! Shared by the socket and TLS probes: which socket an fd is, and sending the bytes of one
//! read/write call as `data` events (in chunks, under `bpf_loop`).
use aya_ebpf::helpers::{
    bpf_get_current_task, bpf_get_smp_processor_id,
    generated::{bpf_loop, bpf_probe_read_user, bpf_ringbuf_output},
};
use recorder_common::{
    DATA_CHUNK, DATA_FIXED_LEN, DATA_SYSCALL_MAX, DATA_TRUNCATED, DataEvent, DataHead, EventKind,
    ProcInfo, SockInfo,
};

use crate::{
    emit::{count_loss, wakeup_flags},
    kernel::{off, read, read_ptr},
    maps::{DATA_SCRATCH, EVENTS},
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
    let file = file_of_fd(fd)?;
    let inode = read_ptr(file, off!(file_f_inode)).ok()?;
    let mode: u16 = read(inode, off!(inode_i_mode)).ok()?;
    if mode & S_IFMT != S_IFSOCK {
        return None;
    }
    let socket = read_ptr(file, off!(file_private_data)).ok()?;
    let kind: u16 = read(socket, off!(socket_type)).ok()?;
    if kind != SOCK_STREAM {
        return None;
    }
    let sk = read_ptr(socket, off!(socket_sk)).ok()?;
    let family: u16 = read(sk, off!(skc_family)).ok()?;
    let mut info = SockInfo {
        sock: sk as u64,
        family,
        ..SockInfo::default()
    };
    match family {
        AF_INET => {
            let daddr: [u8; 4] = read(sk, off!(skc_daddr)).ok()?;
            let saddr: [u8; 4] = read(sk, off!(skc_rcv_saddr)).ok()?;
            info.raddr[..4].copy_from_slice(&daddr);
            info.laddr[..4].copy_from_slice(&saddr);
        }
        AF_INET6 => {
            info.raddr = read(sk, off!(skc_v6_daddr)).ok()?;
            info.laddr = read(sk, off!(skc_v6_rcv_saddr)).ok()?;
        }
        AF_UNIX => {}
        _ => return None,
    }
    if family != AF_UNIX {
        let dport: u16 = read(sk, off!(skc_dport)).ok()?;
        info.rport = u16::from_be(dport);
        info.lport = read(sk, off!(skc_num)).ok()?;
    }
    Some(info)
}

/// State of one chunked send, shared with the `bpf_loop` callback.
#[repr(C)]
struct ChunkSend {
    event: *mut DataEvent,
    buf: u64,
    captured: u64,
    identity: u32,
    _pad: u32,
}

/// Sends the `total` bytes at user address `buf` as data events described by `head` (whose
/// header, attribution, socket, source and direction are filled by the caller).
#[inline(always)]
pub fn send_data(info: &ProcInfo, tgid: u32, head: DataHead, buf: u64, total: u64) {
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(event) = DATA_SCRATCH.get_ptr_mut(cpu) else {
        count_loss(info.identity, EventKind::Data);
        return;
    };
    let captured = if total > DATA_SYSCALL_MAX as u64 {
        DATA_SYSCALL_MAX as u64
    } else {
        total
    };
    // SAFETY: `event` is this CPU's scratch slot.
    let ev = unsafe { &mut *event };
    ev.head = head;
    ev.head.header = crate::emit::header_now(EventKind::Data, info.identity, tgid);
    ev.head.exec = info.exec;
    ev.head.session = info.session;
    ev.head.total = total;
    if captured < total {
        ev.head.flags |= DATA_TRUNCATED;
    }
    let mut send = ChunkSend {
        event,
        buf,
        captured,
        identity: info.identity,
        _pad: 0,
    };
    let chunks = captured.div_ceil(DATA_CHUNK as u64).max(1) as u32;
    // SAFETY: the callback only touches `send`, which outlives the call.
    unsafe {
        bpf_loop(
            chunks,
            send_chunk as *mut _,
            &mut send as *mut ChunkSend as *mut _,
            0,
        )
    };
}

/// Sends chunk `index` of a call's bytes: 0 to go on, 1 to stop.
extern "C" fn send_chunk(index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: ctx is the `ChunkSend` that `send_data` passed to bpf_loop.
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
    // SAFETY: the event is valid for DATA_FIXED_LEN + len bytes.
    let rc = unsafe {
        bpf_ringbuf_output(
            &raw const EVENTS as *mut _,
            send.event as *mut _,
            DATA_FIXED_LEN as u64 + len,
            wakeup_flags(),
        )
    };
    if rc != 0 {
        count_loss(send.identity, EventKind::Data);
    }
    0
}
