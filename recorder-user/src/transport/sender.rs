//! The agent's sender: streams the spool to the collector in batches over one Ingest stream,
//! with a window of batches in flight, and deletes from the spool only what the collector
//! acknowledged as durably stored. Any failure closes the stream and reconnects with backoff;
//! it resumes from the first unacknowledged record (the collector drops what it already has).
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::tls::{ClientTls, ConnectError};
use crate::{
    metrics::{Counter, Registry},
    proto::v1::{IngestBatch, collector_client::CollectorClient},
    spool::{SpoolError, SpoolReader},
};

const WINDOW: usize = 8;
const BATCH_RECORDS: usize = 2000;
const BATCH_BYTES: usize = 2 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
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
}

impl SendError {
    /// Errors that retrying with the same certificate and records cannot fix.
    pub fn is_refusal(&self) -> bool {
        matches!(self, SendError::Refused(_))
    }
}

pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::PermissionDenied => "permission denied",
        Code::Unauthenticated => "unauthenticated",
        Code::InvalidArgument => "invalid argument",
        Code::NotFound => "not found",
        Code::Unavailable => "unavailable",
        Code::Internal => "internal error",
        Code::FailedPrecondition => "failed precondition",
        Code::OutOfRange => "out of range",
        _ => "error",
    }
}

fn tls_hint(status: &Status) -> String {
    let chain = std::error::Error::source(status)
        .map(super::tls::error_chain)
        .unwrap_or_default();
    match super::tls::explain_tls(&chain) {
        Some(plain) => format!(" ({plain}: {chain})"),
        None if chain.is_empty() => String::new(),
        None => format!(" ({chain})"),
    }
}

fn classify(status: Status) -> SendError {
    match status.code() {
        Code::PermissionDenied | Code::Unauthenticated | Code::InvalidArgument => {
            SendError::Refused(status)
        }
        _ => SendError::Failed(status),
    }
}

pub struct Sender {
    pub tls: ClientTls,
    pub reader: SpoolReader,
    pub host: String,
    pub boot: String,
    errors: Counter,
}

impl Sender {
    pub fn new(tls: ClientTls, reader: SpoolReader, host: String, boot: String) -> Self {
        let errors = Registry::global().counter(
            "recorder_send_errors_total",
            "Failed connections or streams to the collector.",
            &[],
        );
        Self {
            tls,
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
    ) -> Result<(), SendError> {
        let start = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(200);
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
                    }
                    if let Some(limit) = deadline
                        && start.elapsed() + backoff > limit
                    {
                        tracing::error!(error = %e, "sending to the collector failed");
                        return Err(SendError::Timeout(limit));
                    }
                    tracing::warn!(error = %e, retry_in = ?backoff, depth = self.reader.depth(), "sending to the collector failed; records stay in the spool");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    fn done(&self, until: Option<u64>) -> bool {
        until.is_some_and(|u| self.reader.acked_next() >= u)
    }

    /// One connection and stream.
    async fn session(&self, until: Option<u64>) -> Result<(), SendError> {
        if self.done(until) {
            return Ok(());
        }
        let channel = self.tls.connect().await?;
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
            tx.send(b).await.map_err(|_| SendError::Closed)?;
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
                    .map_err(|_| SendError::Closed)?;
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
                    Ok(None) => return Err(SendError::Closed),
                    Err(status) => return Err(classify(status)),
                },
                _ = notify.notified(), if in_flight < WINDOW => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
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
}

/// Runs a sender forever on its own thread and runtime (the agent's sinks are built before its
/// runtime starts, and sending must not compete with the ring-buffer reader).
pub fn spawn(sender: Sender) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("recorder-sender".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the sender's runtime; records stay in the spool");
                return;
            }
        };
        let _ = runtime.block_on(sender.run(None, false, None));
    })
}
