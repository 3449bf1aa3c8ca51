//! HPACK header block decoding (RFC 7541), one decoder per direction of an HTTP/2 connection.
//!
//! The decoder keeps the dynamic table in step with the peer's encoder, so every header block
//! of a direction must go through it in order, even those whose headers are not wanted
//! (trailers, pushed requests). Any error leaves the table in an unknown state: the caller
//! stops decoding that direction.

use std::collections::VecDeque;

use super::huffman;

/// Largest dynamic table accepted, whatever the peer announced. Encoders stay at the 4 KiB
/// default or a little above in practice; a bigger table only costs memory here.
pub const MAX_TABLE_SIZE: usize = 64 * 1024;
/// The table size every connection starts with (RFC 7540 `SETTINGS_HEADER_TABLE_SIZE` default).
const DEFAULT_TABLE_SIZE: usize = 4096;
/// Headers of one block past this decoded size (RFC 7540 list size: name + value + 32 each)
/// are not handed out; the block is still decoded so the table stays right. Indexed fields can
/// repeat a 64 KiB entry cheaply; this keeps what a caller may collect bounded.
pub const MAX_HEADER_LIST_SIZE: usize = 256 * 1024;
/// Per-entry overhead counted in table and list sizes (RFC 7541 section 4.1).
const ENTRY_OVERHEAD: usize = 32;

/// Why a header block does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("header block ends inside a field")]
    Truncated,
    #[error("integer overflow in header block")]
    Integer,
    #[error("header index {0} is not in the table")]
    Index(usize),
    #[error("bad Huffman code in header string")]
    Huffman,
    #[error("dynamic table size update to {0} bytes is over the limit")]
    TableSize(usize),
}

/// The 61 entries of the static table (RFC 7541 Appendix A), index 1 first.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// A dynamic table entry: name and value.
type Entry = (Box<[u8]>, Box<[u8]>);

/// The dynamic table: newest entry first (index 62).
#[derive(Debug)]
struct Table {
    entries: VecDeque<Entry>,
    /// Sum of entry sizes (name + value + 32).
    size: usize,
    /// Current maximum, set by size updates.
    max: usize,
}

impl Table {
    fn insert(&mut self, name: Box<[u8]>, value: Box<[u8]>) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        // An entry larger than the table empties it and is not added (section 4.4).
        self.evict_to(self.max.saturating_sub(size));
        if size <= self.max {
            self.size += size;
            self.entries.push_front((name, value));
        }
    }

    fn evict_to(&mut self, target: usize) {
        while self.size > target {
            if let Some((n, v)) = self.entries.pop_back() {
                self.size -= n.len() + v.len() + ENTRY_OVERHEAD;
            } else {
                self.size = 0;
                break;
            }
        }
    }

    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        match index {
            1..=61 => {
                let (n, v) = STATIC[index - 1];
                Ok((n.as_bytes(), v.as_bytes()))
            }
            _ => index
                .checked_sub(62)
                .and_then(|i| self.entries.get(i))
                .map(|(n, v)| (&n[..], &v[..]))
                .ok_or(HpackError::Index(index)),
        }
    }
}

/// One direction's HPACK decoder.
#[derive(Debug)]
pub struct Decoder {
    table: Table,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            table: Table {
                entries: VecDeque::new(),
                size: 0,
                max: DEFAULT_TABLE_SIZE,
            },
        }
    }

    /// Bytes held by the dynamic table (at most [`MAX_TABLE_SIZE`]).
    pub fn table_size(&self) -> usize {
        self.table.size
    }

    /// Decodes one complete header block, calling `field(name, value)` for each header in
    /// order, until the decoded list passes [`MAX_HEADER_LIST_SIZE`].
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let mut r = Input(block);
        let mut list_size = 0usize;
        let mut emit = |name: &[u8], value: &[u8]| {
            list_size = list_size.saturating_add(name.len() + value.len() + ENTRY_OVERHEAD);
            if list_size <= MAX_HEADER_LIST_SIZE {
                field(name, value);
            }
        };
        while let Some(&first) = r.0.first() {
            if first & 0x80 != 0 {
                // Indexed header field.
                let index = r.integer(7)?;
                let (n, v) = self.table.get(index)?;
                emit(n, v);
            } else if first & 0xc0 == 0x40 {
                // Literal with incremental indexing: added to the table.
                let (name, value) = self.literal(&mut r, 6)?;
                emit(&name, &value);
                self.table.insert(name.into(), value.into());
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update.
                let size = r.integer(5)?;
                if size > MAX_TABLE_SIZE {
                    return Err(HpackError::TableSize(size));
                }
                self.table.max = size;
                self.table.evict_to(size);
            } else {
                // Literal without indexing (0000) or never indexed (0001): not added.
                let (name, value) = self.literal(&mut r, 4)?;
                emit(&name, &value);
            }
        }
        Ok(())
    }

    /// A literal field whose name is indexed (non-zero prefix) or a literal string.
    fn literal(&self, r: &mut Input, prefix: u8) -> Result<(Vec<u8>, Vec<u8>), HpackError> {
        let index = r.integer(prefix)?;
        let name = if index == 0 {
            r.string()?
        } else {
            self.table.get(index)?.0.to_vec()
        };
        Ok((name, r.string()?))
    }
}

/// The unread rest of a header block.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Result<u8, HpackError> {
        let (&b, rest) = self.0.split_first().ok_or(HpackError::Truncated)?;
        self.0 = rest;
        Ok(b)
    }

    /// An integer with an N-bit prefix (section 5.1); the flag bits above the prefix in the
    /// first byte are ignored. Values past 2^32 are refused: no real field needs them.
    fn integer(&mut self, prefix: u8) -> Result<usize, HpackError> {
        let max_prefix = (1u32 << prefix) - 1;
        let mut value = u32::from(self.byte()?) & max_prefix;
        if value < max_prefix {
            return Ok(value as usize);
        }
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            let add = u32::from(b & 0x7f)
                .checked_shl(shift)
                .filter(|v| v >> shift == u32::from(b & 0x7f))
                .ok_or(HpackError::Integer)?;
            value = value.checked_add(add).ok_or(HpackError::Integer)?;
            if b & 0x80 == 0 {
                return Ok(value as usize);
            }
            shift += 7;
            if shift > 28 {
                return Err(HpackError::Integer);
            }
        }
    }

    /// A string literal (section 5.2), Huffman-decoded if its H bit is set.
    fn string(&mut self) -> Result<Vec<u8>, HpackError> {
        let huffman = self.0.first().is_some_and(|b| b & 0x80 != 0);
        let len = self.integer(7)?;
        if len > self.0.len() {
            return Err(HpackError::Truncated);
        }
        let (raw, rest) = self.0.split_at(len);
        self.0 = rest;
        if !huffman {
            return Ok(raw.to_vec());
        }
        // Huffman output is at most 8/5 of the input (the shortest code is 5 bits).
        let mut out = Vec::with_capacity(len + len / 2);
        huffman::decode(raw, &mut out).map_err(|_| HpackError::Huffman)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
