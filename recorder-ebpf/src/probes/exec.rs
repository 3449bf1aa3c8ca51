//! `sched_process_exec`: a process image was replaced. Runs in the new image's context, so argv
//! is read from the new process's own memory (what the kernel copied), not the caller's pointers.
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use recorder_common::{
    EXEC_HELD, EXEC_OUTSIDE_IDENTITY, EXEC_SESSION_ROOT, EventKind, HOLD_EXEC, PROC_OWN_EXEC,
    ProcInfo, ProcKey,
};

use crate::{
    cgroup::{inside_identity, watched_identity},
    emit::{ExecFacts, count_loss, exec_event},
    hold::{cancel_stop, holds, stop_if_held},
    kernel::{off, read_ptr},
    maps::PROCS,
};

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    let _ = try_exec(&ctx);
    0
}

fn try_exec(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the map value is copied out at once.
    let known = unsafe { PROCS.get(&tgid) }.copied();
    let (identity, parent_exec, session, flags) = match known {
        Some(info) => {
            let outside = if inside_identity(info.identity) {
                0
            } else {
                EXEC_OUTSIDE_IDENTITY
            };
            (info.identity, info.exec, info.session, outside)
        }
        None => match watched_identity() {
            Some(identity) => (identity, ProcKey::NONE, ProcKey::NONE, EXEC_SESSION_ROOT),
            None => return Ok(()),
        },
    };
    // SAFETY: plain helper calls.
    let (ktime, cgroup_id) = unsafe { (bpf_ktime_get_boot_ns(), bpf_get_current_cgroup_id()) };
    let exec = ProcKey {
        ktime,
        pid: tgid,
        _pad: 0,
    };
    let session = if session.is_none() { exec } else { session };
    let info = ProcInfo {
        identity,
        flags: PROC_OWN_EXEC,
        exec,
        session,
    };
    if PROCS.insert(&tgid, &info, 0).is_err() {
        count_loss(identity, EventKind::Track);
    }

    let task: *const u8 = ctx.arg(0);
    let bprm: *const u8 = ctx.arg(2);
    let exe_file = read_ptr(bprm, off!(binprm_file)).unwrap_or(core::ptr::null());
    // Held here, the new image has not run one instruction: the point of no return for an exec.
    // Arithmetic, not a branch: a value branched on later would be tracked through every path
    // of the event's path walks, and the verifier's budget would not survive the doubling.
    let flags = flags | stop_if_held(identity, HOLD_EXEC) * EXEC_HELD;
    let facts = ExecFacts {
        identity,
        ktime,
        cgroup_id,
        exec,
        parent_exec,
        session,
        flags,
    };
    let sent = exec_event(task, exe_file, &facts);
    if sent.is_err() && holds(identity, HOLD_EXEC) {
        cancel_stop();
    }
    sent
}
