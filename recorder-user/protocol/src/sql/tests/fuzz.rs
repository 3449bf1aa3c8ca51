//! Property tests: random and mutated fixture bytes in both directions never panic and keep
//! memory bounded; re-chunking never changes the outputs; a well-formed statement after
//! garbage is recovered where the protocol allows it. `PROTOCOL_FUZZ_CASES` sets the number of
//! cases per property (default 1024; the normal suite stays within seconds).

use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::*;

/// Per-connection memory bound of either decoder.
const MEMORY_BOUND: usize = MAX_CONNECTION_BYTES;

fn cases() -> u32 {
    std::env::var("PROTOCOL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

fn all_fixtures() -> Vec<(&'static str, Vec<Chunk>)> {
    PG_FIXTURES
        .iter()
        .chain(&MY_FIXTURES)
        .map(|n| (*n, fixture(n)))
        .collect()
}

fn dir_of(b: bool) -> Direction {
    if b {
        Direction::ToServer
    } else {
        Direction::ToClient
    }
}

/// Feeds chunks, checking the memory bound after each; returns the outputs.
fn checked_decode(d: &mut AnyDecoder, chunks: &[Chunk]) -> Vec<Output> {
    let mut out = Vec::new();
    for (dir, bytes) in chunks {
        d.feed(*dir, bytes, &mut out);
        let held = d.buffered_bytes();
        assert!(held <= MEMORY_BOUND, "holds {held} bytes");
    }
    d.finish(&mut out);
    out
}

/// Runs a property with the configured number of cases and prints its rate.
fn run<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let n = cases();
    let mut runner = TestRunner::new(Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    });
    let start = Instant::now();
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{name}: {e}");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fuzz {name}: {n} cases in {secs:.2} s, {:.0} cases/s",
        f64::from(n) / secs.max(1e-9)
    );
}

#[test]
fn random_bytes_never_panic_and_stay_bounded() {
    let chunk = (
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..600),
    );
    let strategy = (any::<bool>(), proptest::collection::vec(chunk, 0..40));
    run("random bytes", strategy, |(postgres, chunks)| {
        let chunks: Vec<Chunk> = chunks.into_iter().map(|(d, b)| (dir_of(d), b)).collect();
        let protocol = if postgres {
            Protocol::Postgresql
        } else {
            Protocol::Mysql
        };
        checked_decode(&mut AnyDecoder::new(protocol), &chunks);
        Ok(())
    });
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        chunk: usize,
        at: usize,
        bit: u8,
    },
    Insert {
        chunk: usize,
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        chunk: usize,
        at: usize,
        len: usize,
    },
    Duplicate {
        chunk: usize,
    },
    Drop {
        chunk: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let idx = 0..10_000usize;
    prop_oneof![
        (idx.clone(), idx.clone(), 0..8u8).prop_map(|(chunk, at, bit)| Mutation::Flip {
            chunk,
            at,
            bit
        }),
        (
            idx.clone(),
            idx.clone(),
            proptest::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(chunk, at, bytes)| Mutation::Insert { chunk, at, bytes }),
        (idx.clone(), idx.clone(), 1..32usize).prop_map(|(chunk, at, len)| Mutation::Delete {
            chunk,
            at,
            len
        }),
        idx.clone().prop_map(|chunk| Mutation::Duplicate { chunk }),
        idx.prop_map(|chunk| Mutation::Drop { chunk }),
    ]
}

fn apply(chunks: &mut Vec<Chunk>, m: &Mutation) {
    if chunks.is_empty() {
        return;
    }
    let n = chunks.len();
    match m {
        Mutation::Flip { chunk, at, bit } => {
            let b = &mut chunks[chunk % n].1;
            if !b.is_empty() {
                let i = at % b.len();
                b[i] ^= 1 << bit;
            }
        }
        Mutation::Insert { chunk, at, bytes } => {
            let b = &mut chunks[chunk % n].1;
            let i = at % (b.len() + 1);
            b.splice(i..i, bytes.iter().copied());
        }
        Mutation::Delete { chunk, at, len } => {
            let b = &mut chunks[chunk % n].1;
            let i = at % (b.len() + 1);
            let end = (i + len).min(b.len());
            b.drain(i..end);
        }
        Mutation::Duplicate { chunk } => {
            let c = chunks[chunk % n].clone();
            chunks.insert(chunk % n, c);
        }
        Mutation::Drop { chunk } => {
            chunks.remove(chunk % n);
        }
    }
}

