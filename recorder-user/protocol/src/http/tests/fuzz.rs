//! Property tests: random and mutated bytes never panic and keep memory bounded; re-chunking a
//! valid stream never changes its outputs. `PROTOCOL_FUZZ_CASES` sets the number of cases per
//! property (default 1024).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::super::{hpack, huffman};
use super::*;

fn cases() -> u32 {
    std::env::var("PROTOCOL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

fn check<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{name}: {e}");
    }
}

fn dir_of(to_server: bool) -> Direction {
    if to_server { ToServer } else { ToClient }
}

/// Valid streams of each version.
fn corpus() -> Vec<(Version, Vec<Chunk>)> {
    vec![
        (Version::Http1, h1::sample()),
        (Version::Http2, h2::sample()),
        (Version::Http2, real_h2::capture()),
    ]
}

#[test]
fn random_bytes_never_panic_and_stay_bounded() {
    let chunk = (
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..600),
    );
    let strategy = (
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(chunk, 0..40),
    );
    check("random bytes", strategy, |(h2, preface, chunks)| {
        let mut chunks: Vec<Chunk> = chunks.into_iter().map(|(d, b)| (dir_of(d), b)).collect();
        if preface {
            // Get past the preface (HTTP/2) or the request line (HTTP/1.1) more often.
            let start: &[u8] = if h2 {
                H2_PREFACE
            } else {
                b"GET / HTTP/1.1\r\n"
            };
            chunks.insert(0, (ToServer, start.to_vec()));
        }
        run(if h2 { Version::Http2 } else { Version::Http1 }, &chunks);
        Ok(())
    });
}

/// Byte flips, inserts and deletes in valid streams.
#[test]
fn mutated_streams_never_panic_and_stay_bounded() {
    let corpus = corpus();
    let edit = (any::<usize>(), any::<usize>(), any::<u8>(), 0..3u8);
    let strategy = (0..corpus.len(), proptest::collection::vec(edit, 1..8));
    check("mutated streams", strategy, |(which, edits)| {
        let (version, chunks) = &corpus[which];
        let mut chunks = chunks.clone();
        for (c, at, byte, kind) in edits {
            let n = chunks.len();
            let bytes = &mut chunks[c % n].1;
            let i = at % (bytes.len() + 1);
            match kind {
                0 if i < bytes.len() => bytes[i] ^= byte.max(1),
                1 => bytes.insert(i, byte),
                _ if i < bytes.len() => {
                    bytes.remove(i);
                }
                _ => {}
            }
        }
        run(*version, &chunks);
        Ok(())
    });
}

#[test]
fn random_rechunking_gives_identical_outputs() {
    let corpus = corpus();
    let expected: Vec<_> = corpus.iter().map(|(v, c)| run(*v, c)).collect();
    for out in &expected {
        assert!(notices(out).is_empty() && !out.is_empty(), "{out:?}");
    }
    let strategy = (
        0..corpus.len(),
        proptest::collection::vec(1..64usize, 1..64),
    );
    check("rechunking", strategy, |(which, sizes)| {
        let (version, chunks) = &corpus[which];
        let pieces = crate::rechunk(chunks, &sizes);
        prop_assert_eq!(&run(*version, &pieces), &expected[which]);
        Ok(())
    });
}

#[test]
fn hpack_random_blocks_never_panic() {
    let strategy = proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8);
    check("hpack blocks", strategy, |blocks| {
        let mut d = hpack::Decoder::new();
        for b in blocks {
            let mut n = 0usize;
            if d.decode(&b, |name, value| n += name.len() + value.len())
                .is_err()
            {
                break;
            }
            prop_assert!(d.table_size() <= hpack::MAX_TABLE_SIZE);
            prop_assert!(n <= hpack::MAX_HEADER_LIST_SIZE);
        }
        Ok(())
    });
}

#[test]
fn huffman_round_trips() {
    let strategy = proptest::collection::vec(any::<u8>(), 0..200);
    check("huffman", strategy, |bytes| {
        let mut out = Vec::new();
        huffman::decode(&huffman::encode(&bytes), &mut out).unwrap();
        // Random input decodes or fails, never panics.
        let _ = huffman::decode(&bytes, &mut Vec::new());
        prop_assert_eq!(out, bytes);
        Ok(())
    });
}
