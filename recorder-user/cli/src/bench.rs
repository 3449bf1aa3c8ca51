//! `recorder bench-collector` (hidden): the collector's ingest throughput with hashing, chains,
//! Merkle tree, fsync and signed checkpoints, and the end-to-end figures through a real
//! collector over mutual TLS: throughput of a shipped spool and the latency from spool append to
//! an operator's watch stream under light load. Run it with a release build.
use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Args;
use tokio_stream::StreamExt as _;

use recorder_agent::{Shipper, spool::Spool};
use recorder_api::{
    pki::{self, Role},
    proto::v1::{WatchRequest, collector_client::CollectorClient, watch_event::Event},
    tls::ClientTls,
};
use recorder_collector::{CheckpointPolicy, CollectorPlan};
use recorder_store::Store;

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Records for the throughput runs.
    #[arg(long, default_value_t = 500_000)]
    pub records: u64,
    /// Records per batch (as the agent's shipper sends them).
    #[arg(long, default_value_t = 2000)]
    pub batch: usize,
    /// Samples for the latency run (one record every 10 ms).
    #[arg(long, default_value_t = 300)]
    pub samples: usize,
}

/// A realistic exec record line of about 330 bytes.
fn line(i: u64) -> Vec<u8> {
    format!(
        r#"{{"kind":"exec","time":"2026-11-28T10:{:02}:{:02}.{:09}Z","host":"bench-1","identity":"claude","session":"s{}","pid":{},"exec_id":"b1-{i}","argv":["git","commit","-m","change {i}"],"argv_truncated":false,"cgroup":"/agents/claude","cwd":"/home/agent/repo","exe":"/usr/bin/git","parent_exec_id":"b1-1","ppid":4242,"text":"git commit -m 'change {i}'","uid":1000}}"#,
        (i / 60_000_000) % 60,
        (i / 1_000_000) % 60,
        i % 1_000_000_000,
        i / 50,
        10_000 + i % 50_000
    )
    .into_bytes()
}

pub(crate) fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let tmp = std::env::temp_dir().join(format!("recorder-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let result = bench(args, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn bench(args: &BenchArgs, tmp: &Path) -> anyhow::Result<()> {
    store_ingest(args, tmp)?;
    through_collector(args, tmp)
}

/// 1. The store alone.
fn store_ingest(args: &BenchArgs, tmp: &Path) -> anyhow::Result<()> {
    let lines: Vec<Vec<u8>> = (1..=args.records).map(line).collect();
    let mut store = Store::open(
        &tmp.join("store"),
        64 << 20,
        CheckpointPolicy {
            every_records: 100_000,
            every: Duration::from_secs(10),
        },
    )?;
    let start = Instant::now();
    for (n, chunk) in lines.chunks(args.batch).enumerate() {
        store.append(
            "bench-1",
            "boot",
            1 + (n * args.batch) as u64,
            chunk,
            |_| Ok(()),
        )?;
    }
    store.checkpoint()?;
    let secs = start.elapsed().as_secs_f64();
    let bytes: usize = lines.iter().map(Vec::len).sum();
    println!(
        "store ingest (parse, SHA-256 leaf + chain, Merkle, fsync per {}-record batch, signed checkpoints every 100k): {} records in {:.2} s = {:.0} records/s ({:.1} MiB/s of lines)",
        args.batch,
        args.records,
        secs,
        args.records as f64 / secs,
        bytes as f64 / secs / 1_048_576.0
    );
    Ok(())
}

/// 2. and 3. Through a real collector over mutual TLS.
fn through_collector(args: &BenchArgs, tmp: &Path) -> anyhow::Result<()> {
    let pki_dir = tmp.join("pki");
    pki::init(&pki_dir, &[], 1)?;
    pki::issue(&pki_dir, Role::Agent, "bench-1", 1)?;
    pki::issue(&pki_dir, Role::Operator, "bench-op", 1)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let plan = CollectorPlan {
            listen: "127.0.0.1:0".parse()?,
            store: recorder_collector::StoreLocation::Embedded,
            data: tmp.join("data"),
            ca: pki_dir.join("ca.pem"),
            cert: pki_dir.join("collector.pem"),
            key: pki_dir.join("collector-key.pem"),
            rules: None,
            metrics_addr: None,
            segment_bytes: 64 << 20,
            checkpoint: CheckpointPolicy::default(),
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(recorder_collector::serve(
            plan,
            async {
                let _ = stop_rx.await;
            },
            move |a| {
                let _ = addr_tx.send(a);
            },
        ));
        let addr = addr_rx.await.context("the collector did not start")?;
        let url = format!("https://127.0.0.1:{}", addr.port());
        let client_tls = |name: &str| ClientTls {
            url: url.clone(),
            ca: pki_dir.join("ca.pem"),
            cert: pki_dir.join(format!("{name}.pem")),
            key: pki_dir.join(format!("{name}-key.pem")),
        };

        shipped_throughput(args, tmp, &client_tls).await?;
        watch_latency(args, tmp, &client_tls).await?;
        // The latency run's watch stream closed when it returned, so the collector stops at once.
        let _ = stop_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        Ok::<_, anyhow::Error>(())
    })
}

/// 2. Throughput: a full spool shipped.
async fn shipped_throughput(
    args: &BenchArgs,
    tmp: &Path,
    client_tls: &impl Fn(&str) -> ClientTls,
) -> anyhow::Result<()> {
    let (mut spool, _) = Spool::open(&tmp.join("spool"), "bench-1", 8 << 30)?;
    for i in 1..=args.records {
        spool.append(&line(i))?;
    }
    spool.flush()?;
    let until = spool.next_sequence();
    let shipper = Shipper::new(
        vec![client_tls("bench-1")],
        spool.reader(),
        "bench-1".into(),
        spool.boot().to_string(),
    );
    let start = Instant::now();
    shipper
        .run(Some(until), true, Some(Duration::from_mins(10)))
        .await?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "end to end (spool -> gRPC/mTLS -> store, acknowledged): {} records in {:.2} s = {:.0} records/s",
        until - 1,
        secs,
        (until - 1) as f64 / secs
    );
    Ok(())
}

/// 3. Latency: one record every 10 ms, from spool append to the watch stream.
async fn watch_latency(
    args: &BenchArgs,
    tmp: &Path,
    client_tls: &impl Fn(&str) -> ClientTls,
) -> anyhow::Result<()> {
    let channel = client_tls("bench-op").connect().await?;
    let mut watch = CollectorClient::new(channel)
        .watch(WatchRequest::default())
        .await?
        .into_inner();
    let (mut spool, _) = Spool::open(&tmp.join("spool2"), "bench-1", 1 << 30)?;
    let shipper = Arc::new(Shipper::new(
        vec![client_tls("bench-1")],
        spool.reader(),
        "bench-1".into(),
        spool.boot().to_string(),
    ));
    let bg = shipper.clone();
    tokio::spawn(async move { bg.run(None, false, None).await });
    let mut samples = Vec::with_capacity(args.samples);
    for i in 0..args.samples as u64 {
        let t0 = Instant::now();
        spool.append(&line(1_000_000_000 + i))?;
        spool.flush()?;
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), watch.next())
                .await
                .context("no watch event within 10 s")?;
            if let Some(Ok(ev)) = ev
                && matches!(ev.event, Some(Event::Record(_)))
            {
                break;
            }
        }
        samples.push(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "latency spool append -> fsync -> send -> store fsync -> watch ({} records, 1 per 10 ms): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    Ok(())
}
