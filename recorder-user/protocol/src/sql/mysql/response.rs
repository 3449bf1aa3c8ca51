//! The server's answer to one MySQL command: OK, ERR, or one or more result sets (column count,
//! column definitions, optional EOF, rows, terminator). Rows are counted, never kept.

use std::fmt::Write as _;

use super::framer::Packet;
use super::{
    CLIENT_DEPRECATE_EOF, CLIENT_PROTOCOL_41, CLIENT_SESSION_TRACK, MARIADB_CLIENT_CACHE_METADATA,
};
use crate::sql::MAX_RESULT_BYTES;
use crate::wire::{Reader, lossy};

const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;
const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x0040;
const SERVER_SESSION_STATE_CHANGED: u16 = 0x4000;
const SESSION_TRACK_SCHEMA: u8 = 1;
/// MariaDB progress reports travel as ERR packets with this errno; they end nothing.
const PROGRESS_REPORT: u16 = 0xffff;

#[derive(Debug, Clone, Copy)]
enum State {
    /// First packet of a result: OK, ERR, LOCAL INFILE request or a column count.
    Start,
    Columns {
        left: u64,
    },
    ColumnsEof,
    Rows,
    PrepareParams {
        left: u16,
        columns: u16,
    },
    PrepareParamsEof {
        columns: u16,
    },
    PrepareColumns {
        left: u16,
    },
    PrepareColumnsEof,
}

#[derive(Debug)]
pub(crate) struct Response {
    state: State,
    /// One entry per result ("OK, 1 row affected", "3 rows in set", the error).
    results: Vec<String>,
    results_len: usize,
    failed: bool,
    rows: u64,
    prepared: Option<(u32, u16)>,
    schema: Option<String>,
    /// Capabilities the answer shows in use (for a connection whose handshake was not seen).
    learned: u64,
}

/// What an OK packet says.
struct Ok {
    affected: u64,
    last_insert_id: u64,
    status: u16,
    schema: Option<String>,
}

impl Response {
    /// `rows_first`: the answer is rows straight away (`COM_STMT_FETCH`).
    pub(crate) fn new(rows_first: bool) -> Self {
        Response {
            state: if rows_first {
                State::Rows
            } else {
                State::Start
            },
            results: Vec::new(),
            results_len: 0,
            failed: false,
            rows: 0,
            prepared: None,
            schema: None,
            learned: 0,
        }
    }

    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    /// Statement id and parameter count of a successful `COM_STMT_PREPARE`.
    pub(crate) fn prepared(&self) -> Option<(u32, u16)> {
        self.prepared.filter(|_| !self.failed)
    }

    /// The current database as reported by session state tracking.
    pub(crate) fn schema_change(&self) -> Option<String> {
        self.schema.clone()
    }

    pub(crate) fn learned_caps(&self) -> u64 {
        self.learned
    }

    pub(crate) fn result_text(&self) -> String {
        match self.results.as_slice() {
            [] => "OK".to_string(),
            results => results.join("; "),
        }
    }

    fn push_result(&mut self, text: String) {
        // Multi-statement answers can be many; keep the list within the result bound.
        if self.results_len + text.len() <= MAX_RESULT_BYTES {
            self.results_len += text.len() + 2;
            self.results.push(text);
        }
    }

    fn error(&mut self, p: &Packet, caps: u64) -> bool {
        if Reader::new(p.payload.get(1..).unwrap_or_default()).u16_le() == Some(PROGRESS_REPORT) {
            return false;
        }
        self.failed = true;
        self.push_result(error_text(&p.payload, caps & CLIENT_PROTOCOL_41 != 0));
        true
    }

    fn ok(&mut self, p: &Packet, caps: u64) -> u16 {
        let ok = parse_ok(&p.payload, caps);
        let rows = if ok.affected == 1 { "row" } else { "rows" };
        let mut text = format!("OK, {} {rows} affected", ok.affected);
        if ok.last_insert_id != 0 {
            let _ = write!(text, ", last insert id {}", ok.last_insert_id);
        }
        self.push_result(text);
        if ok.schema.is_some() {
            self.schema = ok.schema;
        }
        ok.status
    }

