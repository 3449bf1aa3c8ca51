//! The collector: the gRPC server (mutual TLS only) agents send records to and operators read
//! from, the embedded store behind it, alert rules and their webhooks, and signed checkpoints on
//! a timer and on shutdown; the approval requests of held actions (approvals.rs). Each incoming line is read into its record once, by the store; the
//! record then goes to the session index, the alert rules and the watch stream.
mod alerts;
mod approvals;
mod console;
mod export;
mod log;
mod metrics;
mod rules;
mod service;
mod tail;
mod triggers;
mod try_rules;
mod webhook;
mod webhook_queue;
mod wire;

use std::{
    io::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{broadcast, mpsc},
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;

use recorder_api::{client_check::ClientCheck, proto::v1::collector_server::CollectorServer, tls};
pub use recorder_store::CheckpointPolicy;
use recorder_store::{Store, StoreError, StoredRecord, integrity::checkpoint::Signer};
use recorder_store_postgres::{PgError, PgLog, Sequencer};
pub use recorder_store_postgres::{is_postgres_url, redact};
pub use rules::RulesError;
pub use try_rules::{Tried, TrySource, try_rules};

use crate::log::{Log, Restorer};

/// What the watch stream carries.
#[derive(Debug)]
enum Event {
    Record(Arc<StoredRecord>),
    Alert(alerts::Alert),
}

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: {error}", redact(.url))]
    Postgres { url: String, error: PgError },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error(transparent)]
    Export(#[from] recorder_export::ConfigError),
    #[error("[retention]: {0}")]
    Retention(String),
    #[error("{0}")]
    Webhook(String),
    #[error("{0}")]
    Console(String),
    /// Reading the stored log for the alert rules (at start, or `recorder alerts test`).
    #[error("{0}")]
    ReadLog(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Serve(String),
}

/// Segment file size when the configuration does not say.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Where the log lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// Segment files in the data directory: one collector.
    Embedded,
    /// A PostgreSQL database shared by a group of collectors (a `postgres://` URL), and the CA
    /// of its server certificate (default: the system's).
    Postgres { url: String, ca: Option<PathBuf> },
}

/// Everything `recorder collector` was asked to do.
pub struct CollectorPlan {
    pub listen: SocketAddr,
    pub store: StoreLocation,
    /// The data directory: the embedded log, and the checkpoint signing key (both stores).
    pub data: PathBuf,
    pub ca: PathBuf,
    /// The CA's revocation list (`recorder pki revoke`), read again when it changes.
    pub crl: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The alert rules and webhooks file (with the approval webhooks).
    pub rules: Option<PathBuf>,
    pub metrics_addr: Option<SocketAddr>,
    pub segment_bytes: u64,
    pub checkpoint: CheckpointPolicy,
    /// The `[[export]]` tables of the configuration file.
    pub exports: Vec<recorder_export::ExportConfig>,
    /// The `[retention]` table of the configuration file (embedded store only).
    pub retention: Option<recorder_retention::RetentionConfig>,
    /// Where the web console listens (HTTPS), if it is on.
    pub console: Option<SocketAddr>,
}

impl CollectorPlan {
    /// A plan with the defaults: `pki` holds `ca.pem`, `collector.pem` and `collector-key.pem`
    /// (as `recorder pki init` writes them); no rules, exporters, retention, metrics or console.
    pub fn new(
        listen: SocketAddr,
        store: StoreLocation,
        data: PathBuf,
        pki: &std::path::Path,
    ) -> Self {
        Self {
            listen,
            store,
            data,
            ca: pki.join("ca.pem"),
            crl: None,
            cert: pki.join("collector.pem"),
            key: pki.join("collector-key.pem"),
            rules: None,
            metrics_addr: None,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            checkpoint: CheckpointPolicy::default(),
            exports: Vec::new(),
            retention: None,
            console: None,
        }
    }
}

