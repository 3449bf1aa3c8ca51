//! Webhook delivery: each body pushed (an alert, or an approval request for an
//! `[[approval_webhook]]`, as JSON) is `POSTed` with `X-Recorder-Signature: sha256=<hex
//! HMAC-SHA256 of the body under the webhook's secret>`. One queue and one task per webhook:
//! pushing never blocks ingest; delivery is in order and retried with backoff (0.5 s doubling to
//! 30 s) until the receiver answers 2xx. The queue is on disk (`webhook_queue.rs`): alerts
//! not yet delivered survive a restart or a crash of the collector. It holds up to
//! `MAX_QUEUED` alerts; beyond that the oldest are dropped, counted and logged.
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Deserialize;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpStream,
    sync::Notify,
};

use crate::webhook_queue::DiskQueue;
use recorder_api::metrics::{Counter, Registry};
use recorder_record::hex;

pub(crate) const MAX_QUEUED: usize = 100_000;
pub(crate) const SIGNATURE_HEADER: &str = "X-Recorder-Signature";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookConfig {
    url: String,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    /// CA bundle for an https receiver (default: the system bundle).
    ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    pub url: String,
    tls: bool,
    host: String,
    port: u16,
    path: String,
    secret: Vec<u8>,
    ca: Option<PathBuf>,
}

impl WebhookConfig {
    pub(crate) fn resolve(self, base: &Path) -> Result<Webhook, String> {
        let err = |why: &str| format!("webhook {:?}: {why}", self.url);
        let (tls, rest) = if let Some(r) = self.url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = self.url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(err("the URL must start with http:// or https://"));
        };
        let (authority, path) = rest
            .split_once('/')
            .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                h.to_string(),
                p.parse::<u16>().map_err(|_| err("bad port"))?,
            ),
            _ => (authority.to_string(), if tls { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(err("no host"));
        }
        let secret = match (self.secret, self.secret_file) {
            (Some(s), None) => s.into_bytes(),
            (None, Some(f)) => {
                let f = base.join(f);
                let s = std::fs::read_to_string(&f)
                    .map_err(|e| err(&format!("cannot read {}: {e}", f.display())))?;
                s.trim_end_matches(['\n', '\r']).as_bytes().to_vec()
            }
            _ => return Err(err("give exactly one of secret or secret_file")),
        };
        if secret.is_empty() {
            return Err(err("the secret is empty"));
        }
        Ok(Webhook {
            url: self.url,
            tls,
            host,
            port,
            path,
            secret,
            ca: self.ca.map(|c| base.join(c)),
        })
    }
}

/// The signature header's value for a body.
pub(crate) fn sign(secret: &[u8], body: &[u8]) -> String {
    recorder_export::webhook::signature(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        body,
    )
}

type Shared = Arc<(Mutex<DiskQueue>, Notify)>;

fn lock(q: &Mutex<DiskQueue>) -> std::sync::MutexGuard<'_, DiskQueue> {
    q.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The handle ingest pushes bodies into.
pub(crate) struct Queue {
    inner: Shared,
    dropped: Counter,
}

impl Queue {
    /// Opens the webhook's queue under `dir` (what an earlier run did not deliver is sent
    /// first) and starts its delivery task.
    pub(crate) fn start(hook: Webhook, dir: &Path) -> Result<Self, String> {
        let id = hex::encode(
            &ring::digest::digest(&ring::digest::SHA256, hook.url.as_bytes()).as_ref()[..8],
        );
        let queue =
            DiskQueue::open(dir, &id).map_err(|e| format!("webhook {:?}: {e}", hook.url))?;
        if queue.len() > 0 {
            tracing::info!(url = %hook.url, pending = queue.len(), "alerts of an earlier run to deliver");
        }
        let inner = Arc::new((Mutex::new(queue), Notify::new()));
        let labels = [("webhook", hook.url.as_str())];
        let r = Registry::global();
        let dropped = r.counter(
            "recorder_webhook_dropped_total",
            "Alerts dropped because a webhook's queue was full.",
            &labels,
        );
        let failures = r.counter(
            "recorder_webhook_failures_total",
            "Failed webhook deliveries (each retry counts).",
            &labels,
        );
        let delivered = r.counter(
            "recorder_webhook_delivered_total",
            "Alerts delivered to a webhook.",
            &labels,
        );
        tokio::spawn(deliver(hook, inner.clone(), failures, delivered));
        Ok(Self { inner, dropped })
    }

