//! Read-only mappings of executables and libraries, for reading their symbol tables: only the
//! pages actually looked at are read, even for a 100 MB binary.
//!
//! Machine code is read from the file ([`MappedFile::read_at`]), never through the mapping: the
//! kernel plants a uprobe's breakpoint in every mapping of the file that may execute, and a
//! read-only private mapping may (`VM_MAYEXEC`), so code probed by another tracer, another
//! agent included, reads as `int3` there. Decoding that code finds no `ret` where the probes sit.
use std::{
    fs::File,
    os::unix::fs::{FileExt as _, OpenOptionsExt as _},
    path::Path,
};

#[derive(Debug, thiserror::Error)]
pub(crate) enum MapError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not a regular file")]
    NotRegularFile(String),
}

/// A read-only private mapping of a whole file.
///
/// A running executable or a mapped library cannot be written or truncated in place (ETXTBSY,
/// or replaced by a rename), so the pages do not vanish under the mapping in the cases this is
/// made for.
pub(super) struct MappedFile {
    file: File,
    ptr: *mut libc::c_void,
    len: usize,
}

impl MappedFile {
    pub(super) fn open(path: &Path) -> Result<Self, MapError> {
        let io = |source| MapError::Io {
            path: path.display().to_string(),
            source,
        };
        // O_NONBLOCK so that a FIFO at that path does not block the open.
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(MapError::NotRegularFile(path.display().to_string()));
        }
        let len = usize::try_from(meta.len()).map_err(|_| {
            io(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                "larger than the address space",
            ))
        })?;
        if len == 0 {
            // mmap refuses empty mappings; an empty file simply has no contents.
            return Ok(Self {
                file,
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: a fresh read-only private mapping of an open file descriptor (kept open, for
        // `read_at`; the mapping holds its own reference to the file anyway).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io(std::io::Error::last_os_error()));
        }
        Ok(Self { file, ptr, len })
    }

    /// `len` bytes of the file from `offset`, as the file holds them (see the module's doc).
    pub(super) fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    pub(super) fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` maps `len` readable bytes for the lifetime of `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: unmapping exactly what `open` mapped; no borrow of `bytes()` outlives self.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}
