//! Building and sending events; counting those the ring buffer had no room for.
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_uid_gid, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns,
        generated::{bpf_loop, bpf_probe_read_user, bpf_ringbuf_output},
    },
};
use recorder_common::{
    ARGV_MAX, EXEC_ARGV_TRUNCATED, EXEC_ARGV_UNREADABLE, EXEC_FIXED_LEN, EXEC_HELD, EventHeader,
    EventKind, ExecEvent, LOSS_KINDS, PATH_COMPONENT, PATH_DEPTH, PATH_MISSING, PATH_TOO_DEEP,
    PATH_UNLINKED, ProcKey, RawPath,
};

use crate::{
    kernel::{off, read, read_ptr, read_str},
    maps::{EVENTS, LOSS, SCRATCH},
};

/// A quarter of the ring buffer's size in bytes. Patched by the loader
/// (`EbpfLoader::override_global`); left at 0, every event wakes the agent.
#[unsafe(no_mangle)]
pub(crate) static WAKEUP_BYTES: u64 = 0;

/// 1 to make the data programs return at once (patched by the loader for `cargo xtask bench`'s
/// floor runs: the cost of the hooks themselves, with nothing done in them).
#[unsafe(no_mangle)]
pub(crate) static FLOOR: u8 = 0;

/// Whether this is a floor run (see `FLOOR`).
#[inline(always)]
pub fn floor() -> bool {
    // SAFETY: a plain static; the volatile read keeps the unpatched 0 from being folded in.
    unsafe { core::ptr::read_volatile(&raw const FLOOR) != 0 }
}

