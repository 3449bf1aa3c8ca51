//! The on-disk form of the log. A segment file is an 8-byte header and then frames:
//!
//! ```text
//! frame = u32 LE entry length | entry | leaf hash (32 bytes) = SHA-256(0x00 || entry)
//! entry = u8 version (1) | u64 LE log index | u16 LE host length | host | u16 LE boot length
//!         | boot | u64 LE sequence | prev (32 bytes) | u32 LE line length | line
//! ```
//!
//! `prev` is the leaf hash of the previous entry of the same (host, boot) stream (zeros for its
//! first), which makes each stream a hash chain; the log index makes every entry name its own
//! position, so a deleted or moved entry is caught where it happened. The stored leaf hash lets
//! `verify` point at a changed entry directly.
use crate::integrity::{Hash, merkle::leaf_hash};

pub const HEADER: &[u8; 8] = b"RECLOG01";
pub const ENTRY_VERSION: u8 = 1;
/// Far above any real record; a larger length is damage, not data.
pub const MAX_ENTRY: usize = 16 * 1024 * 1024;

/// One decoded entry, borrowing from the segment buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub index: u64,
    pub host: &'a str,
    pub boot: &'a str,
    pub sequence: u64,
    pub prev: Hash,
    pub line: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the frame is cut short ({have} of {need} bytes)")]
    Truncated { have: usize, need: usize },
    #[error("the frame length {0} is impossible")]
    BadLength(usize),
    #[error("the entry is malformed: {0}")]
    Malformed(&'static str),
}

impl Entry<'_> {
    /// Appends the frame of this entry to `out` and returns the entry's leaf hash.
    pub fn encode_frame(&self, out: &mut Vec<u8>) -> Hash {
        let len = 1 + 8 + 2 + self.host.len() + 2 + self.boot.len() + 8 + 32 + 4 + self.line.len();
        out.reserve(4 + len + 32);
        out.extend_from_slice(&(len as u32).to_le_bytes());
        let start = out.len();
        out.push(ENTRY_VERSION);
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&(self.host.len() as u16).to_le_bytes());
        out.extend_from_slice(self.host.as_bytes());
        out.extend_from_slice(&(self.boot.len() as u16).to_le_bytes());
        out.extend_from_slice(self.boot.as_bytes());
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(&self.prev);
        out.extend_from_slice(&(self.line.len() as u32).to_le_bytes());
        out.extend_from_slice(self.line);
        let leaf = leaf_hash(&out[start..]);
        out.extend_from_slice(&leaf);
        leaf
    }
}

/// A decoded frame: the entry, the raw entry bytes, the leaf hash stored beside it, and the
/// frame's total length.
pub struct Frame<'a> {
    pub entry: Entry<'a>,
    pub raw: &'a [u8],
    pub stored_leaf: Hash,
    pub len: usize,
}

impl Frame<'_> {
    pub fn computed_leaf(&self) -> Hash {
        leaf_hash(self.raw)
    }
}

/// Decodes the frame at the start of `buf`.
pub fn decode_frame(buf: &[u8]) -> Result<Frame<'_>, FrameError> {
    let need = |n: usize| {
        if buf.len() < n {
            Err(FrameError::Truncated {
                have: buf.len(),
                need: n,
            })
        } else {
            Ok(())
        }
    };
    need(4)?;
    let len = u32::from_le_bytes(buf[..4].try_into().unwrap_or_default()) as usize;
    if !(1 + 8 + 2 + 2 + 8 + 32 + 4..=MAX_ENTRY).contains(&len) {
        return Err(FrameError::BadLength(len));
    }
    need(4 + len + 32)?;
    let raw = &buf[4..4 + len];
    let stored_leaf: Hash = buf[4 + len..4 + len + 32]
        .try_into()
        .map_err(|_| FrameError::Malformed("leaf"))?;
    let entry = decode_entry(raw)?;
    Ok(Frame {
        entry,
        raw,
        stored_leaf,
        len: 4 + len + 32,
    })
}

fn decode_entry(raw: &[u8]) -> Result<Entry<'_>, FrameError> {
    let mut r = Reader { buf: raw };
    if r.take(1)?[0] != ENTRY_VERSION {
        return Err(FrameError::Malformed("unknown entry version"));
    }
    let index = r.u64()?;
    let host_len = r.u16()? as usize;
    let host = std::str::from_utf8(r.take(host_len)?)
        .map_err(|_| FrameError::Malformed("host is not UTF-8"))?;
    let boot_len = r.u16()? as usize;
    let boot = std::str::from_utf8(r.take(boot_len)?)
        .map_err(|_| FrameError::Malformed("boot is not UTF-8"))?;
    let sequence = r.u64()?;
    let prev: Hash = r
        .take(32)?
        .try_into()
        .map_err(|_| FrameError::Malformed("prev"))?;
    let line_len = r.u32()? as usize;
    let line = r.take(line_len)?;
    if !r.buf.is_empty() {
        return Err(FrameError::Malformed("bytes after the line"));
    }
    Ok(Entry {
        index,
        host,
        boot,
        sequence,
        prev,
        line,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(FrameError::Malformed("a field runs past the entry"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().unwrap_or_default(),
        ))
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
}

/// `segments/00000003.log`
pub fn segment_name(n: u32) -> String {
    format!("{n:08}.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(line: &[u8]) -> Entry<'_> {
        Entry {
            index: 7,
            host: "web-1",
            boot: "b0",
            sequence: 42,
            prev: [3; 32],
            line,
        }
    }

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        let leaf = entry(b"{\"kind\":\"exec\"}").encode_frame(&mut buf);
        let f = decode_frame(&buf).unwrap();
        assert_eq!(f.entry, entry(b"{\"kind\":\"exec\"}"));
        assert_eq!(f.stored_leaf, leaf);
        assert_eq!(f.computed_leaf(), leaf);
        assert_eq!(f.len, buf.len());
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        entry(b"x").encode_frame(&mut buf);
        for cut in 0..buf.len() {
            assert!(matches!(
                decode_frame(&buf[..cut]),
                Err(FrameError::Truncated { .. } | FrameError::BadLength(_))
            ));
        }
        let mut bad = buf.clone();
        bad[0] = 0xff;
        bad[3] = 0xff;
        assert!(matches!(decode_frame(&bad), Err(FrameError::BadLength(_))));
        // A changed content byte still decodes; the leaf hash no longer matches.
        let mut changed = buf.clone();
        let last_line_byte = changed.len() - 33;
        changed[last_line_byte] ^= 1;
        let f = decode_frame(&changed).unwrap();
        assert_ne!(f.computed_leaf(), f.stored_leaf);
        // A length field inside the entry that runs past it.
        let mut inner = buf.clone();
        inner[4 + 9] = 0xff;
        assert!(matches!(
            decode_frame(&inner),
            Err(FrameError::Malformed(_))
        ));
    }
}
