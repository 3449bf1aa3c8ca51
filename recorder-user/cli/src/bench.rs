//! `recorder bench-collector` (hidden): the embedded store's ingest throughput with hashing,
//! chains, Merkle tree, fsync and signed checkpoints, and the end-to-end figures through real
//! collectors over mutual TLS, on either store (`--store`, `--collectors`): throughput of
//! full spools shipped by several streams at once, the latency from spool append to the
//! collector's acknowledgement under light load, and to an operator's watch stream. Run it
//! with a release build (`cargo xtask bench --only store` runs it on both stores).
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
use recorder_collector::{CheckpointPolicy, CollectorPlan, StoreLocation};
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
    /// `embedded` or a PostgreSQL connection string.
    #[arg(long, default_value = "embedded")]
    pub store: String,
    /// Collectors sharing the store (PostgreSQL).
    #[arg(long, default_value_t = 1)]
    pub collectors: usize,
    /// Agents shipping at once, each its own host and spool, spread over the collectors.
    #[arg(long, default_value_t = 3)]
    pub streams: usize,
    /// A collector configuration whose `[[export]]` tables the first collector runs; each
    /// exporter's delivery rate is printed after the throughput run.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

/// A realistic exec record line of about 330 bytes, of host bench-1.
fn line(i: u64) -> Vec<u8> {
    line_of("bench-1", i)
}

