//! The shipper: streams the spool to the collector in batches over one Ingest stream, with a
//! window of batches in flight, and deletes from the spool only what the collector acknowledged
//! as durably stored. Any failure closes the stream and reconnects with backoff; it resumes from
//! the first unacknowledged record (the collector drops what it already has).
//!
//! Given several collectors (a group on one database), it sends to one and, when that one
//! fails, to the next at once; it backs off only once every one failed in turn. The group
//! stores each (host, boot, sequence) once whichever collector receives it, so the spool's
//! acknowledgements stay exactly-once across collectors.
//!
//! [`ship_file`] sends a JSON Lines file of records the same way (`recorder ship`).
use std::{
    io::BufRead as _,
    path::{Path, PathBuf},
    time::Duration,
};

use recorder_api::{
    metrics::{Counter, Registry},
    proto::v1::{IngestBatch, collector_client::CollectorClient},
    status::code_name,
    tls::{self, ClientTls, ConnectError, TlsError},
};
use recorder_record::Record;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use crate::spool::{Spool, SpoolError, SpoolReader};

const WINDOW: usize = 8;
const BATCH_RECORDS: usize = 2000;
const BATCH_BYTES: usize = 2 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("the collector refused: {}: {}", code_name(.0.code()), .0.message())]
    Refused(Status),
    #[error("the collector failed: {}: {}{}", code_name(.0.code()), .0.message(), tls_hint(.0))]
    Failed(Status),
    #[error("the collector closed the stream")]
    Closed,
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("gave up after {0:?}; records remain in the spool")]
    Timeout(Duration),
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {why}")]
    Input {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("no host: give --host, or --jsonl with records in it")]
    NoHost,
    #[error("cannot start the shipper's runtime: {0}")]
    Runtime(std::io::Error),
}

impl ShipError {
    /// Errors that retrying with the same certificate and records cannot fix.
    pub fn is_refusal(&self) -> bool {
        matches!(self, ShipError::Refused(_))
    }
}

fn tls_hint(status: &Status) -> String {
    let chain = std::error::Error::source(status)
        .map(tls::error_chain)
        .unwrap_or_default();
    match tls::explain_tls(&chain) {
        Some(plain) => format!(" ({plain}: {chain})"),
        None if chain.is_empty() => String::new(),
        None => format!(" ({chain})"),
    }
}

fn classify(status: Status) -> ShipError {
    match status.code() {
        Code::PermissionDenied | Code::Unauthenticated | Code::InvalidArgument => {
            ShipError::Refused(status)
        }
        _ => ShipError::Failed(status),
    }
}

/// Sends a spool to a collector, or to the first that answers of a group.
pub struct Shipper {
    targets: Vec<ClientTls>,
    /// The collector sent to now (an index into `targets`).
    current: std::sync::atomic::AtomicUsize,
    reader: SpoolReader,
    host: String,
    boot: String,
    errors: Counter,
}

impl Shipper {
    /// `targets`: the collectors, in the order they are tried (at least one).
    pub fn new(targets: Vec<ClientTls>, reader: SpoolReader, host: String, boot: String) -> Self {
        assert!(!targets.is_empty(), "a shipper needs a collector");
        let errors = Registry::global().counter(
            "recorder_send_errors_total",
            "Failed connections or streams to the collector.",
            &[],
        );
        Self {
            targets,
            current: std::sync::atomic::AtomicUsize::new(0),
            reader,
            host,
            boot,
            errors,
        }
    }