#[test]
fn mutated_fixtures_never_panic_and_stay_bounded() {
    let fixtures = all_fixtures();
    let strategy = (
        0..fixtures.len(),
        proptest::collection::vec(mutation(), 1..8),
    );
    run("mutated fixtures", strategy, |(which, mutations)| {
        let (name, chunks) = &fixtures[which];
        let mut chunks = chunks.clone();
        for m in &mutations {
            apply(&mut chunks, m);
        }
        checked_decode(&mut decoder_for(name), &chunks);
        Ok(())
    });
}

#[test]
fn random_rechunking_gives_identical_outputs() {
    let fixtures = all_fixtures();
    let expected: Vec<_> = fixtures.iter().map(|(n, _)| decode_fixture(n)).collect();
    let strategy = (
        0..fixtures.len(),
        proptest::collection::vec(1..200usize, 1..64),
    );
    run("rechunking", strategy, |(which, sizes)| {
        let (name, chunks) = &fixtures[which];
        let rechunked = crate::rechunk(chunks, &sizes);
        prop_assert_eq!(
            &decode(&mut decoder_for(name), &rechunked),
            &expected[which]
        );
        Ok(())
    });
}

#[test]
fn statements_after_garbage_are_recovered() {
    let pg_chunks = fixture("pg_psql_simple");
    let pg_expected = summary(&decode_fixture("pg_psql_simple"))
        .into_iter()
        .map(|(t, s, r)| (t.to_string(), s, r.to_string()))
        .collect::<Vec<_>>();
    let my_chunks = fixture("my_cli");
    let my_expected = summary(&decode_fixture("my_cli"))
        .into_iter()
        .map(|(t, s, r)| (t.to_string(), s, r.to_string()))
        .collect::<Vec<_>>();
    // PostgreSQL: bytes that cannot start a message, between any two client chunks after login.
    // MySQL: a well-framed packet of garbage that is no command (its length keeps the framing).
    let garbage = proptest::collection::vec(0x80..=0xffu8, 1..2000);
    let strategy = (any::<bool>(), 6..pg_chunks.len(), garbage);
    run("recovery", strategy, |(postgres, at, garbage)| {
        let (chunks, expected) = if postgres {
            (&pg_chunks, &pg_expected)
        } else {
            (&my_chunks, &my_expected)
        };
        let at = 3 + at % (chunks.len() - 3);
        let mut spliced = chunks.clone();
        let inserted = if postgres {
            garbage
        } else {
            let mut p = (garbage.len() as u32).to_le_bytes()[..3].to_vec();
            p.push(0);
            p.push(0xee);
            p.extend_from_slice(&garbage[1..]);
            p
        };
        if chunks[at].0 != Direction::ToServer {
            return Ok(());
        }
        spliced.insert(at, (Direction::ToServer, inserted));
        let out = decode(
            &mut decoder_for(if postgres { "pg_" } else { "my_" }),
            &spliced,
        );
        let got: Vec<_> = summary(&out)
            .into_iter()
            .map(|(t, s, r)| (t.to_string(), s, r.to_string()))
            .collect();
        prop_assert_eq!(&got, expected);
        Ok(())
    });
}

/// Decoding speed over the fixtures, for the record (`--release --ignored --nocapture`).
#[test]
#[ignore = "a measurement, not a check"]
fn decode_throughput() {
    for (name, chunks) in all_fixtures() {
        let bytes: usize = chunks.iter().map(|c| c.1.len()).sum();
        let rounds = 2000;
        let start = Instant::now();
        let mut events = 0;
        for _ in 0..rounds {
            events += sql(&decode(&mut decoder_for(name), &chunks)).len();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "throughput {name}: {:.1} MB/s, {:.0} statements/s",
            (bytes * rounds) as f64 / secs / 1e6,
            events as f64 / secs
        );
    }
}
