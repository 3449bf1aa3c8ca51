//! Lines typed into an interactive bash: a return probe on `readline` in the bash binary sends
//! the line it returns, so builtins (`cd`, `export`) and redirections are recorded, which no
//! exec shows.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user_str_bytes},
    macros::uretprobe,
    programs::RetProbeContext,
};
use recorder_common::{EventKind, SHELL_LINE_MAX, SHELL_TRUNCATED, ShellEvent};

use crate::{
    emit::{count_loss, header_now},
    maps::{EVENTS, PROCS},
};

#[uretprobe]
pub fn readline_return(ctx: RetProbeContext) -> u32 {
    if crate::emit::floor() {
        return 0;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the map value is copied out at once.
    let Some(info) = (unsafe { PROCS.get(&tgid) }).copied() else {
        return 0;
    };
    // NULL at end of input (Ctrl-D): nothing was typed.
    let line: u64 = ctx.ret::<u64>();
    if line == 0 {
        return 0;
    }
    let Some(mut entry) = EVENTS.reserve::<ShellEvent>(0) else {
        count_loss(info.identity, EventKind::Shell);
        return 0;
    };
    // SAFETY: the entry is ours until submitted; every field is written below.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.header = header_now(EventKind::Shell, info.identity, tgid);
    ev.exec = info.exec;
    ev.session = info.session;
    ev.flags = 0;
    // SAFETY: a user string read into the event's buffer; the helper fails softly.
    ev.len = match unsafe { bpf_probe_read_user_str_bytes(line as *const u8, &mut ev.line) } {
        Ok(text) => text.len() as u32,
        Err(_) => 0,
    };
    // The helper stops one byte short of the buffer for the NUL: a full buffer means more.
    if ev.len as usize >= SHELL_LINE_MAX - 1 {
        ev.flags |= SHELL_TRUNCATED;
    }
    // Lines are rare and someone is waiting at the prompt: no need to batch.
    entry.submit(0);
    0
}
