//! Approval holds: the programs stop a process (`SIGSTOP` to its thread group, delivered before
//! it returns to user space) with the event that shows what it is about to do, so that the agent
//! can let it go or kill it. Only identities with approval rules are ever stopped.
//!
//! The stop is sent *before* the event: the agent, on another CPU, may read the event and send
//! `SIGCONT` at once, and a `SIGCONT` only cancels a stop already sent (a stop sent after it would
//! hold the process for good). If the event then finds no room in the ring buffer, the program
//! cancels its own stop with `SIGCONT`: a process the agent cannot know of is never left stopped.
use aya_ebpf::helpers::bpf_send_signal;

use crate::maps::HOLDS;

const SIGSTOP: u32 = 19;

/// Whether `identity` has `what` (`HOLD_*`) stopped.
#[inline(always)]
pub fn holds(identity: u32, what: u32) -> bool {
    HOLDS.get(identity).is_some_and(|flags| flags & what != 0)
}

const SIGCONT: u32 = 18;

/// Stops the current process if `identity` has `what` (a `HOLD_*` flag) held. Returns 1 if the
/// stop was sent, else 0 (a number, not a branch: see `probes/exec.rs`).
#[inline(always)]
pub fn stop_if_held(identity: u32, what: u32) -> u32 {
    if !holds(identity, what) {
        return 0;
    }
    // SAFETY: plain helper call; it targets the current task's thread group.
    u32::from(unsafe { bpf_send_signal(SIGSTOP) } == 0)
}

/// Cancels a stop sent by `stop_if_held` whose event was lost.
#[inline(always)]
pub fn cancel_stop() {
    // SAFETY: plain helper call; it targets the current task's thread group.
    unsafe { bpf_send_signal(SIGCONT) };
}
