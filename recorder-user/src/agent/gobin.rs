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

use std::path::Path;

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic};
use object::{
    LittleEndian as LE,
    elf::{self, FileHeader64},
    read::elf::{FileHeader as _, ProgramHeader as _, SectionHeader as _},
};

use super::mapped_file::{MapError, MappedFile};

/// Name of the function whose entry sees the plaintext about to be encrypted.
pub const TLS_WRITE: &str = "crypto/tls.(*Conn).Write";
/// Name of the function whose returns see the plaintext just decrypted.
pub const TLS_READ: &str = "crypto/tls.(*Conn).Read";

/// One function of a Go executable, located for uprobes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoFunction {
    pub name: String,
    /// File offset of the first instruction (what `UProbeAttachLocation::AbsoluteOffset` wants).
    pub entry_offset: u64,
    /// File offsets of every `ret` instruction inside the function, in address order.
    pub return_offsets: Vec<u64>,
}

/// The TLS functions of a Go executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoTlsFunctions {
    /// From the build information, e.g. `go1.23.8`; `None` when it could not be read.
    pub go_version: Option<String>,
    pub write: GoFunction,
    pub read: GoFunction,
}

/// What [`inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoBinary {
    /// An ELF executable without a Go function table.
    NotGo,
    /// A Go executable that does not link `crypto/tls` (or has both functions inlined away).
    GoWithoutTls {
        go_version: Option<String>,
    },
    GoTls(GoTlsFunctions),
}

#[derive(Debug, thiserror::Error)]
pub enum GoBinError {
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
pub fn inspect(path: &Path) -> Result<GoBinary, GoBinError> {
    let map = MappedFile::open(path)?;
    inspect_bytes(map.bytes())
}

/// [`inspect`] on the contents of an executable already in memory.
pub fn inspect_bytes(data: &[u8]) -> Result<GoBinary, GoBinError> {
    let elf = Elf::parse(data)?;
    let go_version = elf.go_version();
    let table = match elf.find_pclntab()? {
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
        write: elf.locate(TLS_WRITE, write)?,
        read: elf.locate(TLS_READ, read)?,
    }))
}

/// Cheap check, meant for every exec: does the file carry Go's build ID note or Go sections?
///
/// Reads only the ELF headers and the notes; never fails (unreadable, truncated or non-x86-64
/// files are `false`).
pub fn looks_like_go(path: &Path) -> bool {
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

// ---------------------------------------------------------------------------------------------
// ELF

/// Section names of the pclntab: plain, and inside RELRO for position-independent executables.
const PCLNTAB_SECTIONS: &[&[u8]] = &[b".gopclntab", b".data.rel.ro.gopclntab"];
const GO_BUILDINFO_SECTIONS: &[&[u8]] = &[b".go.buildinfo"];
const BUILDINFO_MAGIC: &[u8] = b"\xff Go buildinf:";

#[derive(Clone, Copy)]
struct Segment {
    vaddr: u64,
    offset: u64,
    filesz: u64,
    flags: u32,
}

struct Section<'a> {
    addr: u64,
    data: &'a [u8],
}

struct Elf<'a> {
    data: &'a [u8],
    header: &'a FileHeader64<LE>,
    /// PT_LOAD segments, each checked to lie inside the file.
    loads: Vec<Segment>,
    /// `None` when the file has no (readable) section headers: then tables are found by their
    /// magic numbers inside the segments.
    sections: Option<object::read::elf::SectionTable<'a, FileHeader64<LE>>>,
}

