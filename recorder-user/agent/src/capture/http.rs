//! Kubernetes API calls of watched processes: the HTTP/1.1 and HTTP/2 requests in their TLS
//! plaintext (OpenSSL or Go) and on plain sockets, each paired with its response status, and
//! kept when the path is a Kubernetes API path.
//!
//! A stream is keyed by (tgid, socket or TLS connection, plaintext or raw): a TLS connection's
//! raw socket bytes are ciphertext and never look like HTTP, so they fall out at the first
//! bytes, while its plaintext from the TLS probes is decoded.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use recorder_common::DataHead;

use super::conn::{
    GapsReported, Origin, Owners, connection_key, direction, gap_notice, is_plaintext, server_name,
    socket_known,
};
use recorder_protocol::{
    Direction,
    http::{self, Exchange, Guess, HttpConn, HttpOutput},
    k8s::api::{ApiRequest, api_request},
};

/// A stream with no traffic for this long has its pending requests reported and is forgotten.
const IDLE_FORGET: Duration = Duration::from_secs(30);
/// Bytes held per direction while the protocol is not known yet.
const GUESS_BYTES: usize = 64;

/// What the tracker produces for the record builder.
#[derive(Debug)]
pub(crate) enum ApiOutput {
    Call {
        origin: Origin,
        server: String,
        tls: bool,
        exchange: Box<Exchange>,
        request: Box<ApiRequest>,
    },
    Notice {
        origin: Origin,
        reason: String,
        detail: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct StreamKey {
    tgid: u32,
    /// See `connection_key`: the cookie (tgid 0), the `struct sock *`, or the TLS connection.
    id: u64,
    plaintext: bool,
}

enum State {
    /// The first bytes, until they tell HTTP from anything else.
    Unknown(Vec<(Direction, Vec<u8>)>),
    Http(Box<HttpConn>),
    NotHttp,
}

struct Stream {
    state: State,
    server: String,
    /// The origin of the latest request bytes: requests are attributed to it.
    last_origin: Origin,
    last_seen: Instant,
    /// The gap notices given for this stream (once each is enough).
    gaps_reported: GapsReported,
    owners: Owners,
}

#[derive(Default)]
pub(crate) struct HttpTracker {
    streams: HashMap<StreamKey, Stream>,
}

impl HttpTracker {
    pub(crate) fn on_data(&mut self, head: &DataHead, payload: &[u8], out: &mut Vec<ApiOutput>) {
        let origin = Origin::of(head);
        let plaintext = is_plaintext(head);
        let (tgid, id) = connection_key(head);
        let key = StreamKey {
            tgid,
            id,
            plaintext,
        };
        let dir = direction(head);
        let stream = self.streams.entry(key).or_insert_with(|| Stream {
            state: State::Unknown(Vec::new()),
            server: server_name(&head.sock, socket_known(head)),
            last_origin: origin,
            last_seen: Instant::now(),
            gaps_reported: GapsReported::default(),
            owners: Owners::default(),
        });
        stream.last_seen = Instant::now();
        stream.owners.add(head.header.pid);
        if dir == Direction::ToServer {
            stream.last_origin = origin;
        }
        let mut outputs = Vec::new();
        if let State::Http(_) = stream.state
            && let Some((reason, detail)) =
                gap_notice(head, &stream.server, "API calls", &mut stream.gaps_reported)
        {
            out.push(ApiOutput::Notice {
                origin,
                reason: reason.into(),
                detail,
            });
        }
        match &mut stream.state {
            State::NotHttp => return,
            State::Http(conn) => conn.feed(dir, payload, &mut outputs),
            State::Unknown(seen) => {
                seen.push((dir, payload.to_vec()));
                match guess_from(seen) {
                    g @ (Guess::Http1 | Guess::Http2) => {
                        let version = if g == Guess::Http2 {
                            http::Version::Http2
                        } else {
                            http::Version::Http1
                        };
                        let mut conn = HttpConn::new(version);
                        for (d, bytes) in seen.iter() {
                            conn.feed(*d, bytes, &mut outputs);
                        }
                        stream.state = State::Http(Box::new(conn));
                    }
                    Guess::NotHttp => stream.state = State::NotHttp,
                    Guess::NeedMore => {}
                }
            }
        }
        emit(stream, plaintext, outputs, out);
    }

    /// (method, target) of the requests the write `head` (just fed) completed: what a held
    /// write would ask the server.
    pub(crate) fn take_sent(&mut self, head: &DataHead) -> Vec<(String, String)> {
        let (tgid, id) = connection_key(head);
        let key = StreamKey {
            tgid,
            id,
            plaintext: is_plaintext(head),
        };
        match self.streams.get_mut(&key).map(|s| &mut s.state) {
            Some(State::Http(conn)) => conn.take_sent(),
            _ => Vec::new(),
        }
    }

    /// The process closed the socket: report what is pending and forget its streams.
    pub(crate) fn on_close(&mut self, tgid: u32, sock: u64, out: &mut Vec<ApiOutput>) {
        for plaintext in [false, true] {
            self.end(
                StreamKey {
                    tgid,
                    id: sock,
                    plaintext,
                },
                out,
            );
        }
    }

    /// The process exited: every stream only it used is over.
    pub(crate) fn on_exit(&mut self, tgid: u32, out: &mut Vec<ApiOutput>) {
        let mut keys: Vec<StreamKey> = self
            .streams
            .iter_mut()
            .filter_map(|(k, s)| (s.owners.exited(tgid) || k.tgid == tgid).then_some(*k))
            .collect();
        // Deterministic order for the requests still pending.
        keys.sort_by_key(|k| (k.id, k.plaintext));
        for key in keys {
            self.end(key, out);
        }
    }

    /// Periodic work: forgetting idle streams.
    pub(crate) fn tick(&mut self, out: &mut Vec<ApiOutput>) {
        let now = Instant::now();
        let idle: Vec<StreamKey> = self
            .streams
            .iter()
            .filter(|(_, s)| now.duration_since(s.last_seen) > IDLE_FORGET)
            .map(|(k, _)| *k)
            .collect();
        for key in idle {
            self.end(key, out);
        }
    }

    fn end(&mut self, key: StreamKey, out: &mut Vec<ApiOutput>) {
        let Some(mut stream) = self.streams.remove(&key) else {
            return;
        };
        if let State::Http(conn) = &mut stream.state {
            let mut outputs = Vec::new();
            conn.flush(&mut outputs);
            emit(&mut stream, key.plaintext, outputs, out);
        }
    }
}

/// Guesses from the first bytes of each direction seen so far.
fn guess_from(seen: &[(Direction, Vec<u8>)]) -> Guess {
    let to_server: Vec<u8> = seen
        .iter()
        .filter(|(d, _)| *d == Direction::ToServer)
        .flat_map(|(_, b)| b.iter().copied())
        .take(GUESS_BYTES)
        .collect();
    let to_client_bytes: usize = seen
        .iter()
        .filter(|(d, _)| *d == Direction::ToClient)
        .map(|(_, b)| b.len())
        .sum();
    if to_server.is_empty() {
        // A server speaks first: not an HTTP client, once it said enough.
        return if to_client_bytes >= GUESS_BYTES {
            Guess::NotHttp
        } else {
            Guess::NeedMore
        };
    }
    match http::guess(Direction::ToServer, &to_server) {
        Guess::NeedMore if to_server.len() >= GUESS_BYTES => Guess::NotHttp,
        g => g,
    }
}

fn emit(stream: &mut Stream, tls: bool, outputs: Vec<HttpOutput>, out: &mut Vec<ApiOutput>) {
    for o in outputs {
        match o {
            HttpOutput::Exchange(exchange) => {
                // Only Kubernetes API traffic is recorded; other HTTP is not this tool's business.
                let Some(request) = api_request(&exchange.method, &exchange.target) else {
                    continue;
                };
                out.push(ApiOutput::Call {
                    origin: stream.last_origin,
                    server: stream.server.clone(),
                    tls,
                    exchange: Box::new(exchange),
                    request: Box::new(request),
                });
            }
            HttpOutput::Notice(n) => out.push(ApiOutput::Notice {
                origin: stream.last_origin,
                reason: n.reason.to_string(),
                detail: format!("{} (connection to {})", n.detail, stream.server),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use recorder_common::{DIR_EGRESS, DIR_INGRESS, DataSource, EventHeader, SockInfo};

    use super::*;

    fn head(source: DataSource, direction: u32) -> DataHead {
        DataHead {
            header: EventHeader {
                kind: 4,
                pid: 9,
                ..Default::default()
            },
            sock: SockInfo {
                sock: 5,
                family: 2,
                rport: 6443,
                raddr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ..Default::default()
            },
            source: source as u32,
            direction,
            ..Default::default()
        }
    }

    fn calls(out: &[ApiOutput]) -> Vec<(String, String, Option<u16>, bool)> {
        out.iter()
            .filter_map(|o| match o {
                ApiOutput::Call {
                    exchange,
                    request,
                    tls,
                    ..
                } => Some((
                    request.verb.clone(),
                    exchange.target.clone(),
                    exchange.status,
                    *tls,
                )),
                ApiOutput::Notice { .. } => None,
            })
            .collect()
    }

    #[test]
    fn bytes_not_captured_on_an_http_connection_are_reported_once() {
        let mut t = HttpTracker::default();
        let mut out = Vec::new();
        let req = head(DataSource::Socket, DIR_EGRESS);
        t.on_data(
            &req,
            b"GET /api/v1/pods HTTP/1.1\r\nHost: k\r\n\r\n",
            &mut out,
        );
        // A vectored write whose buffers past the 64th were not captured: 300 bytes.
        let gap = DataHead {
            flags: recorder_common::DATA_TRUNCATED,
            total: 300,
            ..req
        };
        t.on_data(&gap, b"", &mut out);
        t.on_data(&gap, b"", &mut out);
        let notices: Vec<&str> = out
            .iter()
            .filter_map(|o| match o {
                ApiOutput::Notice { reason, detail, .. } if reason == "data_truncated" => {
                    Some(detail.as_str())
                }
                _ => None,
            })
            .collect();
        assert_eq!(notices.len(), 1, "{out:?}");
        assert!(
            notices[0].starts_with("300 bytes of one write on the connection to 127.0.0.1:6443"),
            "{}",
            notices[0]
        );
    }

    #[test]
    fn kubernetes_calls_in_tls_plaintext_are_paired_with_their_status() {
        let mut t = HttpTracker::default();
        let mut out = Vec::new();
        let (req, resp) = (
            head(DataSource::OpenSsl, DIR_EGRESS),
            head(DataSource::OpenSsl, DIR_INGRESS),
        );
        // The request line split across two writes.
        t.on_data(&req, b"GET /api/v1/namespaces/a/pods HT", &mut out);
        t.on_data(&req, b"TP/1.1\r\nHost: k\r\n\r\n", &mut out);
        t.on_data(
            &resp,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
            &mut out,
        );
        // Not a Kubernetes path: not recorded.
        t.on_data(
            &req,
            b"GET /index.html HTTP/1.1\r\nHost: k\r\n\r\n",
            &mut out,
        );
        t.on_data(
            &resp,
            b"HTTP/1.1 404 No\r\nContent-Length: 0\r\n\r\n",
            &mut out,
        );
        t.on_data(
            &req,
            b"DELETE /api/v1/namespaces/a/pods/p HTTP/1.1\r\n\r\n",
            &mut out,
        );
        t.on_exit(9, &mut out);
        assert_eq!(
            calls(&out),
            [
                (
                    "list".into(),
                    "/api/v1/namespaces/a/pods".into(),
                    Some(200),
                    true
                ),
                (
                    "delete".into(),
                    "/api/v1/namespaces/a/pods/p".into(),
                    None,
                    true
                ),
            ]
        );
    }

    #[test]
    fn ciphertext_on_the_raw_socket_is_not_http() {
        let mut t = HttpTracker::default();
        let mut out = Vec::new();
        let raw = head(DataSource::Socket, DIR_EGRESS);
        t.on_data(&raw, &[22, 3, 1, 2, 0, 1, 0, 1, 252, 3, 3], &mut out);
        t.on_data(&raw, b"GET /api HTTP/1.1\r\n\r\n", &mut out);
        t.on_exit(9, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }
}