/// Ring buffer notification flags for one more event. The agent polls the ring every 50 ms
/// anyway, so waking it for every event would only burn its CPU; it is woken early only when the
/// ring is a quarter full, so bursts are drained before they overflow.
#[inline(always)]
pub fn wakeup_flags() -> u64 {
    let avail = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    // SAFETY: a plain static; the volatile read keeps the unpatched 0 from being folded in.
    let threshold = unsafe { core::ptr::read_volatile(&raw const WAKEUP_BYTES) };
    if avail >= threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// The header of an event happening now in the current task. Its `cgroup_id` is left 0: only
/// exec records name the cgroup, and the helper would be paid on every data event.
#[inline(always)]
pub fn header_now(kind: EventKind, identity: u32, pid: u32) -> EventHeader {
    EventHeader {
        kind: kind as u32,
        identity,
        pid,
        _pad: 0,
        // SAFETY: plain helper call.
        ktime: unsafe { bpf_ktime_get_boot_ns() },
        cgroup_id: 0,
    }
}

/// Counts one event of `kind` lost for `identity` (the agent turns these into `loss` records).
#[inline(always)]
pub fn count_loss(identity: u32, kind: EventKind) {
    let index = identity.wrapping_mul(LOSS_KINDS).wrapping_add(kind as u32);
    if let Some(ptr) = LOSS.get_ptr_mut(index) {
        // An atomic add (BPF_ATOMIC | BPF_ADD): several CPUs may lose events at once.
        // SAFETY: the pointer is into an array map value, valid and 8-byte aligned.
        unsafe { core::arch::asm!("lock *(u64 *)({0} + 0) += {1}", in(reg) ptr, in(reg) 1u64) };
    }
}

/// What an exec record says about lineage; the rest is read from `task`.
pub struct ExecFacts {
    pub identity: u32,
    pub ktime: u64,
    pub cgroup_id: u64,
    pub exec: ProcKey,
    pub parent_exec: ProcKey,
    pub session: ProcKey,
    pub flags: u32,
}

/// Sends an exec event for `task` (which must be the current task: argv is read from its memory),
/// whose executable is the `struct file *` `exe_file`.
#[inline(always)]
pub fn exec_event(task: *const u8, exe_file: *const u8, facts: &ExecFacts) -> Result<(), i64> {
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(event) = SCRATCH.get_ptr_mut(cpu) else {
        count_loss(facts.identity, EventKind::Exec);
        return Err(-1);
    };
    // SAFETY: `ev` points to this CPU's scratch slot; programs on one CPU do not nest here.
    let ExecEvent { head: ev, argv } = unsafe { &mut *event };
    ev.header = EventHeader {
        kind: EventKind::Exec as u32,
        identity: facts.identity,
        pid: facts.exec.pid,
        _pad: 0,
        ktime: facts.ktime,
        cgroup_id: facts.cgroup_id,
    };
    ev.exec = facts.exec;
    ev.parent_exec = facts.parent_exec;
    ev.session = facts.session;
    ev.uid = bpf_get_current_uid_gid() as u32;
    let parent = read_ptr(task, off!(task_real_parent)).unwrap_or(core::ptr::null());
    ev.ppid = read::<u32>(parent, off!(task_tgid)).unwrap_or(0);
    let mut flags = facts.flags;

    let mm = read_ptr(task, off!(task_mm)).unwrap_or(core::ptr::null());
    let start = read::<u64>(mm, off!(mm_arg_start)).unwrap_or(0);
    let end = read::<u64>(mm, off!(mm_arg_end)).unwrap_or(0);
    let total = end.saturating_sub(start);
    ev.argv_total = total;
    let mut len = total;
    if len > ARGV_MAX as u64 {
        len = ARGV_MAX as u64;
        flags |= EXEC_ARGV_TRUNCATED;
    }
    // SAFETY: `len` <= ARGV_MAX, the size of `argv`; the helper faults softly on bad addresses.
    let rc =
        unsafe { bpf_probe_read_user(argv.as_mut_ptr() as *mut _, len as u32, start as *const _) };
    if rc != 0 {
        len = 0;
        flags |= EXEC_ARGV_UNREADABLE;
    }
    ev.argv_len = len as u32;
    ev.flags = flags;

    let exe_path = exe_file.wrapping_add(off!(file_f_path) as usize);
    read_path(
        &mut ev.exe,
        if exe_file.is_null() {
            core::ptr::null()
        } else {
            exe_path
        },
    );
    let fs = read_ptr(task, off!(task_fs)).unwrap_or(core::ptr::null());
    let pwd = fs.wrapping_add(off!(fs_pwd) as usize);
    read_path(
        &mut ev.cwd,
        if fs.is_null() { core::ptr::null() } else { pwd },
    );

    // len <= ARGV_MAX, so size <= size_of::<ExecEvent>().
    let size = EXEC_FIXED_LEN as u64 + len;
    // A held process waits for the agent: wake it now, not at its next poll. Read back from the
    // event (map memory), so the verifier does not carry `flags` through the path walks.
    let wakeup = if ev.flags & EXEC_HELD != 0 {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        wakeup_flags()
    };
    // SAFETY: `event` is valid for `size` bytes (size <= size_of::<ExecEvent>()).
    let rc =
        unsafe { bpf_ringbuf_output(&raw const EVENTS as *mut _, event as *mut _, size, wakeup) };
    if rc != 0 {
        count_loss(facts.identity, EventKind::Exec);
        return Err(rc);
    }
    Ok(())
}

/// State of one path walk, shared with the `bpf_loop` callback.
#[repr(C)]
struct PathWalk {
    out: *mut RawPath,
    mnt: *const u8,
    dentry: *const u8,
    depth: u64,
}

/// Fills `out` with the components of the `struct path *` at `path`, leaf first, crossing mounts
/// up to the root of the mount tree. The loop runs under `bpf_loop`, so the verifier checks one
/// step once instead of every unrolled iteration and path.
#[inline(always)]
pub fn read_path(out: &mut RawPath, path: *const u8) {
    out.depth = 0;
    out.flags = 0;
    let (Ok(mnt), Ok(dentry)) = (
        read_ptr(path, off!(path_mnt)),
        read_ptr(path, off!(path_dentry)),
    ) else {
        out.flags = PATH_MISSING;
        return;
    };
    if dentry.is_null() || mnt.is_null() {
        out.flags = PATH_MISSING;
        return;
    }
    let inode = read_ptr(dentry, off!(dentry_d_inode)).unwrap_or(core::ptr::null());
    if read::<u32>(inode, off!(inode_i_nlink)).unwrap_or(1) == 0 {
        out.flags |= PATH_UNLINKED;
    }
    let mut walk = PathWalk {
        out: out as *mut RawPath,
        mnt,
        dentry,
        depth: 0,
    };
    // Each step either names one component or climbs one mount; bound both together.
    // SAFETY: the callback only touches `walk`, which outlives the call.
    unsafe {
        bpf_loop(
            (PATH_DEPTH + 8) as u32,
            path_step as *mut _,
            &mut walk as *mut PathWalk as *mut _,
            0,
        )
    };
}

/// One step of a path walk: 0 to go on, 1 to stop.
extern "C" fn path_step(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: ctx is the `PathWalk` that `read_path` passed to bpf_loop.
    let walk = unsafe { &mut *(ctx as *mut PathWalk) };
    // SAFETY: `out` points to a RawPath inside this CPU's scratch map value.
    let out = unsafe { &mut *walk.out };
    let (mnt, dentry) = (walk.mnt, walk.dentry);
    let mnt_root = read_ptr(mnt, off!(vfsmount_mnt_root)).unwrap_or(core::ptr::null());
    if dentry == mnt_root {
        // At the root of this mount: continue from its mount point in the parent mount.
        let mount = mnt.wrapping_sub(off!(mount_mnt) as usize);
        let Ok(parent_mount) = read_ptr(mount, off!(mount_mnt_parent)) else {
            return 1;
        };
        if parent_mount == mount || parent_mount.is_null() {
            return 1;
        }
        let Ok(point) = read_ptr(mount, off!(mount_mnt_mountpoint)) else {
            return 1;
        };
        walk.dentry = point;
        walk.mnt = parent_mount.wrapping_add(off!(mount_mnt) as usize);
        return 0;
    }
    let depth = walk.depth;
    if depth >= PATH_DEPTH as u64 {
        out.flags |= PATH_TOO_DEEP;
        return 1;
    }
    let name = read_ptr(dentry, off!(dentry_d_name) + off!(qstr_name)).unwrap_or(core::ptr::null());
    let slot = out.components[depth as usize].as_mut_ptr();
    if read_str(slot, PATH_COMPONENT as u32, name) < 0 {
        // SAFETY: slot points to PATH_COMPONENT bytes.
        unsafe { *slot = 0 };
    }
    walk.depth = depth + 1;
    out.depth = (depth + 1) as u32;
    let Ok(parent) = read_ptr(dentry, off!(dentry_d_parent)) else {
        return 1;
    };
    if parent == dentry {
        // A dentry that is its own parent outside a mount root: a pseudo file such as a memfd,
        // or a disconnected one. Its name is all there is.
        return 1;
    }
    walk.dentry = parent;
    0
}