impl<'a> Elf<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, GoBinError> {
        if data.len() < 4 || &data[..4] != b"\x7fELF" {
            return Err(GoBinError::NotElf);
        }
        match (data.get(4), data.get(5)) {
            (Some(&elf::ELFCLASS64), Some(&elf::ELFDATA2LSB)) => {}
            (Some(&elf::ELFCLASS32), _) => {
                return Err(GoBinError::UnsupportedElf("32-bit ELF".into()));
            }
            (Some(_), Some(&elf::ELFDATA2MSB)) => {
                return Err(GoBinError::UnsupportedElf("big-endian ELF".into()));
            }
            _ => return Err(GoBinError::MalformedElf("bad ELF identification".into())),
        }
        let header = FileHeader64::<LE>::parse(data)
            .map_err(|e| GoBinError::TruncatedFile(format!("ELF header: {e}")))?;
        let machine = header.e_machine(LE);
        if machine != elf::EM_X86_64 {
            return Err(GoBinError::UnsupportedElf(format!("ELF machine {machine}")));
        }
        let phdrs = header
            .program_headers(LE, data)
            .map_err(|e| GoBinError::TruncatedFile(format!("ELF program headers: {e}")))?;
        let mut loads = Vec::new();
        for ph in phdrs.iter().filter(|ph| ph.p_type(LE) == elf::PT_LOAD) {
            let seg = Segment {
                vaddr: ph.p_vaddr(LE),
                offset: ph.p_offset(LE),
                filesz: ph.p_filesz(LE),
                flags: ph.p_flags(LE),
            };
            // A segment reaching past the end of the file means the file was cut short; saying
            // so beats reporting "not Go" because the tables happened to be in the lost part.
            match seg.offset.checked_add(seg.filesz) {
                Some(end) if end <= data.len() as u64 => loads.push(seg),
                _ => {
                    return Err(GoBinError::TruncatedFile(format!(
                        "segment at file offset {:#x} (+{:#x}) ends past the file's {:#x} bytes",
                        seg.offset,
                        seg.filesz,
                        data.len()
                    )));
                }
            }
        }
        // Unreadable section headers are treated like absent ones: the segments still hold
        // everything needed.
        let sections = header
            .sections(LE, data)
            .ok()
            .filter(|table| !table.is_empty());
        Ok(Self {
            data,
            header,
            loads,
            sections,
        })
    }

    fn section(&self, names: &[&[u8]]) -> Option<Section<'a>> {
        let table = self.sections.as_ref()?;
        names.iter().find_map(|name| {
            let (_, sh) = table.section_by_name(LE, name)?;
            let data = sh.data(LE, self.data).ok()?;
            Some(Section {
                addr: sh.sh_addr(LE),
                data,
            })
        })
    }

    /// Start of `.text`, used when the pclntab's own text start is unrelocated (zero).
    fn text_address(&self) -> Option<u64> {
        self.section(&[b".text"]).map(|s| s.addr)
    }

    /// The bytes of segment `seg` as they sit in the file.
    fn segment_bytes(&self, seg: &Segment) -> &'a [u8] {
        // In bounds: checked in `parse`.
        &self.data[seg.offset as usize..(seg.offset + seg.filesz) as usize]
    }

    /// File offset of virtual address `addr`, if `len` bytes from there are file-backed.
    fn file_offset(&self, addr: u64, len: u64) -> Option<u64> {
        self.loads.iter().find_map(|seg| {
            let rel = addr.checked_sub(seg.vaddr)?;
            (rel.checked_add(len)? <= seg.filesz).then(|| seg.offset + rel)
        })
    }

    fn bytes_at(&self, addr: u64, len: u64) -> Option<&'a [u8]> {
        let off = self.file_offset(addr, len)?;
        self.data.get(off as usize..(off + len) as usize)
    }

    fn has_go_note(&self) -> bool {
        let Ok(phdrs) = self.header.program_headers(LE, self.data) else {
            return false;
        };
        phdrs.iter().any(|ph| {
            let Ok(Some(mut notes)) = ph.notes(LE, self.data) else {
                return false;
            };
            // The linker's build ID note: name "Go", type 4 (NT_GO_BUILDID).
            while let Ok(Some(note)) = notes.next() {
                if note.name() == b"Go" && note.n_type(LE) == 4 {
                    return true;
                }
            }
            false
        })
    }

    /// The pclntab, by section name, or else by its header magic in the non-executable segments.
    fn find_pclntab(&self) -> Result<Option<&'a [u8]>, GoBinError> {
        if let Some(sec) = self.section(PCLNTAB_SECTIONS) {
            return Ok(Some(sec.data));
        }
        if self.sections.is_some() {
            // Section headers are present and name no pclntab: not Go. Scanning here would only
            // cost time on large non-Go binaries.
            return Ok(None);
        }
        for seg in self.loads.iter().filter(|s| s.flags & elf::PF_X == 0) {
            let bytes = self.segment_bytes(seg);
            // The linker aligns the table; 4 is the weakest alignment any version used.
            let mut pos = 0;
            while let Some(found) = find_aligned(&bytes[pos..], 4, looks_like_pcheader) {
                let table = &bytes[pos + found..];
                if Pclntab::parse(table, None).is_ok() {
                    return Ok(Some(table));
                }
                pos += found + 4;
            }
        }
        Ok(None)
    }

    /// The Go toolchain version from the build information blob, if it can be read.
    fn go_version(&self) -> Option<String> {
        let blob = match self.section(GO_BUILDINFO_SECTIONS) {
            Some(sec) => sec.data,
            None if self.sections.is_none() => {
                // Stripped section headers: the blob starts 16-byte aligned in a writable segment.
                self.loads
                    .iter()
                    .filter(|s| s.flags & elf::PF_W != 0)
                    .find_map(|seg| {
                        let bytes = self.segment_bytes(seg);
                        let at = find_aligned(bytes, 16, |w| w.starts_with(BUILDINFO_MAGIC))?;
                        Some(&bytes[at..])
                    })?
            }
            None => return None,
        };
        self.parse_buildinfo(blob)
    }

    fn parse_buildinfo(&self, blob: &[u8]) -> Option<String> {
        // 14 magic bytes, pointer size, flags, padding to 32 bytes.
        if !blob.starts_with(BUILDINFO_MAGIC) || blob.len() < 32 {
            return None;
        }
        let ptr_size = blob[14];
        let flags = blob[15];
        let version = if flags & 2 != 0 {
            // Go 1.18+: length-prefixed strings follow the header.
            let (len, n) = read_uvarint(&blob[32..])?;
            let start = 32 + n;
            blob.get(start..start.checked_add(usize::try_from(len).ok()?)?)?
        } else {
            // Before Go 1.18: a pointer to a Go string header (pointer, length).
            if ptr_size != 8 || flags & 1 != 0 {
                return None;
            }
            let header_addr = u64_at(blob, 16)?;
            let header = self.bytes_at(header_addr, 16)?;
            let (ptr, len) = (u64_at(header, 0)?, u64_at(header, 8)?);
            if len > 1024 {
                return None;
            }
            self.bytes_at(ptr, len)?
        };
        let version = std::str::from_utf8(version).ok()?;
        (!version.is_empty() && version.len() <= 1024).then(|| version.to_string())
    }

    /// Turns a function's address range into file offsets of its entry and `ret` instructions.
    fn locate(&self, name: &str, range: FuncRange) -> Result<GoFunction, GoBinError> {
        let fail = |reason: String| GoBinError::FunctionNotDecodable {
            name: name.to_string(),
            address: range.start,
            reason,
        };
        let len = range.end - range.start;
        let entry_offset = self
            .file_offset(range.start, len)
            .ok_or_else(|| fail(format!("{len} bytes not in a file-backed segment")))?;
        let executable = self.loads.iter().any(|seg| {
            seg.flags & elf::PF_X != 0
                && range.start >= seg.vaddr
                && range.end - seg.vaddr <= seg.filesz
        });
        if !executable {
            return Err(fail("not in an executable segment".into()));
        }
        let code = &self.data[entry_offset as usize..(entry_offset + len) as usize];
        let returns = find_returns(code, range.start).map_err(fail)?;
        Ok(GoFunction {
            name: name.to_string(),
            entry_offset,
            return_offsets: returns.into_iter().map(|rel| entry_offset + rel).collect(),
        })
    }
}

