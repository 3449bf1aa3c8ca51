//! A real HTTP/2 exchange: the `h2` crate's client and server over an in-memory pipe, the
//! client's bytes recorded in both directions as the TLS hooks would see them. Its encoder uses
//! Huffman coding and the dynamic table, so this checks the decoder against one in real use.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

use super::*;

/// Requests made, in order: method, path and query, and the status the server gives.
const REQUESTS: [(&str, &str, u16); 5] = [
    ("GET", "/api/v1/namespaces/default/pods?limit=500", 200),
    ("GET", "/api/v1/namespaces/default/pods/missing", 404),
    (
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldManager=kubectl-create",
        201,
    ),
    (
        "PATCH",
        "/apis/apps/v1/namespaces/prod/deployments/web?fieldManager=kubectl",
        200,
    ),
    ("DELETE", "/api/v1/namespaces/default/pods/web-0", 200),
];
const AUTHORITY: &str = "10.96.0.1:6443";

/// The client's side of the pipe, recording every byte written and read.
struct Tee {
    io: DuplexStream,
    log: Arc<Mutex<Vec<Chunk>>>,
}

impl Tee {
    fn record(&self, dir: Direction, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.log.lock().unwrap().push((dir, bytes.to_vec()));
        }
    }
}

impl AsyncRead for Tee {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            self.record(ToClient, &buf.filled()[before..]);
        }
        r
    }
}

impl AsyncWrite for Tee {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            self.record(ToServer, &data[..n]);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

async fn serve(io: DuplexStream) {
    let mut conn = ::h2::server::handshake(io).await.unwrap();
    while let Some(Ok((request, mut respond))) = conn.accept().await {
        let status = REQUESTS
            .iter()
            .find(|(m, p, _)| {
                request.method().as_str() == *m
                    && request
                        .uri()
                        .path_and_query()
                        .map(http::uri::PathAndQuery::as_str)
                        == Some(*p)
            })
            .map_or(500, |r| r.2);
        let response = http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("audit-id", "5b3c1a2e-0f1d-4c55-9e8a-2b7d8c9e0f11")
            .body(())
            .unwrap();
        let mut body = respond.send_response(response, false).unwrap();
        body.send_data(Bytes::from_static(b"{\"kind\":\"Status\"}"), true)
            .unwrap();
    }
}

/// Runs the exchange and returns what the client's TLS hooks would have seen.
pub(in super::super) fn capture() -> Vec<Chunk> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let log = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(serve(server_io));
        let tee = Tee {
            io: client_io,
            log: log.clone(),
        };
        let (client, conn) = ::h2::client::handshake(tee).await.unwrap();
        tokio::spawn(conn);
        let mut client = client;
        for (method, path, _) in REQUESTS {
            let request = http::Request::builder()
                .method(method)
                .uri(format!("https://{AUTHORITY}{path}"))
                .header(
                    "user-agent",
                    "kubectl/v1.31.0 (linux/amd64) kubernetes/abcdef",
                )
                .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
                .header("authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.secret")
                .body(())
                .unwrap();
            client = client.ready().await.unwrap();
            let has_body = method != "GET" && method != "DELETE";
            let (response, mut stream) = client.send_request(request, !has_body).unwrap();
            if has_body {
                stream
                    .send_data(Bytes::from_static(b"{\"apiVersion\":\"v1\"}"), true)
                    .unwrap();
            }
            let mut body = response.await.unwrap().into_body();
            while let Some(data) = body.data().await {
                let data = data.unwrap();
                let _ = body.flow_control().release_capacity(data.len());
            }
        }
        log.lock().unwrap().clone()
    })
}

#[test]
fn decodes_a_real_h2_client_and_server() {
    let chunks = capture();
    let client_bytes: Vec<u8> = chunks
        .iter()
        .filter(|(d, _)| *d == ToServer)
        .flat_map(|(_, b)| b.clone())
        .collect();
    assert_eq!(guess(ToServer, &client_bytes), Guess::Http2);
    // The encoder Huffman-codes its strings: no path is on the wire as plain text.
    for (_, path, _) in REQUESTS {
        assert!(
            !client_bytes
                .windows(path.len())
                .any(|w| w == path.as_bytes())
        );
    }
    let out = run(Version::Http2, &chunks);
    let expected: Vec<_> = REQUESTS.iter().map(|&(m, p, s)| t(m, p, Some(s))).collect();
    assert_eq!(triples(&out), expected, "{out:?}");
    for (i, o) in out.iter().enumerate() {
        let HttpOutput::Exchange(e) = o else {
            panic!("{o:?}")
        };
        assert_eq!(e.authority.as_deref(), Some(AUTHORITY));
        assert_eq!(e.stream_id, Some(2 * i as u32 + 1));
    }
}
