//! HTTP/1.1 (RFC 9112): request heads from the client, status lines from the server, bodies
//! skipped by Content-Length or chunked coding. Responses answer requests in order, which
//! pairs pipelined requests too.
//!
//! Garbage, in either direction, stops the whole connection: once a body length is wrong,
//! nothing after can be found again.

use super::{Direction, HttpOutput, MAX_HEAD_BYTES, Pending, Request, Version, malformed};

/// Longest chunk-size line (the size and its extensions).
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug)]
pub(super) struct Http1Conn {
    client: Reader,
    server: Reader,
    pub(super) pending: Pending,
    /// Decoding ended: garbage, or the connection left HTTP (101, CONNECT tunnel).
    stopped: bool,
}

/// One direction's position in the message stream.
#[derive(Debug)]
struct Reader {
    state: State,
    /// The head being read, or the current chunk-size / trailer line.
    buf: Vec<u8>,
    /// Trailer bytes read so far (bounded like a head).
    trailer_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    /// A body of known length: bytes left.
    Fixed(u64),
    ChunkSize,
    /// Chunk data: bytes left, then the CRLF that ends it.
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    /// A response without length: the body runs to the end of the connection.
    UntilClose,
}

/// How the message that was just read delimits its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Errors are texts for the notice.
type Result<T> = std::result::Result<T, String>;

impl Http1Conn {
    pub(super) fn new() -> Self {
        Http1Conn {
            client: Reader::new(),
            server: Reader::new(),
            pending: Pending::new(Version::Http1),
            stopped: false,
        }
    }

    pub(super) fn buffered_bytes(&self) -> usize {
        self.client.buf.len() + self.server.buf.len() + self.pending.bytes
    }

    pub(super) fn feed(&mut self, dir: Direction, mut input: &[u8], out: &mut Vec<HttpOutput>) {
        while !input.is_empty() && !self.stopped {
            let step = match dir {
                Direction::ToServer => self.client_step(&mut input, out),
                Direction::ToClient => self.server_step(&mut input, out),
            };
            if let Err(detail) = step {
                out.push(malformed(detail));
                self.stop(out);
            }
        }
    }

    /// Ends decoding; requests still waiting are emitted without status.
    fn stop(&mut self, out: &mut Vec<HttpOutput>) {
        self.stopped = true;
        self.client.buf = Vec::new();
        self.server.buf = Vec::new();
        self.pending.drain(out);
    }

    fn client_step(&mut self, input: &mut &[u8], out: &mut Vec<HttpOutput>) -> Result<()> {
        let Some(head) = self.client.step(input, "request")? else {
            return Ok(());
        };
        let (method, target, headers) = parse_request_head(&head)?;
        let host = header(&headers, b"host");
        self.pending
            .push(Request::new(method, target, host, None), out);
        let body = match body_of(&headers, "request")? {
            // A request without length has no body (section 6.3).
            Body::UntilClose => Body::None,
            b => b,
        };
        self.client.start_body(body);
        Ok(())
    }

    fn server_step(&mut self, input: &mut &[u8], out: &mut Vec<HttpOutput>) -> Result<()> {
        let Some(head) = self.server.step(input, "response")? else {
            return Ok(());
        };
        let (status, headers) = parse_status_head(&head)?;
        if (100..200).contains(&status) && status != 101 {
            // Informational (100 Continue, 103 Early Hints): the final response follows.
            return Ok(());
        }
        let method = if self.pending.evicted > 0 {
            // Answers a request already emitted without status (its method is forgotten: a
            // HEAD request's response is then taken to have the body its headers say).
            self.pending.evicted -= 1;
            None
        } else {
            let method = self.pending.front().map(|r| r.method.clone());
            self.pending.answer_front(Some(status), out);
            method
        };
        let tunnel = method.as_deref() == Some("CONNECT") && (200..300).contains(&status);
        if status == 101 || tunnel {
            // The connection speaks another protocol from here (WebSocket, SPDY, a tunnel).
            self.stop(out);
            return Ok(());
        }
        let body = if method.as_deref() == Some("HEAD") || status == 204 || status == 304 {
            Body::None
        } else {
            body_of(&headers, "response")?
        };
        self.server.start_body(body);
        Ok(())
    }
}

impl Reader {
    fn new() -> Self {
        Reader {
            state: State::Head,
            buf: Vec::new(),
            trailer_bytes: 0,
        }
    }

