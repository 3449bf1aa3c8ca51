//! `sched_process_exit`: when the last thread of a tracked process ends, report its exit code and
//! forget it.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use recorder_common::{EventKind, ExitEvent, PROC_OWN_EXEC};

use crate::{
    emit::{count_loss, wakeup_flags},
    kernel::{off, read, read_ptr},
    maps::{EVENTS, PROCS},
};

#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    let _ = try_exit(&ctx);
    0
}

fn try_exit(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the map value is copied out at once.
    let Some(info) = (unsafe { PROCS.get(&tgid) }).copied() else {
        return Ok(());
    };
    let task: *const u8 = ctx.arg(0);
    // `signal->live` counts the group's live threads; do_exit decrements it before this point.
    let signal = read_ptr(task, off!(task_signal))?;
    let live: i32 = read(signal, off!(signal_live))?;
    if live != 0 {
        return Ok(());
    }
    let _ = PROCS.remove(&tgid);
    if info.flags & PROC_OWN_EXEC == 0 {
        return Ok(()); // forked but never exec'd: not a command of its own
    }
    let exit_code: u32 = read(task, off!(task_exit_code)).unwrap_or(0);
    let Some(mut entry) = EVENTS.reserve::<ExitEvent>(0) else {
        count_loss(info.identity, EventKind::Exit);
        return Ok(());
    };
    entry.write(ExitEvent {
        header: crate::emit::header_now(EventKind::Exit, info.identity, tgid),
        exec: info.exec,
        session: info.session,
        exit_code,
        _pad: 0,
    });
    entry.submit(wakeup_flags());
    Ok(())
}
