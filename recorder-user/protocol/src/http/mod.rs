//! HTTP/1.1 and HTTP/2 request decoding from the plaintext of a client's TLS connections.
//!
//! The TLS hooks hand both directions of a connection, cut at arbitrary chunk boundaries. The
//! caller asks [`guess`] about the first client bytes; once it says HTTP, one [`HttpConn`] per
//! connection turns the streams into [`Exchange`]s (a request with its response status) and
//! [`Notice`]s (bytes that do not decode). Bodies are skipped, never stored. Memory per
//! connection is bounded (see the `MAX_*` constants) and no input makes the decoders panic.

pub mod hpack;
mod http1;
mod http2;
mod huffman;

use std::collections::VecDeque;

use crate::{Direction, Notice};

/// The `reason` of every notice about bytes that are not valid HTTP.
pub const MALFORMED_HTTP: &str = "malformed_http";
/// Most requests awaiting their response per connection; past it the oldest is emitted with
/// no status. Their texts together are bounded by [`MAX_PENDING_BYTES`] the same way.
pub const MAX_PENDING: usize = 256;
pub const MAX_PENDING_BYTES: usize = 1 << 20;
/// Longest request target kept (path and query); a longer one is cut and flagged.
pub const MAX_TARGET_BYTES: usize = 16 * 1024;
/// Longest method and authority kept.
const MAX_METHOD_BYTES: usize = 64;
const MAX_AUTHORITY_BYTES: usize = 1024;
/// Longest HTTP/1.1 head (request or status line and headers, also chunk trailers).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Longest HTTP/2 header block (HEADERS or `PUSH_PROMISE` and its CONTINUATION frames), encoded.
/// Real blocks are a few hundred bytes to a few KiB.
pub const MAX_HEADER_BLOCK_BYTES: usize = 256 * 1024;
/// Worst-case bytes one connection holds (what `buffered_bytes` reports stays under it): per
/// direction a partial header block or head and an HPACK table, plus the pending requests,
/// which may overshoot their budget by one request.
pub const MAX_CONNECTION_BYTES: usize = 2 * (MAX_HEADER_BLOCK_BYTES + hpack::MAX_TABLE_SIZE)
    + MAX_PENDING_BYTES
    + MAX_TARGET_BYTES
    + MAX_METHOD_BYTES
    + MAX_AUTHORITY_BYTES;

/// The connection preface every HTTP/2 client sends first (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Methods that start an HTTP/1.1 connection worth decoding.
const METHODS: [&[u8]; 7] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"PATCH ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
];

/// An HTTP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    Http1,
    Http2,
}

/// What the first bytes of a connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guess {
    Http1,
    Http2,
    NotHttp,
    /// A prefix of something HTTP: ask again with more bytes.
    NeedMore,
}

/// Guesses from the first bytes seen in one direction whether a connection speaks HTTP.
///
/// Only the client's first bytes decide: the HTTP/2 preface, or a method, a space and the
/// first character of a target. Server bytes alone never do (an HTTP/2 server starts with a
/// bare SETTINGS frame), so for them the answer is `NeedMore` or `NotHttp`.
pub fn guess(dir: Direction, first: &[u8]) -> Guess {
    // Whether `first` is a proper prefix of `word` (more bytes could still make it `word`).
    let prefix_of = |word: &[u8]| first.len() < word.len() && word.starts_with(first);
    match dir {
        Direction::ToClient => {
            if prefix_of(b"HTTP/1.") || first.starts_with(b"HTTP/1.") {
                Guess::NeedMore
            } else {
                Guess::NotHttp
            }
        }
        Direction::ToServer => {
            if first.starts_with(H2_PREFACE) {
                return Guess::Http2;
            }
            let mut more = prefix_of(H2_PREFACE);
            for method in METHODS {
                match first.strip_prefix(method) {
                    // Origin form `/`, asterisk form `*`, absolute form `http://`.
                    Some([b'/' | b'*' | b'a'..=b'z' | b'A'..=b'Z', ..]) => return Guess::Http1,
                    Some([]) => more = true,
                    Some(_) => {}
                    None => more |= prefix_of(method),
                }
            }
            if more {
                Guess::NeedMore
            } else {
                Guess::NotHttp
            }
        }
    }
}

/// One request and its response status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub version: Version,
    pub method: String,
    /// The request target as sent: path and query (HTTP/2 `:path`; the authority for CONNECT).
    pub target: String,
    /// HTTP/2 `:authority`, or the HTTP/1.1 `Host` header.
    pub authority: Option<String>,
    /// The final status; `None` if no response came (connection closed, stream reset,
    /// response lost or undecodable, or too many requests waiting).
    pub status: Option<u16>,
    /// The HTTP/2 stream.
    pub stream_id: Option<u32>,
    /// The method, target or authority was cut at its bound.
    pub truncated: bool,
}

/// What a connection decoder produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpOutput {
    Exchange(Exchange),
    Notice(Notice),
}

/// The decoder of one HTTP connection.
#[derive(Debug)]
pub struct HttpConn {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Http1(http1::Http1Conn),
    Http2(Box<http2::Http2Conn>),
}

impl HttpConn {
    pub fn new(version: Version) -> Self {
        let inner = match version {
            Version::Http1 => Inner::Http1(http1::Http1Conn::new()),
            Version::Http2 => Inner::Http2(Box::default()),
        };
        HttpConn { inner }
    }

