//! `--metrics-addr`: GET /metrics (Prometheus text format) and GET /readyz (200 once the probes
//! are attached and identities resolved, 503 before). A deliberately small HTTP/1.1 responder.
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::Context as _;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::metrics::Registry;

pub async fn spawn(addr: SocketAddr, ready: Arc<AtomicBool>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --metrics-addr {addr}"))?;
    tracing::info!(%addr, "serving /metrics and /readyz");
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let ready = ready.clone();
            tokio::spawn(async move {
                // Read the request head (up to its blank line) before answering, so a client
                // that writes it in pieces is not cut off.
                let mut buf = [0u8; 4096];
                let mut n = 0;
                while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        conn.read(&mut buf[n..]),
                    )
                    .await
                    {
                        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                        Ok(Ok(read)) => n += read,
                    }
                }
                let request = String::from_utf8_lossy(&buf[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = match path {
                    "/metrics" => ("200 OK", Registry::global().render()),
                    "/readyz" if ready.load(Ordering::SeqCst) => ("200 OK", "ready\n".to_string()),
                    "/readyz" => ("503 Service Unavailable", "not ready\n".to_string()),
                    _ => ("404 Not Found", "try /metrics or /readyz\n".to_string()),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(())
}