/// Runs until SIGINT/SIGTERM; writes a final checkpoint on the way out.
pub fn run(plan: CollectorPlan) -> Result<(), CollectorError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CollectorError::Serve(format!("starting the async runtime: {e}")))?;
    runtime.block_on(serve(plan, shutdown_signal(), |local| {
        // Tests and scripts read this line to learn the port when listening on :0.
        println!("listening on {local}");
        // A `Type=notify` unit counts as started from here, not from the exec.
        recorder_api::systemd::notify("READY=1");
    }))
}

/// Runs until `shutdown` completes; `on_listen` learns the bound address.
pub async fn serve(
    plan: CollectorPlan,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_listen: impl FnOnce(SocketAddr),
) -> Result<(), CollectorError> {
    let clients = Arc::new(ClientCheck::load(&plan.ca, plan.crl.as_deref())?);
    let config = tls::server_config(&clients, &plan.cert, &plan.key)?;
    let (events, _) = broadcast::channel(4096);
    let metrics = metrics::CollectorMetrics::new();
    spawn_revocation_reload(clients.clone(), metrics.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (engine, approvals) = start_alerts(&plan, &stop_rx)?;
    // On PostgreSQL: whether this collector sequences the group's log (and so delivers its
    // webhooks and exporters).
    let leading = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (log, sequencer) = open_log(
        &plan,
        &metrics,
        &events,
        engine.as_ref(),
        &stop_rx,
        &leading,
    )
    .await?;
    let exporters = export::start(
        &plan.exports,
        &plan.data,
        &log,
        &metrics,
        &stop_rx,
        &leading,
    )?;
    if let Some(addr) = plan.metrics_addr {
        // Ready from the start: the store is open, and a collector serves as soon as it listens.
        recorder_api::http::spawn(addr, Arc::new(std::sync::atomic::AtomicBool::new(true)))
            .await
            .map_err(|source| CollectorError::Listen { addr, source })?;
    }
    let listener =
        TcpListener::bind(plan.listen)
            .await
            .map_err(|source| CollectorError::Listen {
                addr: plan.listen,
                source,
            })?;
    let local = listener
        .local_addr()
        .map_err(|source| CollectorError::Listen {
            addr: plan.listen,
            source,
        })?;
    on_listen(local);
    tracing::info!(%local, data = %plan.data.display(), store = ?redact_location(&plan.store), "collector listening (mTLS only)");

    let (conn_tx, conn_rx) = tokio::sync::mpsc::channel(64);
    spawn_acceptor(listener, TlsAcceptor::from(config), conn_tx);
    if let Log::Embedded(store, _) = &log {
        spawn_checkpoint_ticker(store.clone());
    }
    start_retention(&plan, &log, &stop_rx, &leading)?;
    if let Some(addr) = plan.console {
        let console = recorder_console::ConsolePlan {
            listen: addr,
            clients: clients.clone(),
            cert: plan.cert.clone(),
            key: plan.key.clone(),
            data: plan.data.clone(),
        };
        let view = Arc::new(console::LogView(log.clone(), approvals.clone()));
        let local =
            recorder_console::serve(console, view, console::forward(&events), stop_rx.clone())
                .await
                .map_err(|e| CollectorError::Console(e.to_string()))?;
        // Scripts read this line to learn the console's port when it listens on :0; nobody
        // reading stdout any more is no reason to stop.
        let _ = writeln!(std::io::stdout(), "console on https://{local}");
    }

    let service = service::Service {
        log: log.clone(),
        events,
        alerts: engine,
        approvals,
        metrics,
        clients,
    };
    // Stop accepting on the signal; give open streams (watchers) a few seconds, then stop anyway
    // so the final checkpoint is always written.
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let (mut on_stop, mut after_grace) = (stop_rx.clone(), stop_rx);
    let server = tonic::transport::Server::builder()
        .add_service(CollectorServer::new(service).max_decoding_message_size(64 * 1024 * 1024))
        .serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), async move {
            let _ = on_stop.wait_for(|stop| *stop).await;
        });
    let grace = async move {
        let _ = after_grace.wait_for(|stop| *stop).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    tokio::select! {
        served = server => served.map_err(|e| CollectorError::Serve(tls::error_chain(&e)))?,
        () = grace => tracing::warn!("streams still open 5 s after the stop signal; stopping anyway"),
    }
    finish(log, sequencer, exporters).await
}