/// Offsets (relative to `code`) of every near `ret` (0xC3 and `ret imm16` 0xC2), decoding from
/// the start to the exact end of the function.
fn find_returns(code: &[u8], address: u64) -> Result<Vec<u64>, String> {
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut instr = Instruction::default();
    let mut returns = Vec::new();
    while decoder.can_decode() {
        let at = decoder.position();
        decoder.decode_out(&mut instr);
        if instr.is_invalid() {
            // Losing sync would make every later offset suspect; refuse rather than guess.
            return Err(format!(
                "cannot decode the instruction at +{at:#x}: {:?}",
                decoder.last_error()
            ));
        }
        if instr.mnemonic() == Mnemonic::Ret {
            returns.push(at as u64);
        }
    }
    Ok(returns)
}

/// First offset, a multiple of `align`, where `matches` accepts the bytes from there on.
fn find_aligned(bytes: &[u8], align: usize, matches: impl Fn(&[u8]) -> bool) -> Option<usize> {
    (0..bytes.len())
        .step_by(align)
        .find(|&i| matches(&bytes[i..]))
}

fn looks_like_pcheader(w: &[u8]) -> bool {
    // magic (one of the known ones), two zero pad bytes, quantum 1, pointer size 8.
    w.len() >= 8
        && matches!(u32_at(w, 0), Some(m) if PclnVersion::from_magic(m).is_some())
        && w[4..8] == [0, 0, 1, 8]
}

// ---------------------------------------------------------------------------------------------
// pclntab

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PclnVersion {
    /// Go 1.2–1.15: absolute entry addresses, names relative to the table start.
    V12,
    /// Go 1.16–1.17: absolute entry addresses, names relative to the function name table.
    V116,
    /// Go 1.18+: 32-bit entry offsets from the text start.
    V118,
}

impl PclnVersion {
    fn from_magic(magic: u32) -> Option<Self> {
        match magic {
            0xffff_fffb => Some(Self::V12),
            0xffff_fffa => Some(Self::V116),
            0xffff_fff0 | 0xffff_fff1 => Some(Self::V118),
            _ => None,
        }
    }
}

