//! Input format shared by the targets: records of one header byte (bit 0: direction, 0 = to
//! the server; bits 1..8: chunk length 0..127) followed by that many bytes. Any byte string is
//! a valid input; `seed.py` turns the recorded fixtures into it.

use recorder::protocol::{AnyDecoder, Decoder, Direction, MAX_CONNECTION_BYTES, Protocol};

pub fn run(protocol: Protocol, mut data: &[u8]) {
    let mut decoder = AnyDecoder::new(protocol);
    let mut out = Vec::new();
    while let Some((&header, rest)) = data.split_first() {
        let len = usize::from(header >> 1).min(rest.len());
        let (chunk, rest) = rest.split_at(len);
        let dir = if header & 1 == 0 {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        decoder.feed(dir, chunk, &mut out);
        assert!(decoder.buffered_bytes() <= MAX_CONNECTION_BYTES);
        data = rest;
    }
    decoder.finish(&mut out);
}
