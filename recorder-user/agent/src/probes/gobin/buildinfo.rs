//! The Go build information blob (`.go.buildinfo`): the toolchain version a binary was built
//! with, for the logs and the notices.
use object::elf;

use super::{
    elf::{Elf, find_aligned},
    pclntab::{read_uvarint, u64_at},
};

pub(super) const GO_BUILDINFO_SECTIONS: &[&[u8]] = &[b".go.buildinfo"];
pub(super) const BUILDINFO_MAGIC: &[u8] = b"\xff Go buildinf:";

impl Elf<'_> {
    /// The Go toolchain version from the build information blob, if it can be read.
    pub(super) fn go_version(&self) -> Option<String> {
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
}