/// A function's address range: `end` is the next function's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FuncRange {
    start: u64,
    end: u64,
}

struct Pclntab<'a> {
    version: PclnVersion,
    nfunc: usize,
    text_start: u64,
    /// `nfunc` (entry, funcoff) pairs then the end address of the last function.
    functab: &'a [u8],
    /// Base of the `funcoff` offsets.
    funcdata: &'a [u8],
    /// Base of the `_func` name offsets.
    names: &'a [u8],
}

fn corrupt(what: impl Into<String>) -> GoBinError {
    GoBinError::TruncatedPclntab(what.into())
}

impl<'a> Pclntab<'a> {
    /// Only 64-bit, x86 tables (pointer size 8, instruction quantum 1) are accepted.
    fn parse(data: &'a [u8], text_address: Option<u64>) -> Result<Self, GoBinError> {
        let magic = u32_at(data, 0).ok_or_else(|| corrupt("shorter than its header"))?;
        let version =
            PclnVersion::from_magic(magic).ok_or(GoBinError::UnsupportedPclntab { magic })?;
        let head = data
            .get(..8)
            .ok_or_else(|| corrupt("shorter than its header"))?;
        let (min_lc, ptr_size) = (head[6], head[7]);
        if head[4..6] != [0, 0] {
            return Err(corrupt("non-zero header padding"));
        }
        if ptr_size != 8 || min_lc != 1 {
            return Err(GoBinError::UnsupportedPclntabParameters { ptr_size, min_lc });
        }
        // Header words after the first 8 bytes, each pointer-sized.
        let word = |i: usize| u64_at(data, 8 + 8 * i).ok_or_else(|| corrupt("header cut short"));
        let slice_from = |off: u64, what: &str| {
            usize::try_from(off)
                .ok()
                .and_then(|off| data.get(off..))
                .ok_or_else(|| corrupt(format!("{what} offset {off:#x} past the table end")))
        };
        let nfunc = word(0)?;
        let (text_start, functab, funcdata, names) = match version {
            PclnVersion::V12 => {
                let functab = data.get(16..).ok_or_else(|| corrupt("header cut short"))?;
                (0, functab, data, data)
            }
            PclnVersion::V116 => {
                // nfunc, nfiles, funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset
                let names = slice_from(word(2)?, "function name table")?;
                let pcln = slice_from(word(6)?, "function table")?;
                (0, pcln, pcln, names)
            }
            PclnVersion::V118 => {
                // nfunc, nfiles, textStart, funcnameOffset, cuOffset, filetabOffset,
                // pctabOffset, pclnOffset
                let mut text_start = word(2)?;
                if text_start == 0 {
                    // Position-independent executables leave it to a dynamic relocation.
                    text_start = text_address
                        .ok_or_else(|| corrupt("text start unrelocated and no .text section"))?;
                }
                let names = slice_from(word(3)?, "function name table")?;
                let pcln = slice_from(word(7)?, "function table")?;
                (text_start, pcln, pcln, names)
            }
        };
        let field = Self::field_size(version);
        let nfunc = usize::try_from(nfunc)
            .ok()
            .filter(|&n| {
                n.checked_mul(2)
                    .and_then(|n| n.checked_add(1))
                    .and_then(|n| n.checked_mul(field))
                    .is_some_and(|size| size <= functab.len())
            })
            .ok_or_else(|| corrupt(format!("{nfunc} functions do not fit the function table")))?;
        Ok(Self {
            version,
            nfunc,
            text_start,
            functab,
            funcdata,
            names,
        })
    }

    fn field_size(version: PclnVersion) -> usize {
        match version {
            PclnVersion::V118 => 4,
            PclnVersion::V12 | PclnVersion::V116 => 8,
        }
    }

    /// Field `index` of the function table (even: entry, odd: funcoff); in bounds by `parse`.
    fn functab_field(&self, index: usize) -> u64 {
        match self.version {
            PclnVersion::V118 => u32_at(self.functab, index * 4).map_or(0, u64::from),
            PclnVersion::V12 | PclnVersion::V116 => u64_at(self.functab, index * 8).unwrap_or(0),
        }
    }

    /// Entry address of function `i`; `i == nfunc` gives the end of the last function.
    fn entry(&self, i: usize) -> u64 {
        let raw = self.functab_field(2 * i);
        match self.version {
            PclnVersion::V118 => self.text_start.wrapping_add(raw),
            PclnVersion::V12 | PclnVersion::V116 => raw,
        }
    }

