//! The parts of an x86-64 ELF executable the Go reader needs: its loadable segments, its
//! sections (when not stripped), its notes, and the translation of addresses to file offsets.
use object::{
    LittleEndian as LE,
    elf::{self, FileHeader64},
    read::elf::{FileHeader as _, ProgramHeader as _, SectionHeader as _},
};

use super::{
    GoBinError, GoFunction,
    pclntab::{FuncRange, PclnVersion, Pclntab, u32_at},
    returns::find_returns,
};

/// Section names of the pclntab: plain, and inside RELRO for position-independent executables.
pub(super) const PCLNTAB_SECTIONS: &[&[u8]] = &[b".gopclntab", b".data.rel.ro.gopclntab"];

#[derive(Clone, Copy)]
pub(super) struct Segment {
    pub(super) vaddr: u64,
    pub(super) offset: u64,
    pub(super) filesz: u64,
    pub(super) flags: u32,
}

pub(super) struct Section<'a> {
    pub(super) addr: u64,
    pub(super) data: &'a [u8],
}

pub(super) struct Elf<'a> {
    pub(super) data: &'a [u8],
    pub(super) header: &'a FileHeader64<LE>,
    /// `PT_LOAD` segments, each checked to lie inside the file.
    pub(super) loads: Vec<Segment>,
    /// `None` when the file has no (readable) section headers: then tables are found by their
    /// magic numbers inside the segments.
    pub(super) sections: Option<object::read::elf::SectionTable<'a, FileHeader64<LE>>>,
}

impl<'a> Elf<'a> {
    pub(super) fn parse(data: &'a [u8]) -> Result<Self, GoBinError> {
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

    pub(super) fn section(&self, names: &[&[u8]]) -> Option<Section<'a>> {
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
    pub(super) fn text_address(&self) -> Option<u64> {
        self.section(&[b".text"]).map(|s| s.addr)
    }

    /// The bytes of segment `seg` as they sit in the file.
    pub(super) fn segment_bytes(&self, seg: &Segment) -> &'a [u8] {
        // In bounds: checked in `parse`.
        &self.data[seg.offset as usize..(seg.offset + seg.filesz) as usize]
    }

    /// File offset of virtual address `addr`, if `len` bytes from there are file-backed.
    pub(super) fn file_offset(&self, addr: u64, len: u64) -> Option<u64> {
        self.loads.iter().find_map(|seg| {
            let rel = addr.checked_sub(seg.vaddr)?;
            (rel.checked_add(len)? <= seg.filesz).then(|| seg.offset + rel)
        })
    }

    pub(super) fn bytes_at(&self, addr: u64, len: u64) -> Option<&'a [u8]> {
        let off = self.file_offset(addr, len)?;
        self.data.get(off as usize..(off + len) as usize)
    }

    pub(super) fn has_go_note(&self) -> bool {
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
    pub(super) fn find_pclntab(&self) -> Option<&'a [u8]> {
        if let Some(sec) = self.section(PCLNTAB_SECTIONS) {
            return Some(sec.data);
        }
        if self.sections.is_some() {
            // Section headers are present and name no pclntab: not Go. Scanning here would only
            // cost time on large non-Go binaries.
            return None;
        }
        for seg in self.loads.iter().filter(|s| s.flags & elf::PF_X == 0) {
            let bytes = self.segment_bytes(seg);
            // The linker aligns the table; 4 is the weakest alignment any version used.
            let mut pos = 0;
            while let Some(found) = find_aligned(&bytes[pos..], 4, looks_like_pcheader) {
                let table = &bytes[pos + found..];
                if Pclntab::parse(table, None).is_ok() {
                    return Some(table);
                }
                pos += found + 4;
            }
        }
        None
    }

    /// Turns a function's address range into file offsets of its entry and `ret` instructions.
    /// `read_code` reads the code (file offset, length) from the file itself.
    pub(super) fn locate(
        &self,
        name: &str,
        range: FuncRange,
        read_code: impl Fn(u64, usize) -> Option<Vec<u8>>,
    ) -> Result<GoFunction, GoBinError> {
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
        let code = read_code(entry_offset, len as usize)
            .ok_or_else(|| fail(format!("its {len} bytes of code cannot be read")))?;
        let returns = find_returns(&code, range.start).map_err(fail)?;
        if returns.is_empty() {
            // Its returns are where a read's plaintext is seen: without them, responses would be
            // missing without a word.
            return Err(fail("no `ret` instruction found".into()));
        }
        Ok(GoFunction {
            name: name.to_string(),
            entry_offset,
            return_offsets: returns.into_iter().map(|rel| entry_offset + rel).collect(),
        })
    }
}

/// First offset, a multiple of `align`, where `matches` accepts the bytes from there on.
pub(super) fn find_aligned(
    bytes: &[u8],
    align: usize,
    matches: impl Fn(&[u8]) -> bool,
) -> Option<usize> {
    (0..bytes.len())
        .step_by(align)
        .find(|&i| matches(&bytes[i..]))
}

pub(super) fn looks_like_pcheader(w: &[u8]) -> bool {
    // magic (one of the known ones), two zero pad bytes, quantum 1, pointer size 8.
    w.len() >= 8
        && matches!(u32_at(w, 0), Some(m) if PclnVersion::from_magic(m).is_some())
        && w[4..8] == [0, 0, 1, 8]
}