    /// Feeds the next chunk of one direction; outputs are appended to `out`.
    pub fn feed(&mut self, dir: Direction, bytes: &[u8], out: &mut Vec<HttpOutput>) {
        match &mut self.inner {
            Inner::Http1(c) => c.feed(dir, bytes, out),
            Inner::Http2(c) => c.feed(dir, bytes, out),
        }
    }

    /// The connection closed: emits every request still waiting, with no status.
    pub fn flush(&mut self, out: &mut Vec<HttpOutput>) {
        match &mut self.inner {
            Inner::Http1(c) => c.pending.drain(out),
            Inner::Http2(c) => c.pending.drain(out),
        }
    }

    /// (method, target) of the requests the client sent since the last call, oldest first: what
    /// a write held for approval asks the server to do.
    pub fn take_sent(&mut self) -> Vec<(String, String)> {
        let pending = match &mut self.inner {
            Inner::Http1(c) => &mut c.pending,
            Inner::Http2(c) => &mut c.pending,
        };
        std::mem::take(&mut pending.sent)
    }

    /// Bytes held for this connection (stays under [`MAX_CONNECTION_BYTES`]).
    pub fn buffered_bytes(&self) -> usize {
        match &self.inner {
            Inner::Http1(c) => c.buffered_bytes(),
            Inner::Http2(c) => c.buffered_bytes(),
        }
    }
}

/// Requests kept for [`HttpConn::take_sent`] when nobody takes them.
const SENT_KEPT: usize = 16;

/// A request waiting for its response.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    target: String,
    authority: Option<String>,
    stream_id: Option<u32>,
    truncated: bool,
}

impl Request {
    fn new(method: &[u8], target: &[u8], authority: Option<&[u8]>, stream_id: Option<u32>) -> Self {
        let (method, cut_m) = text_of(method, MAX_METHOD_BYTES);
        let (target, cut_t) = text_of(target, MAX_TARGET_BYTES);
        let authority = authority.map(|a| text_of(a, MAX_AUTHORITY_BYTES));
        let cut_a = authority.as_ref().is_some_and(|a| a.1);
        Request {
            method,
            target,
            authority: authority.map(|a| a.0),
            stream_id,
            truncated: cut_m || cut_t || cut_a,
        }
    }

    fn bytes(&self) -> usize {
        self.method.len() + self.target.len() + self.authority.as_ref().map_or(0, String::len)
    }

    fn answered(self, version: Version, status: Option<u16>) -> HttpOutput {
        HttpOutput::Exchange(Exchange {
            version,
            method: self.method,
            target: self.target,
            authority: self.authority,
            status,
            stream_id: self.stream_id,
            truncated: self.truncated,
        })
    }
}

/// Requests awaiting their responses, oldest first, bounded by count and bytes.
#[derive(Debug)]
struct Pending {
    version: Version,
    /// (method, target) of the requests sent since the last `HttpConn::take_sent`, the last
    /// `SENT_KEPT` only.
    sent: Vec<(String, String)>,
    requests: VecDeque<Request>,
    bytes: usize,
    /// Requests pushed out by the bounds whose responses are still to come. HTTP/1.1 pairs by
    /// order, so that many responses answer nothing in the queue.
    evicted: u64,
}

impl Pending {
    fn new(version: Version) -> Self {
        Pending {
            version,
            sent: Vec::new(),
            requests: VecDeque::new(),
            bytes: 0,
            evicted: 0,
        }
    }

    /// Queues a request; the oldest ones go out unanswered past the bounds.
    fn push(&mut self, request: Request, out: &mut Vec<HttpOutput>) {
        while !self.requests.is_empty()
            && (self.requests.len() >= MAX_PENDING
                || self.bytes + request.bytes() > MAX_PENDING_BYTES)
        {
            self.answer_front(None, out);
            self.evicted += 1;
        }
        if self.sent.len() == SENT_KEPT {
            self.sent.remove(0);
        }
        self.sent
            .push((request.method.clone(), request.target.clone()));
        self.bytes += request.bytes();
        self.requests.push_back(request);
    }

    /// Answers the oldest request (HTTP/1.1 order); false if none waits.
    fn answer_front(&mut self, status: Option<u16>, out: &mut Vec<HttpOutput>) -> bool {
        self.answer_at(0, status, out)
    }

    /// Answers the request of an HTTP/2 stream, if it waits.
    fn answer_stream(&mut self, stream: u32, status: Option<u16>, out: &mut Vec<HttpOutput>) {
        if let Some(i) = self
            .requests
            .iter()
            .position(|r| r.stream_id == Some(stream))
        {
            self.answer_at(i, status, out);
        }
    }

    fn answer_at(&mut self, i: usize, status: Option<u16>, out: &mut Vec<HttpOutput>) -> bool {
        let Some(request) = self.requests.remove(i) else {
            return false;
        };
        self.bytes -= request.bytes();
        out.push(request.answered(self.version, status));
        true
    }

    fn front(&self) -> Option<&Request> {
        self.requests.front()
    }

    /// Emits every waiting request with no status, oldest first.
    fn drain(&mut self, out: &mut Vec<HttpOutput>) {
        while self.answer_front(None, out) {}
    }
}

fn malformed(detail: String) -> HttpOutput {
    HttpOutput::Notice(Notice {
        reason: MALFORMED_HTTP,
        detail,
    })
}

/// Lossy UTF-8 of at most `max` bytes of `bytes`; says whether it cut.
fn text_of(bytes: &[u8], max: usize) -> (String, bool) {
    let cut = bytes.len() > max;
    let mut s = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned();
    // Replacement characters can make the text longer than its bytes; keep the bound.
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    (s, cut)
}

#[cfg(test)]
mod tests;
