//! MySQL packet framing for one direction: 3-byte little-endian length and a sequence number,
//! a payload of 16 MiB - 1 continued by the next packet. Logical packets are reassembled across
//! chunks and continuations with bounded memory.

use crate::sql::MAX_STATEMENT_BYTES;

/// Bytes of one logical packet kept; the rest streams by unkept and the packet is marked cut.
pub(crate) const MAX_KEPT_PAYLOAD: usize = MAX_STATEMENT_BYTES + 64 * 1024;
const CONTINUED: usize = 0x00ff_ffff;

#[derive(Debug)]
pub(crate) struct Packet {
    /// Sequence number of the first physical packet.
    pub(crate) seq: u8,
    pub(crate) payload: Vec<u8>,
    /// Physical length of the first packet (tells EOF from a huge row starting 0xfe).
    pub(crate) first_len: usize,
    pub(crate) cut: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Framer {
    header: [u8; 4],
    header_len: usize,
    in_body: bool,
    /// Body bytes still to come for the current physical packet.
    remaining: usize,
    /// The current physical packet is full size: another follows as its continuation.
    continued: bool,
    current: Option<Packet>,
}

impl Framer {
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.current.as_ref().map_or(0, |p| p.payload.len())
    }

    /// The next complete logical packet, consuming from `input`; `None` once it is used up.
    pub(crate) fn next(&mut self, input: &mut &[u8]) -> Option<Packet> {
        loop {
            if !self.in_body {
                self.read_header(input)?;
            }
            let n = self.remaining.min(input.len());
            let (chunk, rest) = input.split_at(n);
            *input = rest;
            self.remaining -= n;
            if let Some(p) = self.current.as_mut() {
                let room = MAX_KEPT_PAYLOAD
                    .saturating_sub(p.payload.len())
                    .min(chunk.len());
                p.payload
                    .extend_from_slice(chunk.get(..room).unwrap_or_default());
                p.cut |= room < chunk.len();
            }
            if self.remaining > 0 {
                return None;
            }
            self.in_body = false;
            if !self.continued {
                return self.current.take();
            }
        }
    }

    /// Reads a 4-byte header; `None` if `input` ran out first.
    fn read_header(&mut self, input: &mut &[u8]) -> Option<()> {
        while self.header_len < 4 {
            let (&b, rest) = input.split_first()?;
            if let Some(slot) = self.header.get_mut(self.header_len) {
                *slot = b;
            }
            self.header_len += 1;
            *input = rest;
        }
        self.header_len = 0;
        let [a, b, c, seq] = self.header;
        let len = u32::from_le_bytes([a, b, c, 0]) as usize;
        self.current.get_or_insert_with(|| Packet {
            seq,
            payload: Vec::new(),
            first_len: len,
            cut: false,
        });
        self.in_body = true;
        self.remaining = len;
        self.continued = len == CONTINUED;
        Some(())
    }
}
