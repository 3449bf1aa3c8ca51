//! Decoding of fixtures recorded from real servers (see tests/fixtures/sql/README.md).

use super::*;

/// One recorded chunk: its direction and bytes.
pub(super) type Chunk = (Direction, Vec<u8>);

/// Reads a fixture: records of direction (0 to server, 1 to client), u32 LE length, bytes.
pub(super) fn fixture(name: &str) -> Vec<Chunk> {
    let path = format!(
        "{}/tests/fixtures/sql/{name}.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut chunks = Vec::new();
    let mut rest = raw.as_slice();
    while let [dir, a, b, c, d, tail @ ..] = rest {
        let len = u32::from_le_bytes([*a, *b, *c, *d]) as usize;
        let dir = if *dir == 0 {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        chunks.push((dir, tail[..len].to_vec()));
        rest = &tail[len..];
    }
    assert!(rest.is_empty(), "{path}: trailing bytes");
    chunks
}

pub(super) fn decode(d: &mut impl Decoder, chunks: &[Chunk]) -> Vec<Output> {
    let mut out = Vec::new();
    for (dir, bytes) in chunks {
        d.feed(*dir, bytes, &mut out);
    }
    d.finish(&mut out);
    out
}

#[test]
fn dump() {
    for name in [
        "pg_psql_simple",
        "pg_tls",
        "pg_permission",
        "pg_cleartext_password",
        "pg_psycopg",
    ] {
        println!("== {name}");
        for o in decode(&mut PostgresDecoder::new(), &fixture(name)) {
            println!("{o:?}");
        }
    }
    for name in [
        "my_cli",
        "my_permission",
        "my_tls",
        "my_pymysql",
        "my_prepared",
    ] {
        println!("== {name}");
        for o in decode(&mut MysqlDecoder::new(), &fixture(name)) {
            println!("{o:?}");
        }
    }
}