    /// A packet of a query-like answer. Returns whether the answer is complete.
    pub(crate) fn result_packet(&mut self, p: &Packet, caps: u64, binary: bool) -> bool {
        let first = p.payload.first().copied();
        match self.state {
            State::Start => match first {
                Some(0x00) => self.ok(p, caps) & SERVER_MORE_RESULTS_EXISTS == 0,
                Some(0xff) => self.error(p, caps),
                // LOCAL INFILE request: the client sends the file, then the server's OK/ERR.
                Some(0xfb) => false,
                None => true,
                Some(_) => {
                    let mut r = Reader::new(&p.payload);
                    let Some(columns) = r.lenenc() else {
                        return true;
                    };
                    // MariaDB metadata caching appends a "metadata follows" byte; protocol 41
                    // has nothing after the count, so the byte itself tells.
                    let flag = r.u8();
                    if flag.is_some() {
                        self.learned |= MARIADB_CLIENT_CACHE_METADATA;
                    }
                    let metadata = flag != Some(0);
                    self.rows = 0;
                    self.state = match (metadata && columns > 0, caps & CLIENT_DEPRECATE_EOF != 0) {
                        (true, _) => State::Columns { left: columns },
                        (false, true) => State::Rows,
                        (false, false) => State::ColumnsEof,
                    };
                    false
                }
            },
            State::Columns { left } => {
                self.state = match (left.saturating_sub(1), caps & CLIENT_DEPRECATE_EOF != 0) {
                    (0, true) => State::Rows,
                    (0, false) => State::ColumnsEof,
                    (left, _) => State::Columns { left },
                };
                false
            }
            State::ColumnsEof => match first {
                Some(0xff) => self.error(p, caps),
                Some(0xfe) if p.first_len < 0x00ff_ffff => {
                    let status = terminator_status(&p.payload, caps);
                    if binary && status & SERVER_STATUS_CURSOR_EXISTS != 0 {
                        self.push_result("cursor opened".to_string());
                        return true;
                    }
                    self.state = State::Rows;
                    false
                }
                // A row where the EOF was expected: the connection uses CLIENT_DEPRECATE_EOF
                // though its handshake was not seen.
                _ => {
                    self.learned |= CLIENT_DEPRECATE_EOF;
                    self.rows += 1;
                    self.state = State::Rows;
                    false
                }
            },
            State::Rows => match first {
                Some(0xfe) if p.first_len < 0x00ff_ffff => self.end_of_rows(p, caps, binary),
                Some(0xff) => self.error(p, caps),
                _ => {
                    self.rows += 1;
                    false
                }
            },
            _ => true,
        }
    }

    /// The EOF or OK that ends a result set's rows.
    fn end_of_rows(&mut self, p: &Packet, caps: u64, binary: bool) -> bool {
        let status = terminator_status(&p.payload, caps);
        let text = if binary && self.rows == 0 && status & SERVER_STATUS_CURSOR_EXISTS != 0 {
            "cursor opened".to_string()
        } else {
            let rows = if self.rows == 1 { "row" } else { "rows" };
            format!("{} {rows} in set", self.rows)
        };
        self.push_result(text);
        if status & SERVER_MORE_RESULTS_EXISTS != 0 {
            self.state = State::Start;
            return false;
        }
        true
    }

    /// A packet of the answer to `COM_STMT_PREPARE`.
    pub(crate) fn prepare_packet(&mut self, p: &Packet, caps: u64) -> bool {
        let eof = caps & CLIENT_DEPRECATE_EOF == 0;
        let first = p.payload.first().copied();
        self.state = match self.state {
            State::Start => match first {
                Some(0x00) => {
                    let mut r = Reader::new(p.payload.get(1..).unwrap_or_default());
                    let (Some(id), Some(columns), Some(params)) =
                        (r.u32_le(), r.u16_le(), r.u16_le())
                    else {
                        return true;
                    };
                    self.prepared = Some((id, params));
                    self.push_result("OK".to_string());
                    after_prepare_params(params, columns, eof)
                }
                Some(0xff) => return self.error(p, caps),
                _ => return true,
            },
            State::PrepareParams { left, columns } => match left.saturating_sub(1) {
                0 if eof => State::PrepareParamsEof { columns },
                0 => after_prepare_params(0, columns, eof),
                left => State::PrepareParams { left, columns },
            },
            State::PrepareParamsEof { columns } => after_prepare_params(0, columns, eof),
            State::PrepareColumns { left } => match left.saturating_sub(1) {
                0 if eof => State::PrepareColumnsEof,
                0 => return true,
                left => State::PrepareColumns { left },
            },
            _ => return true,
        };
        matches!(self.state, State::Start)
    }