/// After the server stopped: the exporters save their cursors, the final checkpoint is written.
async fn finish(
    log: Log,
    sequencer: Option<tokio::task::JoinHandle<()>>,
    exporters: Vec<tokio::task::JoinHandle<()>>,
) -> Result<(), CollectorError> {
    // Each exporter saves its cursor on the way out; one stuck sending to a receiver that
    // does not answer is not waited for long (what it sent is sent again next time).
    for task in exporters {
        let abort = task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
        {
            tracing::warn!(
                "an exporter did not stop within 5 s; its last records are sent again at the next start"
            );
            abort.abort();
        }
    }
    match log {
        Log::Embedded(store, _) => {
            let result = store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .checkpoint();
            if let Ok(Some(cp)) = &result {
                tracing::info!(tree_size = cp.tree_size, root = %cp.root, "final checkpoint written");
            }
            result?;
        }
        Log::Postgres(..) => {
            // The stop signal reached the sequencer too: it publishes the final checkpoint if
            // it holds the lease, and hands the lease over.
            if let Some(task) = sequencer {
                let _ = task.await;
            }
        }
    }
    Ok(())
}

/// The pruning task, if the plan has `[retention]`. Exporters hold deletion back: a segment
/// goes only once every exporter's durable cursor is past it.
fn start_retention(
    plan: &CollectorPlan,
    log: &Log,
    stop: &tokio::sync::watch::Receiver<bool>,
    leading: &Arc<std::sync::atomic::AtomicBool>,
) -> Result<(), CollectorError> {
    let Some(config) = &plan.retention else {
        return Ok(());
    };
    let cursors = recorder_export::Exporter::cursor_dir(&plan.data);
    let exports: Vec<(String, bool)> = plan
        .exports
        .iter()
        .map(|e| (e.name.clone(), e.sink.kind() == "file"))
        .collect();
    let pg = match log {
        Log::Postgres(pg, _) => Some(pg.clone()),
        Log::Embedded(..) => None,
    };
    // Where each exporter's delivery is durable: its cursor file, or on a group the cursor the
    // group keeps in the database (file exporters keep theirs on each collector).
    let floor: recorder_retention::ExportFloor = Box::new(move || {
        let (cursors, exports, pg) = (cursors.clone(), exports.clone(), pg.clone());
        Box::pin(async move {
            let mut lowest: Option<(String, u64)> = None;
            for (name, is_file) in exports {
                let next = match &pg {
                    Some(pg) if !is_file => pg.export_cursor(&name).await.unwrap_or(0),
                    _ => recorder_export::cursor::Cursor::open(&cursors, &name)
                        .map_or(0, |c| c.position.next),
                };
                if lowest.as_ref().is_none_or(|(_, n)| next < *n) {
                    lowest = Some((name, next));
                }
            }
            lowest
        })
    });
    let (target, restorer) = match log {
        Log::Embedded(store, restorer) => (
            recorder_retention::Target::Embedded(store.clone()),
            restorer,
        ),
        Log::Postgres(pg, restorer) => (
            recorder_retention::Target::Postgres {
                log: pg.clone(),
                leading: leading.clone(),
                data: plan.data.clone(),
            },
            restorer,
        ),
    };
    let pruner = recorder_retention::Pruner::new(config.clone(), target, floor)
        .map_err(CollectorError::Retention)?;
    let pruner = Arc::new(pruner);
    let _ = restorer.set(pruner.clone());
    tokio::spawn(pruner.run(stop.clone()));
    Ok(())
}

