//! Message framing for one direction of a PostgreSQL connection: reassembles messages across
//! chunk boundaries with bounded memory, and resynchronises after garbage.

use super::MAX_STARTUP_LEN;
use crate::sql::{Direction, MAX_STATEMENT_BYTES, Malformed};
use crate::wire::Reader;

/// Bytes of one message body kept; the rest of a longer message is skipped as it streams by.
/// A statement bound plus room for names and parameters.
pub(crate) const MAX_KEPT_BODY: usize = MAX_STATEMENT_BYTES + 64 * 1024;
/// The server rejects messages past 1 GiB; a longer length is garbage.
const MAX_MESSAGE_LEN: u32 = 1 << 30;
/// Messages that only carry names or a tag are short.
const MAX_SHORT_LEN: u32 = 64 * 1024;
/// While resynchronising, a candidate message this long at most is accepted, so that garbage
/// cannot make the decoder skip far ahead; and this many bytes are searched at most.
const MAX_RESYNC_LEN: u32 = 64 * 1024;
const RESYNC_WINDOW: usize = 2 * MAX_RESYNC_LEN as usize;

#[derive(Debug)]
pub(crate) enum Frame {
    /// `ty` is 0 for the untyped startup-phase packets. `cut` says the body was longer than
    /// [`MAX_KEPT_BODY`] and only its start is in `body`.
    Message {
        ty: u8,
        body: Vec<u8>,
        cut: bool,
    },
    Malformed(Malformed),
}

#[derive(Debug)]
enum State {
    Header {
        have: [u8; 5],
        n: usize,
    },
    Body {
        ty: u8,
        remaining: usize,
        kept: Vec<u8>,
        cut: bool,
    },
    Resync {
        buf: Vec<u8>,
    },
}

impl State {
    fn header() -> Self {
        State::Header { have: [0; 5], n: 0 }
    }
}

#[derive(Debug)]
pub(crate) struct Framer {
    dir: Direction,
    state: State,
    /// Bytes read past a message found by resynchronisation, to be framed next.
    replay: Vec<u8>,
    replay_pos: usize,
}

impl Framer {
    pub(crate) fn new(dir: Direction) -> Self {
        Framer {
            dir,
            state: State::header(),
            replay: Vec::new(),
            replay_pos: 0,
        }
    }

    /// Bytes read past a resynchronisation point are waiting to be framed.
    pub(crate) fn has_replay(&self) -> bool {
        self.replay_pos < self.replay.len()
    }

    /// No partial message is held: the next byte starts a message.
    pub(crate) fn at_message_start(&self) -> bool {
        matches!(self.state, State::Header { n: 0, .. }) && self.replay_pos >= self.replay.len()
    }

    pub(crate) fn buffered_bytes(&self) -> usize {
        let partial = match &self.state {
            State::Header { .. } => 0,
            State::Body { kept, .. } => kept.len(),
            State::Resync { buf } => buf.len(),
        };
        partial + self.replay.len()
    }

    /// The next complete message, consuming from `input`; `None` once `input` is used up.
    pub(crate) fn next(&mut self, input: &mut &[u8], untyped: bool) -> Option<Frame> {
        if self.replay_pos < self.replay.len() {
            let replay = std::mem::take(&mut self.replay);
            let start = self.replay_pos;
            self.replay_pos = 0;
            let mut rest = replay.get(start..).unwrap_or_default();
            let before = rest.len();
            let frame = self.step(&mut rest, untyped);
            if self.replay.is_empty() {
                // No new replay was made by a resynchronisation: keep the unread part of this
                // one. (A resynchronisation consumes everything it is given.)
                self.replay_pos = start + (before - rest.len());
                self.replay = replay;
            }
            if frame.is_some() {
                return frame;
            }
        }
        if self.replay_pos >= self.replay.len() {
            self.replay.clear();
            self.replay_pos = 0;
        }
        self.step(input, untyped)
    }