    /// Queues one body for delivery (appended to the queue's file and synced); never waits
    /// for the receiver.
    pub(crate) fn push(&self, body: &[u8]) {
        let mut q = lock(&self.inner.0);
        if q.len() >= MAX_QUEUED {
            tracing::warn!(
                queued = MAX_QUEUED,
                "webhook queue full: the oldest alert is dropped"
            );
            let _ = q.pop();
            self.dropped.inc();
        }
        if let Err(e) = q.push(body) {
            tracing::error!(error = %e, "cannot queue an alert for a webhook: dropped");
            self.dropped.inc();
        }
        drop(q);
        self.inner.1.notify_one();
    }
}

async fn deliver(hook: Webhook, inner: Shared, failures: Counter, delivered: Counter) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let next = lock(&inner.0).front().map(<[u8]>::to_vec);
        let Some(body) = next else {
            inner.1.notified().await;
            continue;
        };
        match tokio::time::timeout(Duration::from_secs(10), post(&hook, &body)).await {
            Ok(Ok(())) => {
                if let Err(e) = lock(&inner.0).pop() {
                    // Delivered, but the offset was not saved: sent again after a restart.
                    tracing::warn!(url = %hook.url, error = %e, "cannot record a webhook delivery");
                }
                delivered.inc();
                backoff = Duration::from_millis(500);
            }
            result => {
                let why = match result {
                    Ok(Err(e)) => e,
                    _ => "timed out".to_string(),
                };
                failures.inc();
                tracing::warn!(url = %hook.url, error = %why, retry_in = ?backoff, "webhook delivery failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn post(hook: &Webhook, body: &[u8]) -> Result<(), String> {
    let tcp = TcpStream::connect((hook.host.as_str(), hook.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if hook.tls {
        let config = client_tls(hook.ca.as_deref())?;
        let name =
            rustls_pki_types::ServerName::try_from(hook.host.clone()).map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        exchange(hook, stream, body).await
    } else {
        exchange(hook, tcp, body).await
    }
}

fn client_tls(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let bundle = ca.unwrap_or(Path::new("/etc/ssl/certs/ca-certificates.crt"));
    let mut roots = rustls::RootCertStore::empty();
    for c in recorder_api::tls::load_certs(bundle).map_err(|e| e.to_string())? {
        let _ = roots.add(c);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    hook: &Webhook,
    mut s: S,
    body: &[u8],
) -> Result<(), String> {
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{SIGNATURE_HEADER}: {}\r\nuser-agent: recorder-collector\r\nconnection: close\r\n\r\n",
        hook.path,
        hook.host,
        body.len(),
        sign(&hook.secret, body)
    );
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    s.write_all(body).await.map_err(|e| format!("send: {e}"))?;
    s.flush().await.map_err(|e| format!("send: {e}"))?;
    let mut buf = vec![0u8; 1024];
    let mut n = 0;
    while n < 12 {
        let m = s
            .read(&mut buf[n..])
            .await
            .map_err(|e| format!("read: {e}"))?;
        if m == 0 {
            break;
        }
        n += m;
    }
    let status_line = String::from_utf8_lossy(&buf[..n]);
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no HTTP status in the answer")?;
    if (200..300).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP status {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_rfc_4231() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn parses_webhook_urls() {
        let w = WebhookConfig {
            url: "http://127.0.0.1:9000/a/b".into(),
            secret: Some("k".into()),
            secret_file: None,
            ca: None,
        }
        .resolve(Path::new("."))
        .unwrap();
        assert_eq!(
            (w.host.as_str(), w.port, w.path.as_str(), w.tls),
            ("127.0.0.1", 9000, "/a/b", false)
        );
        let w = WebhookConfig {
            url: "https://hooks.example".into(),
            secret: Some("k".into()),
            secret_file: None,
            ca: None,
        }
        .resolve(Path::new("."))
        .unwrap();
        assert_eq!(
            (w.host.as_str(), w.port, w.path.as_str(), w.tls),
            ("hooks.example", 443, "/", true)
        );
        assert!(
            WebhookConfig {
                url: "http://x".into(),
                secret: None,
                secret_file: None,
                ca: None
            }
            .resolve(Path::new("."))
            .is_err()
        );
    }
}