/// The alert rules and their webhooks' delivery, if the plan has rules; the approval requests
/// and their webhooks' delivery (queued apart, in `webhooks/approvals/`).
fn start_alerts(
    plan: &CollectorPlan,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<(Option<Arc<alerts::Engine>>, Arc<approvals::Approvals>), CollectorError> {
    let (engine, hooks) = match &plan.rules {
        None => (None, Vec::new()),
        Some(path) => {
            let mut rules = rules::Rules::load(path)?;
            let hooks = std::mem::take(&mut rules.approval_webhooks);
            // A file of approval webhooks alone runs no engine.
            let engine = if rules.rules.is_empty() && rules.webhooks.is_empty() {
                None
            } else {
                let engine = alerts::Engine::start(rules, &plan.data.join("webhooks"))
                    .map_err(CollectorError::Webhook)?;
                Some(Arc::new(engine))
            };
            (engine, hooks)
        }
    };
    let dir = plan.data.join("webhooks").join("approvals");
    let queues = hooks
        .into_iter()
        .map(|hook| webhook::Queue::start(hook, &dir))
        .collect::<Result<_, _>>()
        .map_err(CollectorError::Webhook)?;
    let name = format!("{}:{}", host_name(), plan.listen.port());
    let approvals = approvals::Approvals::new(queues, name, Some(stop.clone()));
    let (sweeper, mut stop) = (approvals.clone(), stop.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => sweeper.sweep(approvals::now()),
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    });
    Ok((engine, approvals))
}

fn redact_location(store: &StoreLocation) -> String {
    match store {
        StoreLocation::Embedded => "embedded".to_string(),
        StoreLocation::Postgres { url, .. } => redact(url),
    }
}

/// Opens the log; on PostgreSQL also starts this collector's sequencer (stopped by `stop`) and
/// the tail that brings every collector's records to this one's watchers and alert rules.
async fn open_log(
    plan: &CollectorPlan,
    metrics: &metrics::CollectorMetrics,
    events: &broadcast::Sender<Arc<Event>>,
    engine: Option<&Arc<alerts::Engine>>,
    stop: &tokio::sync::watch::Receiver<bool>,
    leading: &Arc<std::sync::atomic::AtomicBool>,
) -> Result<(Log, Option<tokio::task::JoinHandle<()>>), CollectorError> {
    let data = plan.data.clone();
    match &plan.store {
        StoreLocation::Embedded => {
            let (segment_bytes, policy) = (plan.segment_bytes, plan.checkpoint);
            let store =
                tokio::task::spawn_blocking(move || Store::open(&data, segment_bytes, policy))
                    .await
                    .map_err(|e| CollectorError::Serve(e.to_string()))??;
            metrics.records.set(store.len());
            let log = Log::Embedded(Arc::new(Mutex::new(store)), Restorer::default());
            learn(&log, engine, metrics.records.get()).await?;
            Ok((log, None))
        }
        StoreLocation::Postgres { url, ca } => {
            std::fs::create_dir_all(&data).map_err(|source| StoreError::Io {
                path: data.clone(),
                source,
            })?;
            let signer = Signer::load_or_create(&data).map_err(StoreError::from)?;
            let pg = PgLog::open(url, ca.as_deref(), signer, plan.checkpoint)
                .await
                .map_err(|error| CollectorError::Postgres {
                    url: url.clone(),
                    error,
                })?;
            let size = pg
                .placed()
                .await
                .map_err(|error| CollectorError::Postgres {
                    url: url.clone(),
                    error,
                })?;
            metrics.records.set(size);
            learn(
                &Log::Postgres(pg.clone(), Restorer::default()),
                engine,
                size,
            )
            .await?;
            let sequencer =
                Sequencer::new(pg.clone(), collector_name(plan.listen), leading.clone()).map_err(
                    |error| CollectorError::Postgres {
                        url: url.clone(),
                        error,
                    },
                )?;
            let task = tokio::spawn(sequencer.run(stop.clone()));
            tail::spawn(
                pg.clone(),
                size,
                events.clone(),
                engine.cloned(),
                leading.clone(),
                metrics.clone(),
            );
            tracing::info!(records = size, "PostgreSQL store opened");
            Ok((Log::Postgres(pg, Restorer::default()), Some(task)))
        }
    }
}