    /// Name of function `i`, as stored (without the terminating NUL).
    fn name(&self, i: usize) -> Result<&'a [u8], GoBinError> {
        let funcoff = self.functab_field(2 * i + 1);
        let func = usize::try_from(funcoff)
            .ok()
            .and_then(|off| self.funcdata.get(off..))
            .ok_or_else(|| corrupt(format!("function {i} record at {funcoff:#x} out of range")))?;
        // _func starts with the entry (a u32 offset from 1.18, a pointer before), then the
        // int32 name offset.
        let name_at = Self::field_size(self.version);
        if self.version == PclnVersion::V118
            && u32_at(func, 0) != Some(self.functab_field(2 * i) as u32)
        {
            return Err(corrupt(format!(
                "function {i} record disagrees with the function table"
            )));
        }
        let name_off = u32_at(func, name_at)
            .map(|v| v as i32)
            .ok_or_else(|| corrupt(format!("function {i} record cut short")))?;
        let name = usize::try_from(name_off)
            .ok()
            .and_then(|off| self.names.get(off..))
            .ok_or_else(|| corrupt(format!("function {i} name offset {name_off} out of range")))?;
        let end = name
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| corrupt(format!("function {i} name not terminated")))?;
        Ok(&name[..end])
    }

    /// Address ranges of the named functions (`None` for those absent), in one pass.
    fn find_functions<const N: usize>(
        &self,
        wanted: [&str; N],
    ) -> Result<[Option<FuncRange>; N], GoBinError> {
        let mut found = [None; N];
        for i in 0..self.nfunc {
            let name = self.name(i)?;
            let Some(slot) = wanted.iter().position(|w| w.as_bytes() == name) else {
                continue;
            };
            let (start, end) = (self.entry(i), self.entry(i + 1));
            // Bounded so that a corrupt table cannot make us decode megabytes of "function".
            if end <= start || end - start > MAX_FUNCTION_SIZE {
                return Err(GoBinError::FunctionNotDecodable {
                    name: wanted[slot].to_string(),
                    address: start,
                    reason: format!("implausible extent up to {end:#x}"),
                });
            }
            found[slot] = Some(FuncRange { start, end });
            if found.iter().all(Option::is_some) {
                break;
            }
        }
        Ok(found)
    }
}

const MAX_FUNCTION_SIZE: u64 = 1 << 20;

