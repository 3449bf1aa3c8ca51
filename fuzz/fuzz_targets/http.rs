#![no_main]

//! The HTTP decoders. The first byte picks a mode; the rest is records as in `common.rs` (one
//! header byte: bit 0 direction, bits 1..8 length; then that many bytes):
//! - 0: HTTP/1.1, records as they are;
//! - 1: HTTP/2, the client preface sent first, records as they are (raw frames);
//! - 2: HTTP/2, each record the header block of one HEADERS frame (client records on streams
//!   1, 3, 5, ..., server records answering them in turn), so HPACK gets arbitrary blocks;
//! - 3: HTTP/2 without the preface.

mod common;

use recorder_protocol::Direction;
use recorder_protocol::http::{HttpConn, MAX_CONNECTION_BYTES, Version};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn headers_frame(stream: u32, block: &[u8]) -> Vec<u8> {
    let mut f = (block.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[0x1, 0x4]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(block);
    f
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let mode = mode % 4;
    let version = if mode == 0 {
        Version::Http1
    } else {
        Version::Http2
    };
    let mut conn = HttpConn::new(version);
    let mut out = Vec::new();
    if mode == 1 || mode == 2 {
        conn.feed(Direction::ToServer, PREFACE, &mut out);
    }
    let (mut next_request, mut next_response) = (1u32, 1u32);
    for (dir, chunk) in common::records(data) {
        if mode == 2 {
            let stream = match dir {
                Direction::ToServer => &mut next_request,
                Direction::ToClient => &mut next_response,
            };
            conn.feed(dir, &headers_frame(*stream, chunk), &mut out);
            *stream = stream.wrapping_add(2) & 0x7fff_ffff;
        } else {
            conn.feed(dir, chunk, &mut out);
        }
        assert!(conn.buffered_bytes() <= MAX_CONNECTION_BYTES);
    }
    conn.flush(&mut out);
});
