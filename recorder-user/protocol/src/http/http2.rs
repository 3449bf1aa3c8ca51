//! HTTP/2 (RFC 9113) frame layer: one frame reader per direction, each with its own HPACK
//! decoder, and the pairing of requests (client HEADERS with `:method`) with responses (server
//! HEADERS with `:status` on the same stream).
//!
//! DATA (type 0) and other frames without headers are skipped as they stream by, never stored. A frame
//! length is 24 bits, so no frame exceeds 16 MiB; header blocks are held whole (HPACK needs
//! them whole) up to [`MAX_HEADER_BLOCK_BYTES`].

use super::hpack;
use super::{
    Direction, H2_PREFACE, HttpOutput, MAX_HEADER_BLOCK_BYTES, Pending, Request, Version, malformed,
};

const FRAME_HEADER_LEN: usize = 9;

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const PUSH_PROMISE: u8 = 0x5;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;

const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Both directions of one HTTP/2 connection.
#[derive(Debug)]
pub(super) struct Http2Conn {
    client: Side,
    server: Side,
    pub(super) pending: Pending,
}

impl Default for Http2Conn {
    fn default() -> Self {
        Http2Conn {
            client: Side::new(Direction::ToServer),
            server: Side::new(Direction::ToClient),
            pending: Pending::new(Version::Http2),
        }
    }
}

/// What a direction's frames say, for the pairing.
enum Event {
    /// A complete header block of HEADERS (not `PUSH_PROMISE`) on `stream`.
    Headers {
        stream: u32,
        fields: Fields,
    },
    Reset(u32),
    /// GOAWAY: streams above `last` were not and will not be processed.
    GoAway {
        last: u32,
    },
    /// The direction does not decode; it is dead from here.
    Malformed(String),
}

/// The header fields the pairing needs (first occurrence of each), raw.
#[derive(Debug, Default)]
struct Fields {
    method: Option<Vec<u8>>,
    path: Option<Vec<u8>>,
    authority: Option<Vec<u8>>,
    status: Option<Vec<u8>>,
}

impl Http2Conn {
    pub(super) fn feed(&mut self, dir: Direction, bytes: &[u8], out: &mut Vec<HttpOutput>) {
        let pending = &mut self.pending;
        match dir {
            Direction::ToServer => {
                let server_dead = self.server.dead;
                self.client
                    .feed(bytes, &mut |e| client_event(e, pending, server_dead, out));
            }
            Direction::ToClient => {
                self.server
                    .feed(bytes, &mut |e| server_event(e, pending, out));
            }
        }
    }

    pub(super) fn buffered_bytes(&self) -> usize {
        self.client.buffered_bytes() + self.server.buffered_bytes() + self.pending.bytes
    }
}

fn client_event(e: Event, pending: &mut Pending, server_dead: bool, out: &mut Vec<HttpOutput>) {
    match e {
        // Requests are on client-initiated (odd) streams; HEADERS without `:method` are
        // trailers.
        Event::Headers { stream, fields } if stream % 2 == 1 => {
            let Some(method) = fields.method else {
                return;
            };
            // CONNECT has no `:path`; its target is the authority.
            let target = fields.path.as_deref().or(fields.authority.as_deref());
            let request = Request::new(
                &method,
                target.unwrap_or_default(),
                fields.authority.as_deref(),
                Some(stream),
            );
            if server_dead {
                // No response can be decoded any more: record the request now.
                out.push(request.answered(Version::Http2, None));
            } else {
                pending.push(request, out);
            }
        }
        Event::Headers { .. } | Event::GoAway { .. } => {}
        Event::Reset(stream) => pending.answer_stream(stream, None, out),
        Event::Malformed(detail) => out.push(malformed(detail)),
    }
}

fn server_event(e: Event, pending: &mut Pending, out: &mut Vec<HttpOutput>) {
    match e {
        Event::Headers { stream, fields } => {
            // No `:status`: trailers. 1xx: informational, the final response follows.
            if let Some(status) = fields.status.as_deref().and_then(parse_status)
                && status >= 200
            {
                pending.answer_stream(stream, Some(status), out);
            }
        }
        Event::Reset(stream) => pending.answer_stream(stream, None, out),
        Event::GoAway { last } => {
            let unanswered: Vec<u32> = pending
                .requests
                .iter()
                .filter_map(|r| r.stream_id)
                .filter(|&s| s > last)
                .collect();
            for stream in unanswered {
                pending.answer_stream(stream, None, out);
            }
        }
        Event::Malformed(detail) => {
            out.push(malformed(detail));
            pending.drain(out);
        }
    }
}