    fn start_body(&mut self, body: Body) {
        self.state = match body {
            Body::None | Body::Length(0) => State::Head,
            Body::Length(n) => State::Fixed(n),
            Body::Chunked => State::ChunkSize,
            Body::UntilClose => State::UntilClose,
        };
    }

    /// Consumes some of `input`; returns a message head once one is complete.
    fn step(&mut self, input: &mut &[u8], what: &str) -> Result<Option<Vec<u8>>> {
        match self.state {
            State::Head => {
                if self.buf.is_empty() {
                    // Empty lines before a message are ignored (section 2.2).
                    let blank = input.iter().take_while(|b| matches!(b, b'\r' | b'\n'));
                    *input = &input[blank.count()..];
                    if input.is_empty() {
                        return Ok(None);
                    }
                }
                match self.read_until_blank_line(input) {
                    Some(head) => Ok(Some(head)),
                    None if self.buf.len() >= MAX_HEAD_BYTES => {
                        Err(format!("HTTP/1.1 {what} head over {MAX_HEAD_BYTES} bytes"))
                    }
                    None => Ok(None),
                }
            }
            State::Fixed(left) | State::ChunkData(left) => {
                let n = left.min(input.len() as u64);
                *input = &input[n as usize..];
                self.state = match (self.state, left - n) {
                    (State::Fixed(_), 0) => State::Head,
                    (State::Fixed(_), rest) => State::Fixed(rest),
                    (_, 0) => State::ChunkEnd,
                    (_, rest) => State::ChunkData(rest),
                };
                Ok(None)
            }
            State::ChunkSize => {
                if let Some(line) = self.read_line(input, MAX_CHUNK_LINE, what)? {
                    let size = chunk_size(&line)
                        .ok_or_else(|| format!("HTTP/1.1 {what} chunk size does not parse"))?;
                    self.state = if size == 0 {
                        self.trailer_bytes = 0;
                        State::Trailers
                    } else {
                        State::ChunkData(size)
                    };
                }
                Ok(None)
            }
            State::ChunkEnd => {
                if let Some(line) = self.read_line(input, MAX_CHUNK_LINE, what)? {
                    if !line.is_empty() {
                        return Err(format!(
                            "HTTP/1.1 {what} chunk data is longer than its size"
                        ));
                    }
                    self.state = State::ChunkSize;
                }
                Ok(None)
            }
            State::Trailers => {
                let room = MAX_HEAD_BYTES.saturating_sub(self.trailer_bytes);
                if let Some(line) = self.read_line(input, room, what)? {
                    self.trailer_bytes += line.len() + 2;
                    if line.is_empty() {
                        self.state = State::Head;
                    }
                }
                Ok(None)
            }
            State::UntilClose => {
                *input = &[];
                Ok(None)
            }
        }
    }

    /// Moves bytes into `buf` up to and including the blank line that ends a head; returns
    /// the head then. Lines may end in CRLF or a bare LF.
    fn read_until_blank_line(&mut self, input: &mut &[u8]) -> Option<Vec<u8>> {
        let from = self.buf.len().saturating_sub(2);
        let room = MAX_HEAD_BYTES - self.buf.len().min(MAX_HEAD_BYTES);
        let take = input.len().min(room);
        let old = self.buf.len();
        self.buf.extend_from_slice(&input[..take]);
        let end = find_blank_line(&self.buf, from);
        let used = end.map_or(take, |e| e.saturating_sub(old));
        *input = &input[used..];
        let end = end?;
        self.buf.truncate(end);
        Some(std::mem::take(&mut self.buf))
    }

    /// Reads one line (without its CRLF or LF) of at most `max` bytes.
    fn read_line(&mut self, input: &mut &[u8], max: usize, what: &str) -> Result<Option<Vec<u8>>> {
        let end = input.iter().position(|&b| b == b'\n');
        let part = &input[..end.unwrap_or(input.len())];
        // One byte of slack for the CR of a CRLF.
        if self.buf.len() + part.len() > max + 1 {
            return Err(format!("HTTP/1.1 {what} chunk line over {max} bytes"));
        }
        self.buf.extend_from_slice(part);
        *input = &input[(part.len() + 1).min(input.len())..];
        if end.is_none() {
            return Ok(None);
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some(std::mem::take(&mut self.buf)))
    }
}

