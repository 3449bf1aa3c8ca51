//! Go's function table (the pclntab): the runtime needs it for stack traces, so even stripped
//! binaries keep it. Read far enough to find a function by name and its address range.
use super::GoBinError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PclnVersion {
    /// Go 1.2–1.15: absolute entry addresses, names relative to the table start.
    V12,
    /// Go 1.16–1.17: absolute entry addresses, names relative to the function name table.
    V116,
    /// Go 1.18+: 32-bit entry offsets from the text start.
    V118,
}

impl PclnVersion {
    pub(super) fn from_magic(magic: u32) -> Option<Self> {
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
pub(super) struct FuncRange {
    pub(super) start: u64,
    pub(super) end: u64,
}

pub(super) struct Pclntab<'a> {
    pub(super) version: PclnVersion,
    pub(super) nfunc: usize,
    pub(super) text_start: u64,
    /// `nfunc` (entry, funcoff) pairs then the end address of the last function.
    pub(super) functab: &'a [u8],
    /// Base of the `funcoff` offsets.
    pub(super) funcdata: &'a [u8],
    /// Base of the `_func` name offsets.
    pub(super) names: &'a [u8],
}

pub(super) fn corrupt(what: impl Into<String>) -> GoBinError {
    GoBinError::TruncatedPclntab(what.into())
}

impl<'a> Pclntab<'a> {
    /// Only 64-bit, x86 tables (pointer size 8, instruction quantum 1) are accepted.
    pub(super) fn parse(data: &'a [u8], text_address: Option<u64>) -> Result<Self, GoBinError> {
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

    pub(super) fn field_size(version: PclnVersion) -> usize {
        match version {
            PclnVersion::V118 => 4,
            PclnVersion::V12 | PclnVersion::V116 => 8,
        }
    }

    /// Field `index` of the function table (even: entry, odd: funcoff); in bounds by `parse`.
    pub(super) fn functab_field(&self, index: usize) -> u64 {
        match self.version {
            PclnVersion::V118 => u32_at(self.functab, index * 4).map_or(0, u64::from),
            PclnVersion::V12 | PclnVersion::V116 => u64_at(self.functab, index * 8).unwrap_or(0),
        }
    }

    /// Entry address of function `i`; `i == nfunc` gives the end of the last function.
    pub(super) fn entry(&self, i: usize) -> u64 {
        let raw = self.functab_field(2 * i);
        match self.version {
            PclnVersion::V118 => self.text_start.wrapping_add(raw),
            PclnVersion::V12 | PclnVersion::V116 => raw,
        }
    }

    /// Name of function `i`, as stored (without the terminating NUL).
    pub(super) fn name(&self, i: usize) -> Result<&'a [u8], GoBinError> {
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
    pub(super) fn find_functions<const N: usize>(
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

pub(super) const MAX_FUNCTION_SIZE: u64 = 1 << 20;

pub(super) fn u32_at(data: &[u8], off: usize) -> Option<u32> {
    let bytes = data.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

pub(super) fn u64_at(data: &[u8], off: usize) -> Option<u64> {
    let bytes = data.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// An unsigned LEB128 varint, as Go's `binary.Uvarint`; returns the value and its length.
pub(super) fn read_uvarint(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in data.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}
