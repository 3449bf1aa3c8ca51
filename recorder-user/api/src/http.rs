//! `--metrics-addr`: GET /metrics (Prometheus text format) and GET /readyz (200 once the process
//! is ready, 503 before), over plain HTTP/1.1: metrics carry no record content. The agent and
//! the collector both serve it. Deliberately small: one request per connection, whose head is
//! read up to its blank line (a client may write it in pieces) within 5 seconds.
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

use crate::metrics::Registry;

/// Largest request head read; a longer one is answered from what fits.
const MAX_HEAD: usize = 4096;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` and serves /metrics and /readyz in the background; `ready` answers /readyz.
/// Returns the bound address (`addr` may ask for port 0).
pub async fn spawn(addr: SocketAddr, ready: Arc<AtomicBool>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "serving /metrics and /readyz");
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let ready = ready.clone();
            tokio::spawn(async move {
                let head = read_head(&mut conn).await;
                let response = respond(&head, ready.load(Ordering::SeqCst));
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(bound)
}

/// Reads a request head up to its blank line, [`MAX_HEAD`] bytes, the end of the stream or
/// [`READ_TIMEOUT`], whichever comes first.
async fn read_head(conn: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut n = 0;
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf[n..])).await {
            Ok(Ok(0) | Err(_)) | Err(_) => break,
            Ok(Ok(read)) => n += read,
        }
    }
    buf.truncate(n);
    buf
}

/// The whole response to a request head.
fn respond(head: &[u8], ready: bool) -> String {
    let head = String::from_utf8_lossy(head);
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
    let (status, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", Registry::global().render()),
        ("GET", "/readyz") if ready => ("200 OK", "ready\n".to_string()),
        ("GET", "/readyz") => ("503 Service Unavailable", "not ready\n".to_string()),
        ("GET", _) => ("404 Not Found", "try /metrics or /readyz\n".to_string()),
        _ => ("405 Method Not Allowed", "only GET\n".to_string()),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use tokio::{io::AsyncWriteExt as _, net::TcpStream};

    use super::*;

    async fn get(addr: SocketAddr, pieces: &[&str]) -> String {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        for piece in pieces {
            conn.write_all(piece.as_bytes()).await.unwrap();
            conn.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut out = String::new();
        conn.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn answers_a_request_head_that_arrives_in_pieces() {
        let ready = Arc::new(AtomicBool::new(false));
        let addr = spawn("127.0.0.1:0".parse().unwrap(), ready.clone())
            .await
            .unwrap();
        Registry::global()
            .counter("recorder_http_test_total", "A test counter.", &[])
            .inc();
        let metrics = get(addr, &["GET /met", "rics HTTP/1.1\r\nHost: x\r\n", "\r\n"]).await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(
            metrics.contains("recorder_http_test_total 1\n"),
            "{metrics}"
        );
        let not_ready = get(addr, &["GET /readyz HTTP/1.1\r\n\r\n"]).await;
        assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
        ready.store(true, Ordering::SeqCst);
        let now_ready = get(addr, &["GET /readyz HTTP/1.1\r\n", "\r\n"]).await;
        assert!(now_ready.starts_with("HTTP/1.1 200 OK"), "{now_ready}");
        assert!(
            get(addr, &["GET /x HTTP/1.1\r\n\r\n"])
                .await
                .starts_with("HTTP/1.1 404")
        );
        assert!(
            get(addr, &["POST /metrics HTTP/1.1\r\n\r\n"])
                .await
                .starts_with("HTTP/1.1 405")
        );
    }
}
