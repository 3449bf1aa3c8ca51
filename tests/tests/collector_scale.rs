//! The collector at a million records, on both stores: its memory does not grow with the log,
//! a proof costs the same at 10^5 and 10^6 records and verifies against the signed checkpoints
//! after a restart, and `verify` runs while ingest goes on. Figures are printed (run with
//! `--nocapture`); the assertions are what a user checks: memory within a few MiB, proofs
//! valid, verify passing, records stored during the verify.
mod collector_support;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use collector_support::*;
use recorder_api::{
    proto::v1::{
        ConsistencyProofRequest, ExportRequest, GetCheckpointRequest, InclusionProofRequest,
        collector_client::CollectorClient,
    },
    tls::ClientTls,
};
use recorder_store::{
    integrity::{Hash, merkle},
    segment::Entry,
};
use recorder_tests::postgres::Postgres;

/// `n` records of `host` in 100 sessions (agents are few; their sessions live long).
fn lines(host: &str, from: usize, n: usize) -> Vec<String> {
    (from..from + n)
        .map(|i| {
            format!(
                r#"{{"kind":"exec","time":"2026-11-28T10:{:02}:{:02}.{:09}Z","host":"{host}","identity":"claude","session":"s{}","pid":{},"exec_id":"x{i}","argv":["echo","{i}"],"text":"echo {i}"}}"#,
                (i / 60_000) % 60,
                (i / 1000) % 60,
                i % 1_000_000_000,
                i % 100,
                i + 1
            )
        })
        .collect()
}

