//! Input format shared by the targets: records of one header byte (bit 0: direction, 0 = to
//! the server; bits 1..8: chunk length 0..127) followed by that many bytes. Any byte string is
//! a valid input; `seed.py` turns the recorded fixtures into it.

use recorder::protocol::{
    AnyDecoder, Decoder, Direction, MAX_PARAM_BYTES, MAX_PENDING_BYTES, MAX_PREPARED_BYTES,
    MAX_STATEMENT_BYTES, Protocol,
};

/// Per-connection memory bound from the documented constants (as in the property tests).
const MEMORY_BOUND: usize = 2 * (MAX_STATEMENT_BYTES + 64 * 1024)
    + 2 * MAX_PREPARED_BYTES
    + MAX_PENDING_BYTES
    + 16 * MAX_PARAM_BYTES
    + 64 * 1024;

pub fn run(protocol: Protocol, mut data: &[u8]) {
    let mut decoder = AnyDecoder::new(protocol);
    let mut out = Vec::new();
    while let Some((&header, rest)) = data.split_first() {
        let len = usize::from(header >> 1).min(rest.len());
        let (chunk, rest) = rest.split_at(len);
        let dir = if header & 1 == 0 { Direction::ToServer } else { Direction::ToClient };
        decoder.feed(dir, chunk, &mut out);
        assert!(decoder.buffered_bytes() <= MEMORY_BOUND);
        data = rest;
    }
    decoder.finish(&mut out);
}