fn u32_at(data: &[u8], off: usize) -> Option<u32> {
    let bytes = data.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn u64_at(data: &[u8], off: usize) -> Option<u64> {
    let bytes = data.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// An unsigned LEB128 varint, as Go's `binary.Uvarint`; returns the value and its length.
fn read_uvarint(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in data.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use proptest::prelude::*;

    use super::*;

    const KUBECTL: &str = "/usr/bin/kubectl";

    fn kubectl() -> &'static Path {
        let path = Path::new(KUBECTL);
        assert!(
            path.exists(),
            "{KUBECTL} is missing: it is a required peer of these tests"
        );
        path
    }

    fn inspect_kubectl() -> GoTlsFunctions {
        match inspect(kubectl()).expect("inspecting kubectl") {
            GoBinary::GoTls(f) => f,
            other => panic!("kubectl should be a Go binary using crypto/tls, got {other:?}"),
        }
    }

    /// Go's stack-bound check opens every function that has a frame: `cmp rsp,[r14+0x10]`,
    /// or for big frames `lea r12,[rsp-n]` then `cmp r12,[r14+0x10]`.
    fn has_go_prologue(code: &[u8]) -> bool {
        code.starts_with(&[0x49, 0x3b, 0x66, 0x10])
            || (code.starts_with(&[0x4c, 0x8d, 0x64, 0x24])
                && code[5..9] == [0x4d, 0x3b, 0x66, 0x10])
            || (code.starts_with(&[0x4c, 0x8d, 0xa4, 0x24])
                && code[8..12] == [0x4d, 0x3b, 0x66, 0x10])
    }

    #[test]
    fn kubectl_tls_functions() {
        let started = Instant::now();
        let found = inspect_kubectl();
        let elapsed = started.elapsed();
        let file = std::fs::read(kubectl()).unwrap();
        eprintln!(
            "kubectl: {:?}, Write at {:#x} ({} rets), Read at {:#x} ({} rets), inspected in {elapsed:?}",
            found.go_version,
            found.write.entry_offset,
            found.write.return_offsets.len(),
            found.read.entry_offset,
            found.read.return_offsets.len(),
        );
        assert_eq!(found.go_version.as_deref(), Some("go1.23.8"));
        assert_eq!(found.write.name, TLS_WRITE);
        assert_eq!(found.read.name, TLS_READ);
        assert_ne!(found.write.entry_offset, found.read.entry_offset);
        for f in [&found.write, &found.read] {
            let entry = f.entry_offset as usize;
            assert!(
                has_go_prologue(&file[entry..]),
                "{} at {entry:#x} starts with {:02x?}",
                f.name,
                &file[entry..entry + 12]
            );
            assert!(!f.return_offsets.is_empty(), "{} has no ret", f.name);
            assert!(f.return_offsets.windows(2).all(|w| w[0] < w[1]));
            for &ret in &f.return_offsets {
                let ret = ret as usize;
                assert!(ret > entry && ret - entry < MAX_FUNCTION_SIZE as usize);
                assert_eq!(file[ret], 0xc3, "{} ret at {ret:#x}", f.name);
                // Both functions have a frame, so each return follows `pop rbp`.
                assert_eq!(file[ret - 1], 0x5d, "{} ret at {ret:#x}", f.name);
            }
        }
    }

    #[test]
    fn kubectl_without_section_headers_gives_the_same_answer() {
        let mut file = std::fs::read(kubectl()).unwrap();
        // e_shoff, e_shnum, e_shstrndx: as if stripped of section headers.
        file[0x28..0x30].fill(0);
        file[0x3c..0x40].fill(0);
        let stripped = inspect_bytes(&file).unwrap();
        assert_eq!(stripped, GoBinary::GoTls(inspect_kubectl()));
    }

    #[test]
    fn kubectl_looks_like_go() {
        assert!(looks_like_go(kubectl()));
        assert!(!looks_like_go(Path::new("/usr/bin/bash")));
        assert!(!looks_like_go(&std::env::current_exe().unwrap()));
        assert!(!looks_like_go(Path::new("/nonexistent/binary")));
    }

    #[test]
    fn non_go_executables() {
        assert_eq!(
            inspect(Path::new("/usr/bin/bash")).unwrap(),
            GoBinary::NotGo
        );
        assert_eq!(
            inspect(&std::env::current_exe().unwrap()).unwrap(),
            GoBinary::NotGo
        );
    }

    #[test]
    fn unusable_files_are_clean_errors() {
        let dir = tempfile::tempdir().unwrap();
        let head = dir.path().join("kubectl-head");
        let mut bytes = std::fs::read(kubectl()).unwrap();
        bytes.truncate(4 << 20);
        std::fs::write(&head, &bytes).unwrap();
        let err = inspect(&head).unwrap_err();
        assert!(matches!(err, GoBinError::TruncatedFile(_)), "{err}");

        let text = dir.path().join("script");
        std::fs::write(&text, "#!/bin/sh\necho hi\n").unwrap();
        assert!(matches!(inspect(&text), Err(GoBinError::NotElf)));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(inspect(&empty), Err(GoBinError::NotElf)));
        assert!(matches!(
            inspect(dir.path()),
            Err(GoBinError::Open(MapError::NotRegularFile(_)))
        ));
        assert!(matches!(
            inspect(&dir.path().join("missing")),
            Err(GoBinError::Open(MapError::Io { .. }))
        ));
    }

    // -----------------------------------------------------------------------------------------
    // Synthetic executables, for the older table layouts and for fuzzing.

    const TEXT_VADDR: u64 = 0x40_0000;
    const CODE_OFF: usize = 0x100;
    const TABLE_OFF: usize = 0x200;
    const TABLE_VADDR: u64 = 0x60_0200;

    /// Three functions: (name, code). The second holds 0xC3 as an immediate, which is no `ret`.
    fn functions() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            (
                "main.main",
                vec![0x49, 0x3b, 0x66, 0x10, 0xc3, 0xcc, 0xcc, 0xcc],
            ),
            (
                TLS_WRITE,
                vec![
                    0x49, 0x3b, 0x66, 0x10, // cmp rsp,[r14+0x10]
                    0xb8, 0xc3, 0x00, 0x00, 0x00, // mov eax,0xc3
                    0xc2, 0x08, 0x00, // ret 8
                    0x5d, 0xc3, // pop rbp; ret
                    0xcc, 0xcc, // padding
                ],
            ),
            (TLS_READ, vec![0x90, 0xc3, 0x90, 0xc3]),
        ]
    }

    /// A pclntab of `version` for [`functions`] laid out from `CODE_OFF`.
    fn build_pclntab(version: PclnVersion) -> Vec<u8> {
        let funcs = functions();
        let text_start = TEXT_VADDR + CODE_OFF as u64;
        let mut starts = Vec::new();
        let mut at = 0u64;
        for (_, code) in &funcs {
            starts.push(at);
            at += code.len() as u64;
        }
        starts.push(at);
        let mut names = Vec::new();
        let mut name_offs = Vec::new();
        for (name, _) in &funcs {
            name_offs.push(names.len() as u32);
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        let n = funcs.len();
        let put = |out: &mut Vec<u8>, v: u64, size: usize| {
            out.extend_from_slice(&v.to_le_bytes()[..size]);
        };
        let (magic, header_words) = match version {
            PclnVersion::V12 => (0xffff_fffbu32, 1),
            PclnVersion::V116 => (0xffff_fffa, 7),
            PclnVersion::V118 => (0xffff_fff1, 8),
        };
        let field = Pclntab::field_size(version);
        let header_len = 8 + 8 * header_words;
        // Layout after the header: names, then function table, then _func records.
        let (names_at, pcln_at) = match version {
            PclnVersion::V12 => (header_len + (2 * n + 1) * 8 + n * 16, header_len),
            _ => (header_len, header_len + names.len()),
        };
        let funcs_rel = (2 * n + 1) * field; // records right after the function table
        let mut out = Vec::new();
        out.extend_from_slice(&magic.to_le_bytes());
        out.extend_from_slice(&[0, 0, 1, 8]);
        put(&mut out, n as u64, 8);
        match version {
            PclnVersion::V12 => {}
            PclnVersion::V116 => {
                for w in [0, names_at as u64, 0, 0, 0, pcln_at as u64] {
                    put(&mut out, w, 8);
                }
            }
            PclnVersion::V118 => {
                for w in [0, text_start, names_at as u64, 0, 0, 0, pcln_at as u64] {
                    put(&mut out, w, 8);
                }
            }
        }
        if version != PclnVersion::V12 {
            out.extend_from_slice(&names);
        }
        // Function table; `funcoff` is relative to the table start for 1.2, to pcln after.
        let func_base = if version == PclnVersion::V12 {
            0
        } else {
            pcln_at
        };
        let entry = |i: usize| match version {
            PclnVersion::V118 => starts[i],
            _ => text_start + starts[i],
        };
        for i in 0..n {
            put(&mut out, entry(i), field);
            put(
                &mut out,
                (pcln_at + funcs_rel + 16 * i - func_base) as u64,
                field,
            );
        }
        put(&mut out, entry(n), field);
        for (i, &name_off) in name_offs.iter().enumerate() {
            let name_off = match version {
                PclnVersion::V12 => names_at as u32 + name_off,
                _ => name_off,
            };
            let mut rec = Vec::new();
            put(&mut rec, entry(i), field);
            rec.extend_from_slice(&name_off.to_le_bytes());
            rec.resize(16, 0);
            out.extend_from_slice(&rec);
        }
        if version == PclnVersion::V12 {
            assert_eq!(out.len(), names_at);
            out.extend_from_slice(&names);
        }
        out
    }

    /// A section-less x86-64 ELF: code segment, read-only pclntab segment, writable segment
    /// with Go 1.18+ build information.
    fn build_elf(version: PclnVersion) -> Vec<u8> {
        let table = build_pclntab(version);
        let info_off = (TABLE_OFF + table.len()).next_multiple_of(0x100);
        let mut info = BUILDINFO_MAGIC.to_vec();
        info.extend_from_slice(&[8, 2]);
        info.resize(32, 0);
        info.push(8);
        info.extend_from_slice(b"go1.99.1");
        info.push(0);
        let mut out = vec![0u8; info_off + info.len()];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4..7].copy_from_slice(&[2, 1, 1]);
        out[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        out[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        out[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
        out[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        out[0x34..0x36].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        out[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        out[0x38..0x3a].copy_from_slice(&3u16.to_le_bytes()); // e_phnum
        out[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        let segments = [
            (0u64, TEXT_VADDR, TABLE_OFF as u64, 5u32),
            (TABLE_OFF as u64, TABLE_VADDR, table.len() as u64, 4),
            (
                info_off as u64,
                0x80_0000 + info_off as u64,
                info.len() as u64,
                6,
            ),
        ];
        for (i, (offset, vaddr, size, flags)) in segments.into_iter().enumerate() {
            let ph = &mut out[64 + 56 * i..64 + 56 * (i + 1)];
            ph[0..4].copy_from_slice(&1u32.to_le_bytes());
            ph[4..8].copy_from_slice(&flags.to_le_bytes());
            ph[8..16].copy_from_slice(&offset.to_le_bytes());
            ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
            ph[24..32].copy_from_slice(&vaddr.to_le_bytes());
            ph[32..40].copy_from_slice(&size.to_le_bytes());
            ph[40..48].copy_from_slice(&size.to_le_bytes());
        }
        let code: Vec<u8> = functions().into_iter().flat_map(|(_, c)| c).collect();
        out[CODE_OFF..CODE_OFF + code.len()].copy_from_slice(&code);
        out[TABLE_OFF..TABLE_OFF + table.len()].copy_from_slice(&table);
        out[info_off..].copy_from_slice(&info);
        out
    }

    #[test]
    fn synthetic_executables_of_every_table_layout() {
        for version in [PclnVersion::V12, PclnVersion::V116, PclnVersion::V118] {
            let elf = build_elf(version);
            let found = inspect_bytes(&elf).unwrap_or_else(|e| panic!("{version:?}: {e}"));
            let write_at = CODE_OFF as u64 + 8;
            let read_at = write_at + 16;
            assert_eq!(
                found,
                GoBinary::GoTls(GoTlsFunctions {
                    go_version: Some("go1.99.1".into()),
                    write: GoFunction {
                        name: TLS_WRITE.into(),
                        entry_offset: write_at,
                        // `ret 8` and the final `ret`, not the 0xC3 immediate.
                        return_offsets: vec![write_at + 9, write_at + 13],
                    },
                    read: GoFunction {
                        name: TLS_READ.into(),
                        entry_offset: read_at,
                        return_offsets: vec![read_at + 1, read_at + 3],
                    },
                }),
                "{version:?}"
            );
        }
    }

    #[test]
    fn go_without_tls_and_unsupported_tables() {
        let mut elf = build_elf(PclnVersion::V118);
        let table = TABLE_OFF + 72;
        // Rename the read function: the Write function alone is not enough.
        let at = table
            + build_pclntab(PclnVersion::V118)[72..]
                .windows(TLS_READ.len())
                .position(|w| w == TLS_READ.as_bytes())
                .unwrap();
        elf[at] = b'X';
        assert_eq!(
            inspect_bytes(&elf).unwrap(),
            GoBinary::GoWithoutTls {
                go_version: Some("go1.99.1".into())
            }
        );
        let err = Pclntab::parse(&[0xf5, 0xff, 0xff, 0xff, 0, 0, 1, 8], None)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "unsupported pclntab version (magic 0xfffffff5)"
        );
    }

    #[test]
    fn code_that_does_not_decode_is_refused() {
        // 0x0f 0x0b is ud2 (fine); a lone 0x0f at the end is a cut instruction.
        assert_eq!(find_returns(&[0x0f, 0x0b, 0xc3], 0x1000), Ok(vec![2]));
        assert!(find_returns(&[0xc3, 0x0f], 0x1000).is_err());
        assert!(find_returns(&[0xb8, 0xc3, 0x00], 0x1000).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn mutated_executables_never_panic(
            version in prop_oneof![Just(PclnVersion::V12), Just(PclnVersion::V116), Just(PclnVersion::V118)],
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut elf = build_elf(version);
            for (at, value) in edits {
                let i = at.index(elf.len());
                elf[i] = value;
            }
            if truncate {
                elf.truncate(cut.index(elf.len()));
            }
            let _ = inspect_bytes(&elf);
        }

        #[test]
        fn random_tables_never_panic(
            magic in prop_oneof![Just(0xffff_fffbu32), Just(0xffff_fffa), Just(0xffff_fff0), Just(0xffff_fff1)],
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut table = magic.to_le_bytes().to_vec();
            table.extend_from_slice(&[0, 0, 1, 8]);
            table.extend_from_slice(&body);
            if let Ok(pcln) = Pclntab::parse(&table, Some(0x40_1000)) {
                let _ = pcln.find_functions([TLS_WRITE, TLS_READ]);
            }
        }

        #[test]
        fn mutated_real_table_head_never_panics(
            edits in proptest::collection::vec((0usize..4096, any::<u8>()), 0..8),
            len in 0usize..4096,
        ) {
            let head = kubectl_table_head();
            let mut table = head[..len.min(head.len())].to_vec();
            for (at, value) in edits {
                if let Some(b) = table.get_mut(at) {
                    *b = value;
                }
            }
            if let Ok(pcln) = Pclntab::parse(&table, None) {
                let _ = pcln.find_functions([TLS_WRITE, TLS_READ]);
            }
        }
    }

    /// The first 4 KiB of kubectl's pclntab (header and start of the name table).
    fn kubectl_table_head() -> &'static [u8] {
        static HEAD: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        HEAD.get_or_init(|| {
            let file = std::fs::read(kubectl()).unwrap();
            let elf = Elf::parse(&file).unwrap();
            let table = elf.find_pclntab().unwrap().unwrap();
            table[..4096].to_vec()
        })
    }
}