    /// Sends until everything before `until` (a sequence) is acknowledged, or forever with
    /// `None`. Retries with backoff; a refusal ends the run when `stop_on_refusal` is set.
    pub async fn run(
        &self,
        until: Option<u64>,
        stop_on_refusal: bool,
        deadline: Option<Duration>,
    ) -> Result<(), ShipError> {
        let start = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(200);
        // Collectors that failed in a row: back off only once each of them did.
        let mut failed_in_turn = 0usize;
        loop {
            let before = self.reader.acked_next();
            match self.session(until).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.errors.inc();
                    if stop_on_refusal && e.is_refusal() {
                        return Err(e);
                    }
                    if self.reader.acked_next() > before {
                        backoff = Duration::from_millis(200);
                        failed_in_turn = 0;
                    }
                    failed_in_turn += 1;
                    if self.targets.len() > 1 {
                        let from = self.target().url.clone();
                        let next = self.fail_over();
                        tracing::warn!(error = %e, from = %from, to = %next, depth = self.reader.depth(), "sending to the collector failed; trying the next one");
                        if failed_in_turn < self.targets.len() {
                            continue;
                        }
                        failed_in_turn = 0;
                    }
                    if let Some(limit) = deadline
                        && start.elapsed() + backoff > limit
                    {
                        tracing::error!(error = %e, "sending to the collector failed");
                        return Err(ShipError::Timeout(limit));
                    }
                    tracing::warn!(error = %e, retry_in = ?backoff, depth = self.reader.depth(), "sending to the collector failed; records stay in the spool");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    fn target(&self) -> &ClientTls {
        let at = self.current.load(std::sync::atomic::Ordering::Relaxed);
        &self.targets[at % self.targets.len()]
    }

    /// Moves on to the next collector; returns its URL.
    fn fail_over(&self) -> String {
        let at = self.current.load(std::sync::atomic::Ordering::Relaxed);
        let next = (at + 1) % self.targets.len();
        self.current
            .store(next, std::sync::atomic::Ordering::Relaxed);
        self.targets[next].url.clone()
    }

    fn done(&self, until: Option<u64>) -> bool {
        until.is_some_and(|u| self.reader.acked_next() >= u)
    }

    /// One connection and stream.
    async fn session(&self, until: Option<u64>) -> Result<(), ShipError> {
        if self.done(until) {
            return Ok(());
        }
        let channel = self.target().connect().await?;
        let mut client = CollectorClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
        let (tx, rx) = mpsc::channel::<IngestBatch>(WINDOW);
        // The first batch goes before the call so the stream opens with data.
        let mut cursor = self.reader.cursor();
        let mut in_flight = 0usize;
        let mut pending_first = Vec::new();
        if let Some((first, lines)) = self.reader.read(&mut cursor, BATCH_RECORDS, BATCH_BYTES)? {
            pending_first.push(self.batch(first, lines));
        }
        for b in pending_first {
            tx.send(b).await.map_err(|_| ShipError::Closed)?;
            in_flight += 1;
        }
        let mut acks = client
            .ingest(ReceiverStream::new(rx))
            .await
            .map_err(classify)?
            .into_inner();
        let notify = self.reader.notify();
        loop {
            if self.done(until) && in_flight == 0 {
                return Ok(());
            }
            while in_flight < WINDOW {
                let Some((first, lines)) =
                    self.reader.read(&mut cursor, BATCH_RECORDS, BATCH_BYTES)?
                else {
                    break;
                };
                tx.send(self.batch(first, lines))
                    .await
                    .map_err(|_| ShipError::Closed)?;
                in_flight += 1;
            }
            tokio::select! {
                msg = acks.message() => match msg {
                    Ok(Some(ack)) => {
                        in_flight = in_flight.saturating_sub(1);
                        if ack.stored_any {
                            self.reader.ack(ack.acked_sequence)?;
                        }
                    }
                    Ok(None) => return Err(ShipError::Closed),
                    Err(status) => return Err(classify(status)),
                },
                () = notify.notified(), if in_flight < WINDOW => {}
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }

    fn batch(&self, first: u64, lines: Vec<Vec<u8>>) -> IngestBatch {
        IngestBatch {
            host: self.host.clone(),
            boot: self.boot.clone(),
            first_sequence: first,
            lines,
        }
    }

    /// Ships forever on a thread and runtime of its own (the agent's sinks are built before
    /// its runtime starts, and shipping must not compete with the ring-buffer reader).
    pub(crate) fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name("recorder-ship".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the shipper's runtime; records stay in the spool");
                    return;
                }
            };
            let _ = runtime.block_on(self.run(None, false, None));
        })
    }
}

/// What `recorder ship` sends, and how.
#[derive(Debug, Clone)]
pub struct ShipFile {
    /// The JSON Lines file of records; `None` finishes what an earlier run left in the spool.
    pub jsonl: Option<PathBuf>,
    pub spool: PathBuf,
    pub spool_max_mib: u64,
    /// The host of the batches (default: the records' `host`).
    pub host: Option<String>,
    /// Give up after failing to reach the collector for this long (`None`: keep trying).
    pub timeout: Option<Duration>,
    /// The collectors, tried in this order (at least one).
    pub tls: Vec<ClientTls>,
}

/// What [`ship_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shipped {
    /// Lines read from the file.
    pub records: usize,
    /// Lines the spool had no room for (a `loss` record counts them).
    pub dropped: u64,
}

/// Appends the lines of `job.jsonl` (every one a record of one host) to the spool, then sends
/// until the collector acknowledged everything in it. Run again with the same spool and no file
/// after an interruption: nothing is sent twice.
pub fn ship_file(job: &ShipFile) -> Result<Shipped, ShipError> {
    let mut lines = Vec::new();
    let mut host = job.host.clone();
    if let Some(path) = &job.jsonl {
        lines = read_records(path, &mut host)?;
    }
    let host_file = job.spool.join("host");
    let host = match host {
        Some(h) => h,
        None => std::fs::read_to_string(&host_file)
            .map(|s| s.trim().to_string())
            .map_err(|_| ShipError::NoHost)?,
    };
    let (mut spool, recovered) =
        Spool::open(&job.spool, &host, job.spool_max_mib.max(1) * 1024 * 1024)?;
    for problem in &recovered {
        tracing::warn!("spool damaged, recovered what was valid: {problem}");
    }
    std::fs::write(&host_file, format!("{host}\n")).map_err(|source| ShipError::Io {
        what: "write the spool's host file",
        path: host_file.clone(),
        source,
    })?;
    let mut dropped = 0u64;
    for line in &lines {
        if !spool.append(line)? {
            dropped += 1;
        }
    }
    spool.flush()?;
    let until = spool.next_sequence();
    let shipper = Shipper::new(
        job.tls.clone(),
        spool.reader(),
        host,
        spool.boot().to_string(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ShipError::Runtime)?;
    runtime.block_on(shipper.run(Some(until), true, job.timeout))?;
    Ok(Shipped {
        records: lines.len(),
        dropped,
    })
}

/// The record lines of a JSON Lines file, checked: each must be a record, all of one host
/// (`host`, or the first record's, which is then written to `host`).
fn read_records(path: &Path, host: &mut Option<String>) -> Result<Vec<Vec<u8>>, ShipError> {
    let io = |what| {
        move |source| ShipError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    };
    let file = std::fs::File::open(path).map_err(io("open"))?;
    let mut lines = Vec::new();
    for (n, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(io("read"))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let input = |why: String| ShipError::Input {
            path: path.to_path_buf(),
            line: n + 1,
            why,
        };
        let rec = Record::parse(&line).map_err(|e| input(format!("not a record: {e}")))?;
        match host {
            None => *host = Some(rec.host.clone()),
            Some(h) if *h != rec.host => {
                return Err(input(format!(
                    "host {:?}, but the file's records are of host {h:?}",
                    rec.host
                )));
            }
            Some(_) => {}
        }
        lines.push(line);
    }
    Ok(lines)
}