fn line_of(host: &str, i: u64) -> Vec<u8> {
    format!(
        r#"{{"kind":"exec","time":"2026-11-28T10:{:02}:{:02}.{:09}Z","host":"{host}","identity":"claude","session":"s{}","pid":{},"exec_id":"b1-{i}","argv":["git","commit","-m","change {i}"],"argv_truncated":false,"cgroup":"/agents/claude","cwd":"/home/agent/repo","exe":"/usr/bin/git","parent_exec_id":"b1-1","ppid":4242,"text":"git commit -m 'change {i}'","uid":1000}}"#,
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
    if args.store == "embedded" {
        store_ingest(args, tmp)?;
    }
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

/// 2. and 3. Through real collectors over mutual TLS.
fn through_collector(args: &BenchArgs, tmp: &Path) -> anyhow::Result<()> {
    let pki_dir = tmp.join("pki");
    pki::init(&pki_dir, &[], 1)?;
    for n in 1..=args.streams.max(1) {
        pki::issue(&pki_dir, Role::Agent, &format!("bench-{n}"), 1)?;
    }
    pki::issue(&pki_dir, Role::Operator, "bench-op", 1)?;
    let store = match args.store.as_str() {
        "embedded" => StoreLocation::Embedded,
        url if recorder_collector::is_postgres_url(url) => StoreLocation::Postgres {
            url: url.into(),
            ca: None,
        },
        other => anyhow::bail!("--store {other:?}: embedded or postgres://…"),
    };
    let collectors = if store == StoreLocation::Embedded {
        1
    } else {
        args.collectors.max(1)
    };
    let exports = match &args.config {
        Some(path) => recorder_export::config::parse(&std::fs::read_to_string(path)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        None => Vec::new(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut stops = Vec::new();
        let mut servers = Vec::new();
        let mut urls = Vec::new();
        for c in 0..collectors {
            let data = tmp.join(format!("data{c}"));
            if c > 0 {
                // The group signs with one key.
                std::fs::create_dir_all(&data)?;
                std::fs::copy(
                    tmp.join("data0")
                        .join(recorder_store::integrity::checkpoint::KEY_FILE),
                    data.join(recorder_store::integrity::checkpoint::KEY_FILE),
                )?;
            }
            let plan = CollectorPlan {
                exports: if c == 0 { exports.clone() } else { Vec::new() },
                ..CollectorPlan::new("127.0.0.1:0".parse()?, store.clone(), data, &pki_dir)
            };
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
            servers.push(tokio::spawn(recorder_collector::serve(
                plan,
                async {
                    let _ = stop_rx.await;
                },
                move |a| {
                    let _ = addr_tx.send(a);
                },
            )));
            stops.push(stop_tx);
            let addr = addr_rx.await.context("the collector did not start")?;
            urls.push(format!("https://127.0.0.1:{}", addr.port()));
        }
        // Stream n sends to collector n first, then the others in turn.
        let client_tls = |name: &str, first: usize| -> Vec<ClientTls> {
            (0..urls.len())
                .map(|k| ClientTls {
                    url: urls[(first + k) % urls.len()].clone(),
                    ca: pki_dir.join("ca.pem"),
                    cert: pki_dir.join(format!("{name}.pem")),
                    key: pki_dir.join(format!("{name}-key.pem")),
                })
                .collect()
        };
        let what = match &store {
            StoreLocation::Embedded => "embedded store".to_string(),
            StoreLocation::Postgres { .. } => format!("PostgreSQL, {collectors} collector(s)"),
        };
        let (start, total) = shipped_throughput(args, tmp, &what, &client_tls).await?;
        if !exports.is_empty() {
            let names: Vec<String> = exports.iter().map(|e| e.name.clone()).collect();
            exporter_rates(&tmp.join("data0"), &names, start, total).await?;
        }
        ack_latency(args, tmp, &what, &client_tls).await?;
        watch_latency(args, tmp, &client_tls).await?;
        for stop in stops {
            let _ = stop.send(());
        }
        for server in servers {
            let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        }
        Ok::<_, anyhow::Error>(())
    })
}

/// 2. Throughput: full spools, one per stream, shipped at once.
async fn shipped_throughput(
    args: &BenchArgs,
    tmp: &Path,
    what: &str,
    client_tls: &impl Fn(&str, usize) -> Vec<ClientTls>,
) -> anyhow::Result<(Instant, u64)> {
    let streams = args.streams.max(1);
    let per_stream = args.records / streams as u64;
    let mut shippers = Vec::new();
    for n in 1..=streams {
        let host = format!("bench-{n}");
        let (mut spool, _) = Spool::open(&tmp.join(format!("spool-{n}")), &host, 8 << 30)?;
        for i in 1..=per_stream {
            spool.append(&line_of(&host, i))?;
        }
        spool.flush()?;
        let until = spool.next_sequence();
        let shipper = Shipper::new(
            client_tls(&host, n - 1),
            spool.reader(),
            host,
            spool.boot().to_string(),
        );
        shippers.push((shipper, until));
    }
    let start = Instant::now();
    let runs = shippers
        .iter()
        .map(|(s, until)| s.run(Some(*until), true, Some(Duration::from_mins(10))));
    for done in futures::future::join_all(runs).await {
        done?;
    }
    let secs = start.elapsed().as_secs_f64();
    let total = per_stream * streams as u64;
    println!(
        "end to end, {what}, {streams} streams (spool -> gRPC/mTLS -> stored, acknowledged): {total} records in {secs:.2} s = {:.0} records/s",
        total as f64 / secs
    );
    Ok((start, total))
}

/// How fast each exporter delivered the throughput run's records: from the start of ingest
/// until its cursor passed them (all watched at once, so one finishing late does not hide
/// another's time).
async fn exporter_rates(
    data: &Path,
    names: &[String],
    start: Instant,
    total: u64,
) -> anyhow::Result<()> {
    let cursors = recorder_export::Exporter::cursor_dir(data);
    let mut done: Vec<Option<f64>> = vec![None; names.len()];
    while done.iter().any(Option::is_none) {
        for (name, done) in names.iter().zip(done.iter_mut()) {
            if done.is_some() {
                continue;
            }
            let next = recorder_export::cursor::Cursor::open(&cursors, name)
                .map_err(anyhow::Error::msg)?
                .position
                .next;
            if next >= total {
                *done = Some(start.elapsed().as_secs_f64());
            }
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_mins(10),
            "exporters did not deliver {total} records in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (name, secs) in names.iter().zip(done) {
        let secs = secs.unwrap_or_default();
        println!(
            "exporter {name}: {total} records delivered {secs:.2} s after ingest began = {:.0} records/s",
            total as f64 / secs
        );
    }
    Ok(())
}

/// 3a. Latency under light load: one record every 10 ms, from spool append to the collector's
/// acknowledgement (stored, and on PostgreSQL committed).
async fn ack_latency(
    args: &BenchArgs,
    tmp: &Path,
    what: &str,
    client_tls: &impl Fn(&str, usize) -> Vec<ClientTls>,
) -> anyhow::Result<()> {
    let (mut spool, _) = Spool::open(&tmp.join("spool-ack"), "bench-1", 1 << 30)?;
    let reader = spool.reader();
    let shipper = Arc::new(Shipper::new(
        client_tls("bench-1", 0),
        spool.reader(),
        "bench-1".into(),
        spool.boot().to_string(),
    ));
    let bg = shipper.clone();
    let task = tokio::spawn(async move { bg.run(None, false, None).await });
    let mut samples = Vec::with_capacity(args.samples);
    for i in 0..args.samples as u64 {
        let t0 = Instant::now();
        spool.append(&line(2_000_000_000 + i))?;
        spool.flush()?;
        let want = spool.next_sequence();
        while reader.acked_next() < want {
            if t0.elapsed() > Duration::from_secs(10) {
                anyhow::bail!("no acknowledgement within 10 s");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        samples.push(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "latency spool append -> stored and acknowledged, {what} ({} records, 1 per 10 ms): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    Ok(())
}

/// 3. Latency: one record every 10 ms, from spool append to the watch stream.
async fn watch_latency(
    args: &BenchArgs,
    tmp: &Path,
    client_tls: &impl Fn(&str, usize) -> Vec<ClientTls>,
) -> anyhow::Result<()> {
    let channel = client_tls("bench-op", 0)[0].connect().await?;
    let mut watch = CollectorClient::new(channel)
        .watch(WatchRequest::default())
        .await?
        .into_inner();
    let (mut spool, _) = Spool::open(&tmp.join("spool2"), "bench-1", 1 << 30)?;
    let shipper = Arc::new(Shipper::new(
        client_tls("bench-1", 0),
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