    fn step(&mut self, input: &mut &[u8], untyped: bool) -> Option<Frame> {
        loop {
            match &mut self.state {
                State::Header { have, n } => {
                    let need = if untyped { 4 } else { 5 };
                    while *n < need {
                        let (&b, rest) = input.split_first()?;
                        if let Some(slot) = have.get_mut(*n) {
                            *slot = b;
                        }
                        *n += 1;
                        *input = rest;
                    }
                    let (ty, len) = if untyped {
                        (0, u32::from_be_bytes([have[0], have[1], have[2], have[3]]))
                    } else {
                        (
                            have[0],
                            u32::from_be_bytes([have[1], have[2], have[3], have[4]]),
                        )
                    };
                    if !plausible_header(self.dir, ty, len, MAX_MESSAGE_LEN) {
                        let seen = have.get(..need).unwrap_or_default().to_vec();
                        self.state = State::Resync { buf: seen };
                        return Some(Frame::Malformed(header_error(self.dir, ty, len)));
                    }
                    let body_len = (len - 4) as usize;
                    if body_len == 0 {
                        self.state = State::header();
                        return Some(Frame::Message {
                            ty,
                            body: Vec::new(),
                            cut: false,
                        });
                    }
                    let cut = body_len > MAX_KEPT_BODY;
                    self.state = State::Body {
                        ty,
                        remaining: body_len,
                        kept: Vec::new(),
                        cut,
                    };
                }
                State::Body {
                    ty,
                    remaining,
                    kept,
                    cut,
                } => {
                    let n = (*remaining).min(input.len());
                    let (chunk, rest) = input.split_at(n);
                    *input = rest;
                    let room = MAX_KEPT_BODY.saturating_sub(kept.len()).min(chunk.len());
                    kept.extend_from_slice(chunk.get(..room).unwrap_or_default());
                    *remaining -= n;
                    if *remaining > 0 {
                        return None;
                    }
                    let frame = Frame::Message {
                        ty: *ty,
                        body: std::mem::take(kept),
                        cut: *cut,
                    };
                    self.state = State::header();
                    return Some(frame);
                }
                State::Resync { buf } => {
                    buf.extend_from_slice(input);
                    *input = &[];
                    return self.resync();
                }
            }
        }
    }

    /// Looks for the earliest plausible, structurally valid message in the resync buffer.
    fn resync(&mut self) -> Option<Frame> {
        let State::Resync { buf } = &mut self.state else {
            return None;
        };
        let mut wait_from = buf.len();
        // Validating candidates reads their bodies; crafted bytes could pack a candidate at every
        // position. The budget keeps the scan linear in the bytes held.
        let mut budget = 4 * buf.len() + MAX_RESYNC_LEN as usize;
        for start in 0..buf.len() {
            let mut r = Reader::new(buf.get(start..).unwrap_or_default());
            let (Some(ty), Some(len)) = (r.u8(), r.u32_be()) else {
                wait_from = start;
                break;
            };
            if !plausible_header(self.dir, ty, len, MAX_RESYNC_LEN) {
                continue;
            }
            let Some(body) = r.take((len - 4) as usize) else {
                wait_from = start;
                break;
            };
            if body.len() > budget {
                continue;
            }
            budget -= body.len();
            if !plausible_body(self.dir, ty, body) {
                continue;
            }
            let frame = Frame::Message {
                ty,
                body: body.to_vec(),
                cut: false,
            };
            self.replay = r.rest().to_vec();
            self.replay_pos = 0;
            self.state = State::header();
            return Some(frame);
        }
        buf.drain(..wait_from.min(buf.len()));
        if buf.len() > RESYNC_WINDOW {
            // The earliest candidate never completed within the window: give it up.
            let excess = buf.len() - RESYNC_WINDOW;
            buf.drain(..excess);
        }
        None
    }
}

