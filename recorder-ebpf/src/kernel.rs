//! Reads of kernel structures at offsets resolved from BTF by the agent (`OFFSETS`).
use aya_ebpf::helpers::{bpf_probe_read_kernel, generated};
use recorder_common::KernelOffsets;

/// Patched by the loader (`EbpfLoader::set_global("OFFSETS", ..)`) before the programs load.
#[unsafe(no_mangle)]
pub(crate) static OFFSETS: KernelOffsets = KernelOffsets::ZERO;

/// The offset of one kernel struct member, as patched at load time. The volatile read keeps the
/// compiler from folding the zeros of the unpatched static into the code.
macro_rules! off {
    ($field:ident) => {
        // SAFETY: OFFSETS is a plain static; the read only defeats constant folding.
        unsafe { core::ptr::read_volatile(&raw const $crate::kernel::OFFSETS.$field) }
    };
}
pub(crate) use off;

/// Reads a `T` at `base + off` in kernel memory.
#[inline(always)]
pub fn read<T>(base: *const u8, off: u32) -> Result<T, i64> {
    if base.is_null() {
        return Err(-1);
    }
    // SAFETY: bpf_probe_read_kernel copes with any address; a bad one is an error, not a fault.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(off as usize) as *const T) }.map_err(i64::from)
}

/// Copies `len` bytes at `base + off` in kernel memory to `dst`.
#[inline(always)]
pub fn read_into(dst: *mut u8, len: u32, base: *const u8, off: u32) -> Result<(), i64> {
    if base.is_null() {
        return Err(-1);
    }
    // SAFETY: `dst` holds at least `len` bytes (the caller's field); the helper copes with any
    // source address, a bad one being an error, not a fault.
    let rc = unsafe {
        generated::bpf_probe_read_kernel(
            dst as *mut _,
            len,
            base.wrapping_add(off as usize) as *const _,
        )
    };
    if rc == 0 { Ok(()) } else { Err(rc) }
}

/// Reads a pointer at `base + off`.
#[inline(always)]
pub fn read_ptr(base: *const u8, off: u32) -> Result<*const u8, i64> {
    read::<*const u8>(base, off)
}

/// Copies a NUL-terminated kernel string into `dst[..len]`.
#[inline(always)]
pub fn read_str(dst: *mut u8, len: u32, src: *const u8) -> i64 {
    // SAFETY: dst points into a map value with at least `len` bytes; the helper bounds the copy.
    unsafe { generated::bpf_probe_read_kernel_str(dst as *mut _, len, src as *const _) }
}
