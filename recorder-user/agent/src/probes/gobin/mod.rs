//! Finds where to put uprobes on the TLS functions of a Go executable.
//!
//! Go binaries do not use a system TLS library, so the plaintext of their HTTPS traffic is only
//! visible inside `crypto/tls.(*Conn).Write` and `crypto/tls.(*Conn).Read`. Release binaries are
//! usually stripped of `.symtab`, but the Go runtime needs its own function table (the pclntab)
//! for stack traces, so it is always present; this module reads it to find both functions.
//!
//! Return probes cannot be used on Go code: a uretprobe rewrites the return address on the stack,
//! and Go's stack growth copies stacks and checks return addresses, which crashes the program.
//! So besides each function's entry we report every `ret` instruction inside it, found by
//! decoding the machine code (a byte scan for 0xC3 would also hit operand bytes, and a uprobe
//! placed in the middle of an instruction corrupts the program).
//!
//! Only little-endian x86-64 ELF files are supported; any other ELF machine or class is an
//! [`GoBinError::UnsupportedElf`] error, and a non-ELF file is [`GoBinError::NotElf`].
//!
//! Supported pclntab layouts: Go 1.2–1.15 (magic 0xfffffffb), 1.16–1.17 (0xfffffffa),
//! 1.18–1.19 (0xfffffff0) and 1.20 onwards (0xfffffff1).
//!
//! The parts: `elf` (headers, segments, sections, where the pclntab is), `buildinfo` (the Go
//! version), `pclntab` (the function table) and `returns` (the `ret` instructions of a function).
mod buildinfo;
mod elf;
mod pclntab;
mod returns;
#[cfg(test)]
mod tests;

use std::path::Path;

use buildinfo::GO_BUILDINFO_SECTIONS;
use elf::{Elf, PCLNTAB_SECTIONS};
use pclntab::Pclntab;

use super::mapped_file::{MapError, MappedFile};

/// Name of the function whose entry sees the plaintext about to be encrypted.
pub(crate) const TLS_WRITE: &str = "crypto/tls.(*Conn).Write";
/// Name of the function whose returns see the plaintext just decrypted.
pub(crate) const TLS_READ: &str = "crypto/tls.(*Conn).Read";

/// One function of a Go executable, located for uprobes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GoFunction {
    pub name: String,
    /// File offset of the first instruction (what `UProbeAttachLocation::AbsoluteOffset` wants).
    pub entry_offset: u64,
    /// File offsets of every `ret` instruction inside the function, in address order.
    pub return_offsets: Vec<u64>,
}

/// The TLS functions of a Go executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GoTlsFunctions {
    /// From the build information, e.g. `go1.23.8`; `None` when it could not be read.
    pub go_version: Option<String>,
    pub write: GoFunction,
    pub read: GoFunction,
}

/// What [`inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GoBinary {
    /// An ELF executable without a Go function table.
    NotGo,
    /// A Go executable that does not link `crypto/tls` (or has both functions inlined away).
    GoWithoutTls {
        go_version: Option<String>,
    },
    GoTls(GoTlsFunctions),
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum GoBinError {
    #[error(transparent)]
    Open(#[from] MapError),
    #[error("not an ELF file")]
    NotElf,
    #[error("unsupported ELF file: {0} (only little-endian x86-64 is supported)")]
    UnsupportedElf(String),
    #[error("malformed ELF file: {0}")]
    MalformedElf(String),
    #[error("truncated file: {0}")]
    TruncatedFile(String),
    #[error("Go build information present but no pclntab found")]
    NoPclntab,
    #[error("unsupported pclntab version (magic {magic:#010x})")]
    UnsupportedPclntab { magic: u32 },
    #[error(
        "unsupported pclntab parameters: pointer size {ptr_size}, instruction quantum {min_lc}"
    )]
    UnsupportedPclntabParameters { ptr_size: u8, min_lc: u8 },
    #[error("truncated or corrupt pclntab: {0}")]
    TruncatedPclntab(String),
    #[error("function {name} at {address:#x}: {reason}")]
    FunctionNotDecodable {
        name: String,
        address: u64,
        reason: String,
    },
}

/// Locates the Go TLS functions of the executable at `path`.
///
/// The file is mapped read-only rather than read, so only the pages actually looked at (headers,
/// the pclntab, two functions) are touched, even for a 60 MB binary.
pub(crate) fn inspect(path: &Path) -> Result<GoBinary, GoBinError> {
    let map = MappedFile::open(path)?;
    // The functions' code is read from the file, not through the mapping, where probes of
    // another tracer would show as breakpoints (see `MappedFile::read_at`).
    inspect_parts(map.bytes(), |offset, len| map.read_at(offset, len).ok())
}

/// [`inspect`] on the contents of an executable already in memory.
#[cfg(test)]
pub(crate) fn inspect_bytes(data: &[u8]) -> Result<GoBinary, GoBinError> {
    inspect_parts(data, |offset, len| {
        let start = usize::try_from(offset).ok()?;
        data.get(start..start.checked_add(len)?).map(<[u8]>::to_vec)
    })
}

/// [`inspect`], with the ELF structures read from `data` and machine code by `read_code` (file
/// offset, length).
fn inspect_parts(
    data: &[u8],
    read_code: impl Fn(u64, usize) -> Option<Vec<u8>>,
) -> Result<GoBinary, GoBinError> {
    let elf = Elf::parse(data)?;
    let go_version = elf.go_version();
    let table = match elf.find_pclntab() {
        Some(table) => table,
        None if go_version.is_some() => return Err(GoBinError::NoPclntab),
        None => return Ok(GoBinary::NotGo),
    };
    let pcln = Pclntab::parse(table, elf.text_address())?;
    let [Some(write), Some(read)] = pcln.find_functions([TLS_WRITE, TLS_READ])? else {
        return Ok(GoBinary::GoWithoutTls { go_version });
    };
    Ok(GoBinary::GoTls(GoTlsFunctions {
        go_version,
        write: elf.locate(TLS_WRITE, write, &read_code)?,
        read: elf.locate(TLS_READ, read, &read_code)?,
    }))
}

/// Cheap check, meant for every exec: does the file carry Go's build ID note or Go sections?
///
/// Reads only the ELF headers and the notes; never fails (unreadable, truncated or non-x86-64
/// files are `false`).
pub(crate) fn looks_like_go(path: &Path) -> bool {
    let Ok(map) = MappedFile::open(path) else {
        return false;
    };
    let Ok(elf) = Elf::parse(map.bytes()) else {
        return false;
    };
    elf.has_go_note()
        || elf.section(GO_BUILDINFO_SECTIONS).is_some()
        || elf.section(PCLNTAB_SECTIONS).is_some()
}