fn header_error(dir: Direction, ty: u8, len: u32) -> Malformed {
    let side = match dir {
        Direction::ToServer => "client",
        Direction::ToClient => "server",
    };
    if ty == 0 {
        Malformed::PostgresStartup { side, len }
    } else {
        Malformed::PostgresHeader { side, ty, len }
    }
}

/// Whether a message type is valid in `dir` with this length (which counts itself).
fn plausible_header(dir: Direction, ty: u8, len: u32, max: u32) -> bool {
    let limit = |l: u32| (4..=l.min(max)).contains(&len);
    match (dir, ty) {
        (Direction::ToServer, 0) => (8..=MAX_STARTUP_LEN.min(max)).contains(&len),
        // Messages without a body, either way.
        (Direction::ToServer, b'S' | b'H' | b'X' | b'c')
        | (Direction::ToClient, b'1' | b'2' | b'3' | b'n' | b'I' | b's' | b'c') => len == 4,
        (Direction::ToServer, b'E' | b'D' | b'C' | b'f') => limit(MAX_SHORT_LEN),
        (Direction::ToServer, b'Q' | b'P' | b'B' | b'F' | b'd' | b'p') => limit(MAX_MESSAGE_LEN),
        (Direction::ToClient, b'Z') => len == 5,
        (Direction::ToClient, b'K' | b'C' | b'S' | b'R' | b'v' | b't' | b'G' | b'H' | b'W') => {
            limit(4 * MAX_SHORT_LEN)
        }
        (Direction::ToClient, b'D' | b'T' | b'E' | b'N' | b'A' | b'V' | b'd') => {
            limit(MAX_MESSAGE_LEN)
        }
        _ => false,
    }
}

/// Structural check of a candidate found while resynchronising.
fn plausible_body(dir: Direction, ty: u8, body: &[u8]) -> bool {
    let mut r = Reader::new(body);
    let exact = |r: Reader<'_>| r.is_empty();
    match (dir, ty) {
        (Direction::ToServer, b'Q') => r.cstr().is_some_and(|q| !q.is_empty()) && exact(r),
        (Direction::ToServer, b'P') => {
            r.cstr().is_some()
                && r.cstr().is_some()
                && r.i16_be()
                    .is_some_and(|n| n >= 0 && r.rest().len() == 4 * n as usize)
        }
        (Direction::ToServer, b'B') => {
            r.cstr().is_some()
                && r.cstr().is_some()
                && super::values::bind_parameters(&mut r, &[]).2
                && skip_formats(&mut r)
                && exact(r)
        }
        (Direction::ToServer, b'E') => r.cstr().is_some() && r.i32_be().is_some() && exact(r),
        (Direction::ToServer, b'D' | b'C') => {
            matches!(r.u8(), Some(b'S' | b'P')) && r.cstr().is_some() && exact(r)
        }
        (Direction::ToClient, b'C') => r.cstr().is_some_and(|t| !t.is_empty()) && exact(r),
        (Direction::ToClient, b'Z') => matches!(r.u8(), Some(b'I' | b'T' | b'E')),
        (Direction::ToClient, b'D') => data_row(&mut r) && exact(r),
        (Direction::ToClient, b'E' | b'N') => error_fields(&mut r) && exact(r),
        (Direction::ToClient, b'S') => r.cstr().is_some() && r.cstr().is_some() && exact(r),
        _ => true,
    }
}

fn skip_formats(r: &mut Reader<'_>) -> bool {
    r.i16_be()
        .is_some_and(|n| n >= 0 && r.take(2 * n as usize).is_some())
}

fn data_row(r: &mut Reader<'_>) -> bool {
    let Some(n) = r.i16_be() else { return false };
    (0..n.max(0)).all(|_| match r.i32_be() {
        Some(-1) => true,
        Some(len) if len >= 0 => r.take(len as usize).is_some(),
        _ => false,
    })
}

fn error_fields(r: &mut Reader<'_>) -> bool {
    loop {
        match r.u8() {
            Some(0) => return true,
            Some(_) if r.cstr().is_some() => {}
            _ => return false,
        }
    }
}