/// A three-digit status code.
fn parse_status(s: &[u8]) -> Option<u16> {
    match s {
        [a @ b'1'..=b'9', b @ b'0'..=b'9', c @ b'0'..=b'9'] => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// The frame reader of one direction.
#[derive(Debug)]
struct Side {
    dir: Direction,
    /// Bytes of the client preface still to see (0 on the server side).
    preface_left: usize,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    /// The frame whose payload is being read, after its header.
    frame: Option<Frame>,
    /// A header block waiting for CONTINUATION frames.
    block: Option<Block>,
    hpack: hpack::Decoder,
    dead: bool,
}

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    /// Payload bytes not read yet.
    left: usize,
    /// How many payload bytes to keep (the rest is skipped).
    keep: usize,
    payload: Vec<u8>,
}

#[derive(Debug)]
struct Block {
    stream: u32,
    /// `PUSH_PROMISE`: decoded for the HPACK state only.
    push: bool,
    bytes: Vec<u8>,
}

impl Side {
    fn new(dir: Direction) -> Self {
        Side {
            dir,
            preface_left: if dir == Direction::ToServer {
                H2_PREFACE.len()
            } else {
                0
            },
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            frame: None,
            block: None,
            hpack: hpack::Decoder::new(),
            dead: false,
        }
    }

    fn name(&self) -> &'static str {
        match self.dir {
            Direction::ToServer => "client",
            Direction::ToClient => "server",
        }
    }

    fn buffered_bytes(&self) -> usize {
        self.frame.as_ref().map_or(0, |f| f.payload.len())
            + self.block.as_ref().map_or(0, |b| b.bytes.len())
            + self.hpack.table_size()
    }

    fn feed(&mut self, mut input: &[u8], emit: &mut dyn FnMut(Event)) {
        while !input.is_empty() && !self.dead {
            if let Err(detail) = self.step(&mut input, emit) {
                self.die(detail, emit);
            }
        }
    }

    /// Gives up on this direction: its HPACK state is lost, nothing after can be trusted.
    fn die(&mut self, detail: String, emit: &mut dyn FnMut(Event)) {
        self.dead = true;
        self.frame = None;
        self.block = None;
        self.hpack = hpack::Decoder::new();
        emit(Event::Malformed(detail));
    }

    /// Consumes some of `input`: preface, frame header or payload bytes.
    fn step(&mut self, input: &mut &[u8], emit: &mut dyn FnMut(Event)) -> Result<(), String> {
        if self.preface_left > 0 {
            let at = H2_PREFACE.len() - self.preface_left;
            let n = self.preface_left.min(input.len());
            if input[..n] != H2_PREFACE[at..at + n] {
                return Err("HTTP/2 client preface does not match".into());
            }
            self.preface_left -= n;
            *input = &input[n..];
            return Ok(());
        }
        let Some(frame) = &mut self.frame else {
            let n = (FRAME_HEADER_LEN - self.header_len).min(input.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&input[..n]);
            self.header_len += n;
            *input = &input[n..];
            if self.header_len == FRAME_HEADER_LEN {
                self.header_len = 0;
                self.start_frame()?;
                if self.frame.as_ref().is_some_and(|f| f.left == 0) {
                    self.end_frame(emit)?;
                }
            }
            return Ok(());
        };
        let n = frame.left.min(input.len());
        let keep = n.min(frame.keep - frame.payload.len());
        frame.payload.extend_from_slice(&input[..keep]);
        frame.left -= n;
        *input = &input[n..];
        if frame.left == 0 {
            self.end_frame(emit)?;
        }
        Ok(())
    }

    /// A frame header was read: checks it and decides what of the payload to keep.
    fn start_frame(&mut self) -> Result<(), String> {
        let h = self.header;
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let (kind, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        let side = self.name();
        // While a header block is open, only its CONTINUATION frames may come (section 6.10).
        match (&self.block, kind) {
            (Some(b), CONTINUATION) if b.stream == stream => {}
            (Some(b), _) => {
                return Err(format!(
                    "HTTP/2 {side} frame type {kind} on stream {stream} inside the header block \
                     of stream {}",
                    b.stream
                ));
            }
            (None, CONTINUATION) => {
                return Err(format!(
                    "HTTP/2 {side} CONTINUATION on stream {stream} without a header block"
                ));
            }
            (None, _) => {}
        }
        let keep = match kind {
            HEADERS | PUSH_PROMISE | CONTINUATION => {
                if stream == 0 {
                    return Err(format!("HTTP/2 {side} frame type {kind} on stream 0"));
                }
                let held = self.block.as_ref().map_or(0, |b| b.bytes.len());
                if held + len > MAX_HEADER_BLOCK_BYTES {
                    return Err(format!(
                        "HTTP/2 {side} header block on stream {stream} over {MAX_HEADER_BLOCK_BYTES} bytes"
                    ));
                }
                len
            }
            RST_STREAM => 4,
            GOAWAY => 8,
            // DATA, PRIORITY, SETTINGS, PING, WINDOW_UPDATE, unknown types: skipped. SETTINGS
            // needs no reading: the HPACK table size updates that follow a peer's
            // SETTINGS_HEADER_TABLE_SIZE are accepted up to our own cap.
            _ => 0,
        };
        self.frame = Some(Frame {
            kind,
            flags,
            stream,
            left: len,
            keep: keep.min(len),
            payload: Vec::with_capacity(keep.min(len).min(16 * 1024)),
        });
        Ok(())
    }

    /// A frame's payload is complete.
    fn end_frame(&mut self, emit: &mut dyn FnMut(Event)) -> Result<(), String> {
        let Some(frame) = self.frame.take() else {
            return Ok(());
        };
        let side = self.name();
        let stream = frame.stream;
        let fragment = |skip: usize| -> Result<Vec<u8>, String> {
            block_fragment(&frame.payload, frame.flags, skip)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| {
                    format!(
                        "HTTP/2 {side} frame type {} on stream {stream} has bad padding",
                        frame.kind
                    )
                })
        };
        match frame.kind {
            HEADERS => {
                let skip = if frame.flags & PRIORITY != 0 { 5 } else { 0 };
                self.block = Some(Block {
                    stream,
                    push: false,
                    bytes: fragment(skip)?,
                });
            }
            PUSH_PROMISE => {
                // The promised stream id comes before the fragment.
                self.block = Some(Block {
                    stream,
                    push: true,
                    bytes: fragment(4)?,
                });
            }
            CONTINUATION => {
                if let Some(b) = &mut self.block {
                    b.bytes.extend_from_slice(&frame.payload);
                }
            }
            RST_STREAM if frame.payload.len() == 4 && stream != 0 => emit(Event::Reset(stream)),
            GOAWAY if frame.payload.len() == 8 => {
                let p = &frame.payload;
                let last = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff;
                emit(Event::GoAway { last });
            }
            _ => return Ok(()),
        }
        // HEADERS and PUSH_PROMISE carry END_HEADERS like CONTINUATION does.
        if frame.flags & END_HEADERS != 0
            && matches!(frame.kind, HEADERS | PUSH_PROMISE | CONTINUATION)
            && let Some(block) = self.block.take()
        {
            let fields = self.decode_block(&block)?;
            if !block.push {
                emit(Event::Headers {
                    stream: block.stream,
                    fields,
                });
            }
        }
        Ok(())
    }

    fn decode_block(&mut self, block: &Block) -> Result<Fields, String> {
        let mut fields = Fields::default();
        self.hpack
            .decode(&block.bytes, |name, value| {
                let slot = match name {
                    b":method" => &mut fields.method,
                    b":path" => &mut fields.path,
                    b":authority" => &mut fields.authority,
                    b":status" => &mut fields.status,
                    _ => return,
                };
                if slot.is_none() {
                    // Bounded again when the request is made; this caps what a huge field
                    // costs here.
                    let cut = value.len().min(super::MAX_TARGET_BYTES + 1);
                    *slot = Some(value[..cut].to_vec());
                }
            })
            .map_err(|e| {
                format!(
                    "HTTP/2 {} header block on stream {}: {e}",
                    self.name(),
                    block.stream
                )
            })?;
        Ok(fields)
    }
}

/// The header block fragment of a HEADERS or `PUSH_PROMISE` payload: after the pad length (if
/// PADDED) and `skip` bytes (priority fields or promised stream id), before the padding.
fn block_fragment(payload: &[u8], flags: u8, skip: usize) -> Option<&[u8]> {
    let (pad, rest) = if flags & PADDED != 0 {
        let (&pad, rest) = payload.split_first()?;
        (usize::from(pad), rest)
    } else {
        (0, payload)
    };
    let rest = rest.get(skip..)?;
    rest.get(..rest.len().checked_sub(pad)?)
}