/// The index just past the first blank line (`\n\n` or `\n\r\n`) at or after `from`.
fn find_blank_line(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            match buf.get(i + 1..) {
                Some([b'\n', ..]) => return Some(i + 2),
                Some([b'\r', b'\n', ..]) => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// `chunk-size [ chunk-ext ]`: hex digits, then anything after `;` (extensions) ignored.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next()?;
    let digits = digits.trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let text = std::str::from_utf8(digits).ok()?;
    u64::from_str_radix(text, 16).ok()
}

type Headers<'a> = Vec<(&'a [u8], &'a [u8])>;

/// The lines of a head, without line ends; the blank line at the end is dropped.
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
}

fn parse_headers<'a>(lines: impl Iterator<Item = &'a [u8]>, what: &str) -> Result<Headers<'a>> {
    let mut headers = Vec::new();
    for line in lines {
        if line[0] == b' ' || line[0] == b'\t' {
            // Obsolete line folding continues the previous value; no header we read uses it.
            continue;
        }
        let colon = line.iter().position(|&b| b == b':');
        let Some((name, value)) = colon.map(|c| (&line[..c], &line[c + 1..])) else {
            return Err(format!("HTTP/1.1 {what} header line without a colon"));
        };
        if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
            return Err(format!("HTTP/1.1 {what} header name is not a token"));
        }
        headers.push((name, value.trim_ascii()));
    }
    Ok(headers)
}

/// `method SP target SP HTTP/1.x`, then headers.
fn parse_request_head(head: &[u8]) -> Result<(&[u8], &[u8], Headers<'_>)> {
    let mut lines = lines(head);
    let bad = || "HTTP/1.1 request line does not parse".to_string();
    let line = lines.next().ok_or_else(bad)?;
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if method.is_empty()
        || !method.iter().all(|&b| is_token(b))
        || target.is_empty()
        || target.iter().any(u8::is_ascii_control)
        || !is_version(version)
    {
        return Err(bad());
    }
    Ok((method, target, parse_headers(lines, "request")?))
}

/// `HTTP/1.x SP 3DIGIT [SP reason]`, then headers.
fn parse_status_head(head: &[u8]) -> Result<(u16, Headers<'_>)> {
    let mut lines = lines(head);
    let bad = || "HTTP/1.1 status line does not parse".to_string();
    let line = lines.next().ok_or_else(bad)?;
    let (version, rest) = line.split_at_checked(8).ok_or_else(bad)?;
    let status = match rest {
        [
            b' ',
            a @ b'1'..=b'9',
            b @ b'0'..=b'9',
            c @ b'0'..=b'9',
            reason @ ..,
        ] if is_version(version) && matches!(reason.first(), None | Some(b' ')) => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err(bad()),
    };
    Ok((status, parse_headers(lines, "response")?))
}

fn is_version(v: &[u8]) -> bool {
    matches!(v, [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'0'..=b'9'])
}

/// A `tchar` of RFC 9110 section 5.6.2.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The value of the first header called `name` (case-insensitive).
fn header<'a>(headers: &[(&'a [u8], &'a [u8])], name: &[u8]) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, v)| v)
}

/// How a message's body is delimited (RFC 9112 section 6.3): chunked coding wins over a
/// length; a length must be one number, however often it is repeated.
fn body_of(headers: &Headers, what: &str) -> Result<Body> {
    let codings: Vec<&[u8]> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"transfer-encoding"))
        .flat_map(|(_, v)| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty())
        .collect();
    if let Some(last) = codings.last() {
        return if last.eq_ignore_ascii_case(b"chunked") {
            Ok(Body::Chunked)
        } else {
            // A response whose coding is not chunked runs to close; a request like that has
            // no knowable end.
            match what {
                "response" => Ok(Body::UntilClose),
                _ => Err(format!("HTTP/1.1 {what} transfer coding is not chunked")),
            }
        };
    }
    let mut length = None;
    for (_, value) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"content-length"))
    {
        for part in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            let n = (part.len() <= 19 && part.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(part).ok()?.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| format!("HTTP/1.1 {what} Content-Length does not parse"))?;
            if length.is_some_and(|l| l != n) {
                return Err(format!("HTTP/1.1 {what} has conflicting Content-Length"));
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Body::UntilClose, Body::Length))
}