/// Rules that learn from the stored log (`first_seen`) read it up to `size` before any new
/// record is evaluated.
async fn learn(
    log: &Log,
    engine: Option<&Arc<alerts::Engine>>,
    size: u64,
) -> Result<(), CollectorError> {
    let Some(engine) = engine.filter(|e| e.learns()) else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    let mut next = 0;
    while next < size {
        let records = log
            .read_range(next, size.min(next + 10_000))
            .await
            .map_err(|e| {
                CollectorError::ReadLog(format!("reading the log for the alert rules: {e}"))
            })?;
        let Some(last) = records.last() else { break };
        next = last.index + 1;
        for rec in &records {
            engine.learn(rec);
        }
    }
    tracing::info!(records = next, took = ?started.elapsed(), "alert rules learned from the stored log");
    Ok(())
}

/// How the lease names this collector: host name, process and port, so an operator reading
/// the lease row knows which one sequences.
/// This collector as the sequencer's lease names it: unique even for two collectors of one
/// process (as the benchmark runs them) or two containers with one host name and pid.
fn collector_name(listen: SocketAddr) -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let nonce = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!(
        "{}:{}-{:04x}:{}",
        host_name(),
        std::process::id(),
        nonce & 0xffff,
        listen.port()
    )
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Accepts connections and passes each on to `conn_tx` once its TLS handshake is done. Every
/// handshake runs in a task of its own, so a slow or silent client holds up no other.
fn spawn_acceptor(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    conn_tx: mpsc::Sender<std::io::Result<TlsStream<TcpStream>>>,
) {
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, conn_tx) = (acceptor.clone(), conn_tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = conn_tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => {
                        metrics::CollectorMetrics::rejected("tls");
                        tracing::warn!(%peer, error = %e, "TLS handshake refused");
                    }
                    Err(_) => {
                        metrics::CollectorMetrics::rejected("tls_timeout");
                        tracing::warn!(%peer, "TLS handshake timed out");
                    }
                }
            });
        }
    });
}

/// Writes a checkpoint whenever the policy says one is due.
/// Reads the revocation list again every two seconds when it changed: a revocation takes
/// effect without a restart, for new calls at once and for open streams at their next message.
fn spawn_revocation_reload(clients: Arc<ClientCheck>, metrics: metrics::CollectorMetrics) {
    let Some(path) = clients.crl_path().map(Path::to_path_buf) else {
        return;
    };
    metrics.revoked.set(clients.revoked() as u64);
    tracing::info!(list = %path.display(), revoked = clients.revoked(), "revocation list in force");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            match clients.reload() {
                Ok(None) => {}
                Ok(Some(revoked)) => {
                    metrics.revoked.set(revoked as u64);
                    tracing::info!(list = %path.display(), revoked, "new revocation list in force");
                }
                Err(e) => {
                    metrics.revocation_errors.inc();
                    tracing::error!(error = %e, "the revocation list changed but is refused; the previous one stays in force");
                }
            }
        }
    });
}

fn spawn_checkpoint_ticker(store: Arc<Mutex<Store>>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let store = store.clone();
            let result = tokio::task::spawn_blocking(move || {
                store
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .checkpoint_if_due()
            })
            .await;
            if let Ok(Err(e)) = result {
                tracing::error!(error = %e, "cannot write a checkpoint");
            }
        }
    });
}

async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    // The signal may not have come from systemd (a plain `kill`): say the stop has begun.
    recorder_api::systemd::notify("STOPPING=1");
}
