//! The system call the current task is in, read from its saved user registers
//! (`bpf_task_pt_regs`): its number and first five arguments. The socket probes use it to find
//! the user buffers of a read or write; nothing here is attached to the system-call path.
use aya_ebpf::helpers::{
    bpf_probe_read_kernel,
    generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
};
#[cfg(bpf_target_arch = "aarch64")]
pub use recorder_common::syscalls::aarch64 as nr;
#[cfg(bpf_target_arch = "x86_64")]
pub use recorder_common::syscalls::x86_64 as nr;

use crate::kernel::{off, read};

/// `task_struct.flags`: a kernel thread, and an io_uring worker (a thread of the process that
/// runs its ring's work, in no system call of its own).
const PF_IO_WORKER: u32 = 0x10;
const PF_KTHREAD: u32 = 0x0020_0000;

/// A system call in progress.
#[derive(Clone, Copy)]
pub struct Syscall {
    pub nr: u32,
    pub args: [u64; 5],
}

/// The system call the current task is in, or `None` for a kernel thread or an io_uring worker
/// (whose saved registers are not a system call's).
#[inline(always)]
pub fn current() -> Option<Syscall> {
    // SAFETY: plain helper calls; memory is read with checked kernel reads.
    let task = unsafe { bpf_get_current_task_btf() } as *const u8;
    let flags: u32 = read(task, off!(task_flags)).ok()?;
    if flags & (PF_KTHREAD | PF_IO_WORKER) != 0 {
        return None;
    }
    // SAFETY: as above.
    let regs = unsafe { bpf_task_pt_regs(task as *mut _) } as u64;
    #[cfg(bpf_target_arch = "x86_64")]
    {
        // `struct pt_regs` from r10 (at 56) to orig_ax (at 120): r10 r9 r8 ax cx dx si di orig_ax.
        // SAFETY: a checked read of the task's saved registers.
        let r: [u64; 9] = unsafe { bpf_probe_read_kernel((regs + 56) as *const [u64; 9]) }.ok()?;
        Some(Syscall {
            nr: r[8] as u32,
            args: [r[7], r[6], r[5], r[0], r[2]],
        })
    }
    #[cfg(bpf_target_arch = "aarch64")]
    {
        // x0..x4 (x0 holds the return value by the exit; the first argument stays in orig_x0,
        // at 272), then syscallno at 280.
        // SAFETY: checked reads of the task's saved registers.
        let x: [u64; 5] = unsafe { bpf_probe_read_kernel(regs as *const [u64; 5]) }.ok()?;
        let x0: u64 = unsafe { bpf_probe_read_kernel((regs + 272) as *const u64) }.ok()?;
        let nr: i32 = unsafe { bpf_probe_read_kernel((regs + 280) as *const i32) }.ok()?;
        Some(Syscall {
            nr: nr as u32,
            args: [x0, x[1], x[2], x[3], x[4]],
        })
    }
}