fn ship(pki: &Pki, dir: &Path, name: &str, host: &str, lines: &[String], port: u16) -> Child {
    let file = dir.join(format!("{name}.jsonl"));
    write_lines(&file, lines);
    if host != "web-1" {
        pki.issue("agent", host);
    }
    Command::new(recorder())
        .args(["ship", "--jsonl", file.to_str().unwrap(), "--spool"])
        .arg(dir.join(format!("{host}-spool")))
        .args([
            "--timeout",
            "300",
            "--collector",
            &format!("https://127.0.0.1:{port}"),
        ])
        .args(["--tls-ca", &pki.path("ca.pem")])
        .args(["--tls-cert", &pki.path(&format!("{host}.pem"))])
        .args(["--tls-key", &pki.path(&format!("{host}-key.pem"))])
        .env("RECORDER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn done(mut child: Child) {
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "ship failed: {}",
        read_all(child.stderr.take().unwrap())
    );
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn operator(pki: &Pki, port: u16) -> ClientTls {
    ClientTls {
        url: format!("https://127.0.0.1:{port}"),
        ca: pki.dir.join("ca.pem"),
        cert: pki.dir.join("alice.pem"),
        key: pki.dir.join("alice-key.pem"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Records in the log, as the collector reports them (placed records, on PostgreSQL).
fn stored(pki: &Pki, port: u16) -> u64 {
    runtime().block_on(async {
        let mut c = CollectorClient::new(operator(pki, port).connect().await.unwrap());
        // Counting by export would read the whole log: look for the end instead.
        let mut lo = 0u64;
        let mut hi = 1u64 << 24;
        while lo < hi {
            let mid = (lo + hi) / 2;
            let mut r = c
                .export(ExportRequest {
                    from_index: mid,
                    limit: 1,
                })
                .await
                .unwrap()
                .into_inner();
            if r.message().await.unwrap().is_some() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    })
}

fn wait_stored(pki: &Pki, port: u16, n: u64) {
    assert!(
        wait_for(Duration::from_secs(120), || stored(pki, port) >= n),
        "the log did not reach {n} records"
    );
}

/// The latest checkpoint, and the mean time of one inclusion proof (asked over gRPC and
/// checked against it) for `samples` records spread over the log; one record's leaf is also
/// recomputed from its stored line.
fn proofs(pki: &Pki, port: u16, samples: u64) -> (u64, Hash, Duration) {
    runtime().block_on(async {
        let mut c = CollectorClient::new(operator(pki, port).connect().await.unwrap());
        let cp = c
            .get_checkpoint(GetCheckpointRequest {})
            .await
            .unwrap()
            .into_inner();
        let root: Hash = cp.root.as_slice().try_into().unwrap();
        let size = cp.tree_size;
        let mut total = Duration::ZERO;
        for k in 0..samples {
            let index = (k * 7919 * 104_729) % size;
            let start = Instant::now();
            let p = c
                .get_inclusion_proof(InclusionProofRequest {
                    index,
                    tree_size: size,
                })
                .await
                .unwrap()
                .into_inner();
            total += start.elapsed();
            let leaf: Hash = p.leaf_hash.as_slice().try_into().unwrap();
            let path: Vec<Hash> = p
                .path
                .iter()
                .map(|h| h.as_slice().try_into().unwrap())
                .collect();
            assert!(
                merkle::verify_inclusion(&leaf, index, size, &path, &root),
                "proof of {index} in {size}"
            );
            if k == 0 {
                let r = c
                    .export(ExportRequest {
                        from_index: index,
                        limit: 1,
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .message()
                    .await
                    .unwrap()
                    .unwrap();
                let entry = Entry {
                    index,
                    host: &r.host,
                    boot: &r.boot,
                    sequence: r.sequence,
                    prev: r.prev.as_slice().try_into().unwrap(),
                    line: &r.line,
                };
                assert_eq!(entry.encode_frame(&mut Vec::new()), leaf, "record {index}");
            }
        }
        (size, root, total / samples as u32)
    })
}

fn consistent(pki: &Pki, port: u16, old: (u64, Hash), new: (u64, Hash)) {
    runtime().block_on(async {
        let mut c = CollectorClient::new(operator(pki, port).connect().await.unwrap());
        let p = c
            .get_consistency_proof(ConsistencyProofRequest {
                old_size: old.0,
                new_size: new.0,
            })
            .await
            .unwrap()
            .into_inner();
        let path: Vec<Hash> = p
            .path
            .iter()
            .map(|h| h.as_slice().try_into().unwrap())
            .collect();
        assert!(
            merkle::verify_consistency(old.0, new.0, &old.1, &new.1, &path),
            "consistency {} -> {}",
            old.0,
            new.0
        );
    });
}

/// The million-record run on one store; `extra` are the collector's store flags. One store at a
/// time: the rates would otherwise measure two runs sharing the machine.
fn at_a_million(name: &str, extra: &[&str]) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let data = tmp.path().join("data");
    let mut flags = vec!["--checkpoint-secs", "1"];
    flags.extend(extra);
    let port = free_port();
    let col = Collector::start(&pki, &data, port, &flags);

    done(ship(
        &pki,
        tmp.path(),
        "first",
        "web-1",
        &lines("web-1", 0, 100_000),
        port,
    ));
    wait_stored(&pki, port, 100_000);
    std::thread::sleep(Duration::from_secs(2));
    let rss_100k = rss_kib(col.child.id());
    let (size_a, root_a, proof_100k) = proofs(&pki, port, 200);

    done(ship(
        &pki,
        tmp.path(),
        "rest",
        "web-1",
        &lines("web-1", 100_000, 900_000),
        port,
    ));
    wait_stored(&pki, port, 1_000_000);
    std::thread::sleep(Duration::from_secs(2));
    let rss_1m = rss_kib(col.child.id());

    // After a restart: proofs from what is stored, against the signed checkpoints.
    col.stop();
    let started = Instant::now();
    let col = Collector::start(&pki, &data, port, &flags);
    let restart = started.elapsed();
    let (size_b, root_b, proof_1m) = proofs(&pki, port, 200);
    assert_eq!(size_b, 1_000_000);
    consistent(&pki, port, (size_a, root_a), (size_b, root_b));

    // verify while another host sends: the rate outside and during the verify.
    let rate = |from: u64, window: Duration| {
        let start = Instant::now();
        std::thread::sleep(window);
        (stored(&pki, port) - from) as f64 / start.elapsed().as_secs_f64()
    };
    let sender = ship(
        &pki,
        tmp.path(),
        "during",
        "web-2",
        &lines("web-2", 0, 600_000),
        port,
    );
    assert!(wait_for(Duration::from_secs(60), || stored(&pki, port) > 1_020_000));
    let outside = rate(stored(&pki, port), Duration::from_secs(1));
    let before = stored(&pki, port);
    let started = Instant::now();
    let mut args = vec!["verify".to_string()];
    args.extend(pki.client_args(port, "alice"));
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let verify_took = started.elapsed();
    let during = (stored(&pki, port) - before) as f64 / verify_took.as_secs_f64();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    done(sender);

    eprintln!(
        "{name}: RSS {:.1} MiB at 10^5 records, {:.1} MiB at 10^6; one inclusion proof over gRPC {:?} at 10^5, {:?} at 10^6; restart with 10^6 records {:?}; verify of {} took {:?}: ingest {:.0} records/s outside, {:.0} records/s during",
        rss_100k as f64 / 1024.0,
        rss_1m as f64 / 1024.0,
        proof_100k,
        proof_1m,
        restart,
        stdout(&o).trim(),
        verify_took,
        outside,
        during
    );
    assert!(
        rss_1m < rss_100k + 8 * 1024,
        "{name}: RSS grew from {rss_100k} KiB to {rss_1m} KiB"
    );
    assert!(during > 0.0, "{name}: nothing was stored while verify ran");
    col.stop();
}

#[test]
fn embedded_store_at_a_million_records() {
    at_a_million("embedded", &[]);
}

#[test]
fn postgres_store_at_a_million_records() {
    let pg = Postgres::start();
    pg.psql_admin("CREATE DATABASE recorder");
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/recorder?sslmode=disable",
        pg.port
    );
    at_a_million("postgres", &["--store", &url]);
}
