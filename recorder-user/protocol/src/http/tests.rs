//! Decoding of hand-built HTTP/1.1 and HTTP/2 streams, and of a real HTTP/2 exchange.

use super::*;

mod fuzz;
mod h1;
mod h2;
mod real_h2;

pub(super) use Direction::{ToClient, ToServer};

/// One chunk of a connection.
pub(super) type Chunk = (Direction, Vec<u8>);

/// Feeds every chunk, then flushes.
pub(super) fn run(version: Version, chunks: &[Chunk]) -> Vec<HttpOutput> {
    let mut conn = HttpConn::new(version);
    let mut out = Vec::new();
    for (dir, bytes) in chunks {
        conn.feed(*dir, bytes, &mut out);
        assert!(conn.buffered_bytes() <= MAX_CONNECTION_BYTES);
    }
    conn.flush(&mut out);
    out
}

/// Like [`run`], with every chunk cut into pieces of `size` bytes.
pub(super) fn run_split(version: Version, chunks: &[Chunk], size: usize) -> Vec<HttpOutput> {
    let pieces: Vec<Chunk> = chunks
        .iter()
        .flat_map(|(d, b)| b.chunks(size).map(|c| (*d, c.to_vec())))
        .collect();
    run(version, &pieces)
}

/// An exchange as (method, target, status), for compact assertions.
pub(super) fn triples(out: &[HttpOutput]) -> Vec<(String, String, Option<u16>)> {
    out.iter()
        .filter_map(|o| match o {
            HttpOutput::Exchange(e) => Some((e.method.clone(), e.target.clone(), e.status)),
            HttpOutput::Notice(_) => None,
        })
        .collect()
}

pub(super) fn notices(out: &[HttpOutput]) -> Vec<&Notice> {
    out.iter()
        .filter_map(|o| match o {
            HttpOutput::Notice(n) => Some(n),
            HttpOutput::Exchange(_) => None,
        })
        .collect()
}

pub(super) fn t(method: &str, target: &str, status: Option<u16>) -> (String, String, Option<u16>) {
    (method.to_string(), target.to_string(), status)
}

#[test]
fn guess_rules() {
    let preface = H2_PREFACE;
    assert_eq!(guess(ToServer, preface), Guess::Http2);
    assert_eq!(
        guess(ToServer, &[preface, b"\0\0\0\x04"].concat()),
        Guess::Http2
    );
    assert_eq!(guess(ToServer, &preface[..10]), Guess::NeedMore);
    assert_eq!(guess(ToServer, b""), Guess::NeedMore);
    assert_eq!(guess(ToServer, b"P"), Guess::NeedMore);
    assert_eq!(guess(ToServer, b"PATC"), Guess::NeedMore);
    assert_eq!(guess(ToServer, b"GET "), Guess::NeedMore);
    assert_eq!(guess(ToServer, b"GET /api HTTP/1.1\r\n"), Guess::Http1);
    assert_eq!(guess(ToServer, b"OPTIONS * HTTP/1.1"), Guess::Http1);
    assert_eq!(guess(ToServer, b"GET http://x/ HTTP/1.1"), Guess::Http1);
    assert_eq!(guess(ToServer, b"DELETE /x"), Guess::Http1);
    assert_eq!(guess(ToServer, b"GET  /"), Guess::NotHttp);
    assert_eq!(guess(ToServer, b"GETS /"), Guess::NotHttp);
    assert_eq!(guess(ToServer, b"PRI * HTTP/1.1"), Guess::NotHttp);
    // TLS ClientHello, a PostgreSQL startup packet, a MySQL handshake response.
    assert_eq!(guess(ToServer, &[0x16, 3, 1, 2, 0, 1]), Guess::NotHttp);
    assert_eq!(
        guess(ToServer, &[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]),
        Guess::NotHttp
    );
    assert_eq!(
        guess(ToServer, &[0x55, 0, 0, 1, 0x8d, 0xa6]),
        Guess::NotHttp
    );
    assert_eq!(guess(ToClient, b"HTTP/1.1 200 OK\r\n"), Guess::NeedMore);
    assert_eq!(guess(ToClient, b"HTT"), Guess::NeedMore);
    assert_eq!(guess(ToClient, b"\0\0\x12\x04\0\0\0\0\0"), Guess::NotHttp);
}

#[test]
fn text_bounds() {
    assert_eq!(text_of(b"abc", 2), ("ab".to_string(), true));
    // Invalid UTF-8 becomes U+FFFD (3 bytes) and the bound still holds.
    let (s, cut) = text_of(&[0xff; 10], 10);
    assert!(s.len() <= 10 && !cut);
}
