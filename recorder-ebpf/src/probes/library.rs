//! A tracked process mapping a file named `libssl*`: the agent is told at once (forced wakeup)
//! so it can attach the TLS probes to that file before the process makes its first TLS call.
//! This is how private copies of libssl (in Python wheels, app bundles) are found.
//!
//! Seen at `mmap:vm_unmapped_area`, where the kernel looks for an address for a new mapping: the
//! dynamic loader's first mapping of a library has no fixed address (its later ones, the
//! segments, are placed inside it), so each library load passes there once, and the mapping's
//! file is the `mmap` call's descriptor. Kernels without that tracepoint use `sys_enter_mmap`
//! (a system-call tracepoint, paid by every task) on the executable mappings instead.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use recorder_common::{EventKind, LibraryEvent, ProcInfo};

use crate::{
    data::file_of_fd,
    emit::{count_loss, read_path},
    kernel::{off, read_ptr},
    maps::{EVENTS, PROCS},
    syscall::{self, nr},
};

const PROT_EXEC: u64 = 4;
// sys_enter_mmap: addr at 16, len 24, prot 32, flags 40, fd 48, off 56.
const PROT: usize = 32;
const FD: usize = 48;

#[tracepoint(category = "mmap", name = "vm_unmapped_area")]
pub fn vm_unmapped_area(_ctx: TracePointContext) -> u32 {
    let _ = try_unmapped_area();
    0
}

fn try_unmapped_area() -> Result<(), i64> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the map value is copied out at once.
    let Some(info) = (unsafe { PROCS.get(&tgid) }).copied() else {
        return Ok(());
    };
    // Only an `mmap` of a file: `mmap(addr, len, prot, flags, fd, off)`, fd the fifth argument.
    let call = syscall::current().ok_or(0)?;
    let fd = call.args[4] as i64;
    if call.nr != nr::MMAP || fd < 0 {
        return Ok(());
    }
    report_if_libssl(&info, tgid, fd as u32)
}

#[tracepoint(category = "syscalls", name = "sys_enter_mmap")]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    let _ = try_mmap(&ctx);
    0
}

fn try_mmap(ctx: &TracePointContext) -> Result<(), i64> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the map value is copied out at once.
    let Some(info) = (unsafe { PROCS.get(&tgid) }).copied() else {
        return Ok(());
    };
    // SAFETY: reads of the tracepoint record at fixed offsets.
    let (prot, fd) = unsafe {
        (
            ctx.read_at::<u64>(PROT).unwrap_or(0),
            ctx.read_at::<i64>(FD).unwrap_or(-1),
        )
    };
    if prot & PROT_EXEC == 0 || fd < 0 {
        return Ok(());
    }
    report_if_libssl(&info, tgid, fd as u32)
}

/// A `library` event if the file behind `fd` is named `libssl*`.
#[inline(always)]
fn report_if_libssl(info: &ProcInfo, tgid: u32, fd: u32) -> Result<(), i64> {
    let file = file_of_fd(fd).ok_or(0)?;
    let path = file.wrapping_add(off!(file_f_path) as usize);
    let dentry = read_ptr(path, off!(path_dentry))?;
    let name = read_ptr(dentry, off!(dentry_d_name) + off!(qstr_name))?;
    let prefix: [u8; 6] = crate::kernel::read(name, 0)?;
    if &prefix != b"libssl" {
        return Ok(());
    }
    let Some(mut entry) = EVENTS.reserve::<LibraryEvent>(0) else {
        count_loss(info.identity, EventKind::Library);
        return Ok(());
    };
    // SAFETY: the entry is ours until submitted; every field is written below.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.header = crate::emit::header_now(EventKind::Library, info.identity, tgid);
    read_path(&mut ev.path, path);
    // Wake the agent now: the process is about to use the library.
    entry.submit(aya_ebpf::bindings::BPF_RB_FORCE_WAKEUP as u64);
    Ok(())
}
