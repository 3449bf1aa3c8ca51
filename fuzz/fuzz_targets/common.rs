//! Input format shared by the targets: records of one header byte (bit 0: direction, 0 = to
//! the server; bits 1..8: chunk length 0..127) followed by that many bytes. Any byte string is
//! a valid input; `seed.py` turns the recorded fixtures into it.

use recorder_protocol::{Direction, sql::Protocol};

/// The records of `data`, in order.
pub fn records(mut data: &[u8]) -> impl Iterator<Item = (Direction, &[u8])> {
    std::iter::from_fn(move || {
        let (&header, rest) = data.split_first()?;
        let len = usize::from(header >> 1).min(rest.len());
        let (chunk, rest) = rest.split_at(len);
        data = rest;
        let dir = if header & 1 == 0 {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        Some((dir, chunk))
    })
}

/// Feeds the records to a SQL decoder, checking its memory bound after each.
#[allow(dead_code)] // not every target decodes SQL
pub fn run(protocol: Protocol, data: &[u8]) {
    use recorder_protocol::sql::{AnyDecoder, Decoder, MAX_CONNECTION_BYTES};
    let mut decoder = AnyDecoder::new(protocol);
    let mut out = Vec::new();
    for (dir, chunk) in records(data) {
        decoder.feed(dir, chunk, &mut out);
        assert!(decoder.buffered_bytes() <= MAX_CONNECTION_BYTES);
    }
    decoder.finish(&mut out);
}