    /// Column definitions up to EOF (`COM_FIELD_LIST`).
    pub(crate) fn until_eof(&mut self, p: &Packet) -> bool {
        match p.payload.first() {
            Some(0xff) => {
                self.failed = true;
                true
            }
            Some(0xfe) => true,
            _ => false,
        }
    }

    /// A single-packet answer (ping, reset, `COM_INIT_DB`...).
    pub(crate) fn one_packet(&mut self, p: &Packet, caps: u64) -> bool {
        match p.payload.first() {
            Some(0x00) => {
                self.ok(p, caps);
                true
            }
            Some(0xff) => self.error(p, caps),
            _ => true,
        }
    }
}

/// Next state after the parameter definitions of a prepare answer; `Start` means done.
fn after_prepare_params(params: u16, columns: u16, _eof: bool) -> State {
    match (params, columns) {
        (0, 0) => State::Start,
        (0, c) => State::PrepareColumns { left: c },
        (p, c) => State::PrepareParams {
            left: p,
            columns: c,
        },
    }
}

/// Status flags of the EOF or OK packet (0xfe header) ending column definitions or rows. An
/// EOF packet is exactly 5 bytes; an OK packet in its place (`CLIENT_DEPRECATE_EOF`) is longer.
/// Telling them apart by length keeps the flags right when the capabilities are assumed.
fn terminator_status(payload: &[u8], caps: u64) -> u16 {
    if payload.len() <= 5 {
        eof_status(payload)
    } else {
        parse_ok(payload, caps).status
    }
}

fn eof_status(payload: &[u8]) -> u16 {
    let mut r = Reader::new(payload.get(1..).unwrap_or_default());
    let _warnings = r.u16_le();
    r.u16_le().unwrap_or(0)
}

fn parse_ok(payload: &[u8], caps: u64) -> Ok {
    let mut r = Reader::new(payload.get(1..).unwrap_or_default());
    let affected = r.lenenc().unwrap_or(0);
    let last_insert_id = r.lenenc().unwrap_or(0);
    let mut ok = Ok {
        affected,
        last_insert_id,
        status: 0,
        schema: None,
    };
    if caps & CLIENT_PROTOCOL_41 == 0 {
        return ok;
    }
    ok.status = r.u16_le().unwrap_or(0);
    let _warnings = r.u16_le();
    if caps & CLIENT_SESSION_TRACK != 0
        && r.lenenc_bytes().is_some()
        && ok.status & SERVER_SESSION_STATE_CHANGED != 0
        && let Some(state) = r.lenenc_bytes()
    {
        ok.schema = tracked_schema(state);
    }
    ok
}

/// The schema entry of session state tracking data, if any.
fn tracked_schema(state: &[u8]) -> Option<String> {
    let mut r = Reader::new(state);
    let mut schema = None;
    while let (Some(kind), Some(data)) = (r.u8(), r.lenenc_bytes()) {
        if kind == SESSION_TRACK_SCHEMA {
            schema = Reader::new(data).lenenc_bytes().map(lossy);
        }
    }
    schema
}

/// "ERROR 1064 (42000): You have an error..." from an ERR packet.
pub(crate) fn error_text(payload: &[u8], protocol_41: bool) -> String {
    let mut r = Reader::new(payload.get(1..).unwrap_or_default());
    let code = r.u16_le().unwrap_or(0);
    let mut state = None;
    if protocol_41 && r.rest().first() == Some(&b'#') {
        state = r.take(6).and_then(|s| s.get(1..)).map(lossy);
    }
    let message = lossy(r.rest());
    match state {
        Some(state) => format!("ERROR {code} ({state}): {message}"),
        None => format!("ERROR {code}: {message}"),
    }
}
