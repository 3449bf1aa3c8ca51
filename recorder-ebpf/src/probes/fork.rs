//! `sched_process_fork`: a child of a tracked process is tracked too, under the same identity and
//! session, wherever it later moves. Runs in the parent's context.
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use recorder_common::{
    EXEC_ADOPTED, EXEC_SESSION_ROOT, EventKind, ForkEvent, PROC_OWN_EXEC, ProcInfo, ProcKey,
};

use crate::{
    cgroup::watched_identity,
    emit::{ExecFacts, count_loss, exec_event},
    kernel::{off, read, read_ptr},
    maps::{EVENTS, PROCS, TLS_HOOKED},
};

#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    let _ = try_fork(&ctx);
    0
}

fn try_fork(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let parent: *const u8 = ctx.arg(0);
    let child: *const u8 = ctx.arg(1);
    let child_pid: u32 = read(child, off!(task_pid))?;
    let child_tgid: u32 = read(child, off!(task_tgid))?;
    if child_pid != child_tgid {
        return Ok(()); // a new thread, not a new process
    }
    let parent_tgid: u32 = read(parent, off!(task_tgid))?;
    // SAFETY: the map value is copied out at once.
    let info = match unsafe { PROCS.get(&parent_tgid) }.copied() {
        Some(info) => info,
        None => adopt(parent, parent_tgid)?,
    };
    let child_info = ProcInfo {
        identity: info.identity,
        flags: 0,
        exec: info.exec,
        session: info.session,
    };
    if PROCS.insert(&child_tgid, &child_info, 0).is_err() {
        count_loss(info.identity, EventKind::Track);
    }
    // SAFETY: only tests presence.
    if unsafe { TLS_HOOKED.get(&parent_tgid) }.is_some() {
        report_fork(info.identity, parent_tgid, child_tgid);
    }
    Ok(())
}

/// Tells the agent at once: the child may use its TLS connections soon.
fn report_fork(identity: u32, parent: u32, child: u32) {
    let Some(mut entry) = EVENTS.reserve::<ForkEvent>(0) else {
        count_loss(identity, EventKind::Fork);
        return;
    };
    // SAFETY: the entry is ours until submitted; every field is written below.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.header = crate::emit::header_now(EventKind::Fork, identity, child);
    ev.parent = parent;
    ev._pad = 0;
    entry.submit(aya_ebpf::bindings::BPF_RB_FORCE_WAKEUP as u64);
}

/// A process we never saw exec is forking inside a watched cgroup (it was there before the agent
/// started, or moved in without exec): start tracking it as a session root, with an exec record
/// marked `adopted` built from its current state.
fn adopt(parent: *const u8, tgid: u32) -> Result<ProcInfo, i64> {
    let identity = watched_identity().ok_or(0)?;
    let started: u64 = read(parent, off!(task_start_boottime)).unwrap_or(0);
    let key = ProcKey {
        ktime: started,
        pid: tgid,
        _pad: 0,
    };
    let info = ProcInfo {
        identity,
        flags: PROC_OWN_EXEC,
        exec: key,
        session: key,
    };
    if PROCS.insert(&tgid, &info, 0).is_err() {
        count_loss(identity, EventKind::Track);
    }
    let mm = read_ptr(parent, off!(task_mm)).unwrap_or(core::ptr::null());
    let exe_file = read_ptr(mm, off!(mm_exe_file)).unwrap_or(core::ptr::null());
    // SAFETY: plain helper calls.
    let (ktime, cgroup_id) = unsafe { (bpf_ktime_get_boot_ns(), bpf_get_current_cgroup_id()) };
    let facts = ExecFacts {
        identity,
        ktime,
        cgroup_id,
        exec: key,
        parent_exec: ProcKey::NONE,
        session: key,
        flags: EXEC_SESSION_ROOT | EXEC_ADOPTED,
    };
    let _ = exec_event(parent, exe_file, &facts);
    Ok(info)
}
