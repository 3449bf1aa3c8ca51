//! `io_uring:io_uring_create`: a tracked process set up an io_uring. Reads and writes submitted
//! through it bypass the system calls the socket probes watch, so the agent says so (a `notice`)
//! rather than miss statements silently.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use recorder_common::{EventKind, IoUringEvent};

use crate::{
    emit::{count_loss, wakeup_flags},
    maps::{EVENTS, PROCS},
};

#[tracepoint(category = "io_uring", name = "io_uring_create")]
pub fn io_uring_create(_ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the map value is copied out at once.
    let Some(info) = (unsafe { PROCS.get(&tgid) }).copied() else {
        return 0;
    };
    let event = IoUringEvent {
        header: crate::emit::header_now(EventKind::IoUring, info.identity, tgid),
        exec: info.exec,
        session: info.session,
    };
    if EVENTS
        .output::<IoUringEvent>(&event, wakeup_flags())
        .is_err()
    {
        count_loss(info.identity, EventKind::IoUring);
    }
    0
}
