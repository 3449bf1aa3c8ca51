//! PostgreSQL frontend/backend protocol v3, one decoder per connection.
//!
//! Requests are queued in the order the client sent them; the server answers in the same order,
//! so each response resolves the front of the queue. ReadyForQuery closes a Query or a Sync
//! group and resynchronises the queue whatever happened inside it.

use std::collections::VecDeque;

use super::{
    Decoder, Direction, MAX_PENDING, MAX_PENDING_BYTES, MAX_STATEMENT_BYTES, Malformed,
    NO_RESPONSE, Notice, Output, Prepared, Protocol, SqlEvent, Status, bounded_result, lexer,
    text_of,
};
use crate::wire::{Reader, lossy};

mod framer;
mod values;

use framer::{Frame, Framer};

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
const PROTOCOL_3: u32 = 3 << 16;
/// A StartupMessage is small (a few parameters); anything longer is not one.
const MAX_STARTUP_LEN: u32 = 10_000;

/// Result of a statement skipped by the server because an earlier one in its group failed.
pub const NOT_EXECUTED: &str = "not executed: an earlier statement in the same request failed";

/// Whether `first` (the first client bytes of a connection) is a PostgreSQL startup-phase packet.
pub fn looks_like_startup(first: &[u8]) -> bool {
    let mut r = Reader::new(first);
    let (Some(len), Some(code)) = (r.u32_be(), r.u32_be()) else {
        return false;
    };
    match code {
        SSL_REQUEST | GSSENC_REQUEST => len == 8,
        CANCEL_REQUEST => len == 16,
        c => c & 0xffff_0000 == PROTOCOL_3 && (8..=MAX_STARTUP_LEN).contains(&len),
    }
}

/// Per-connection state of the PostgreSQL decoder.
#[derive(Debug)]
pub struct PostgresDecoder {
    phase: Phase,
    to_server: Framer,
    to_client: Framer,
    /// The client sent SSLRequest or GSSENCRequest; the server answers with one byte.
    awaiting_encryption_reply: Option<u32>,
    user: Option<String>,
    database: Option<String>,
    statements: Prepared<Vec<u8>, Statement>,
    portals: Prepared<Vec<u8>, Portal>,
    queue: VecDeque<Item>,
    /// The texts of the statements the client sent since the last [`Self::take_sent`].
    sent: super::Sent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Client messages are untyped (startup, SSLRequest, ...).
    Startup,
    /// Regular typed messages.
    Typed,
    /// The raw stream is encrypted from here on.
    Encrypted,
}

#[derive(Debug, Clone)]
struct Statement {
    text: String,
    truncated: bool,
    param_types: Vec<u32>,
}

#[derive(Debug, Clone)]
struct Portal {
    text: String,
    truncated: bool,
    params: Vec<Option<String>>,
}

/// What the client asked, awaiting the server's answer.
#[derive(Debug)]
enum Item {
    /// A statement run by Query or Execute; resolved by CommandComplete, `EmptyQueryResponse`,
    /// `PortalSuspended` or ErrorResponse.
    /// `span`: for a statement of a simple Query, its characters in the query string, to match
    /// an error's position to the statement it is in.
    Statement {
        event: SqlEvent,
        rows: u64,
        emitted: bool,
        span: Option<(usize, usize)>,
    },
    /// Parse; if it fails, its text is what failed.
    Parse {
        event: SqlEvent,
    },
    Bind,
    Describe,
    Close,
    FunctionCall,
    /// An empty Query string, answered by `EmptyQueryResponse`.
    EmptyQuery,
    /// End of a Query or Sync: answered by ReadyForQuery.
    Sync,
}

impl Default for PostgresDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl PostgresDecoder {
    pub fn new() -> Self {
        PostgresDecoder {
            phase: Phase::Startup,
            to_server: Framer::new(Direction::ToServer),
            to_client: Framer::new(Direction::ToClient),
            awaiting_encryption_reply: None,
            user: None,
            database: None,
            statements: Prepared::default(),
            portals: Prepared::default(),
            queue: VecDeque::new(),
            sent: super::Sent::default(),
        }
    }

    /// The statements the client sent since the last call (see [`super::AnyDecoder::take_sent`]).
    pub fn take_sent(&mut self) -> Vec<String> {
        self.sent.take()
    }

    /// A decoder for the plaintext of this connection once TLS started: it begins with the
    /// StartupMessage sent inside TLS.
    #[must_use]
    pub fn for_tls_plaintext(&self) -> Self {
        Self::new()
    }

    /// The database user, once known.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The database name, once known.
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// Bytes held for this connection: partial messages, remembered statements and portals,
    /// statements awaiting results (texts only; a bound for memory accounting and tests).
    pub fn buffered_bytes(&self) -> usize {
        let waiting = self.waiting_bytes();
        self.to_server.buffered_bytes()
            + self.to_client.buffered_bytes()
            + self.statements.bytes()
            + self.portals.bytes()
            + waiting
    }

    fn feed_to_server(&mut self, mut input: &[u8], out: &mut Vec<Output>) {
        // Bytes read past a resynchronisation point (the replay) are framed now, not when the
        // next chunk comes.
        while (!input.is_empty() || self.to_server.has_replay()) && self.phase != Phase::Encrypted {
            if self.phase == Phase::Startup && self.to_server.at_message_start() {
                if super::looks_like_tls_record(input) {
                    // Direct TLS (sslnegotiation=direct): no SSLRequest, ciphertext at once.
                    self.start_encryption(out, Output::TlsStarted);
                    return;
                }
                if input.first().is_some_and(|&b| b != 0) {
                    // A startup packet's length starts with 0; a typed message does not. The
                    // connection was already running when capture started.
                    self.enter_typed();
                }
            }
            let untyped = self.phase == Phase::Startup;
            match self.to_server.next(&mut input, untyped) {
                Some(Frame::Message { ty, body, cut }) => self.client_message(ty, &body, cut, out),
                Some(Frame::Malformed(e)) => {
                    out.push(e.into());
                    self.enter_typed();
                }
                None => break,
            }
        }
    }

    fn feed_to_client(&mut self, mut input: &[u8], out: &mut Vec<Output>) {
        while (!input.is_empty() || self.to_client.has_replay()) && self.phase != Phase::Encrypted {
            if let Some(request) = self.awaiting_encryption_reply.take()
                && self.to_client.at_message_start()
                && self.encryption_reply(request, &mut input, out)
            {
                continue;
            }
            match self.to_client.next(&mut input, false) {
                Some(Frame::Message { ty, body, .. }) => self.server_message(ty, &body, out),
                Some(Frame::Malformed(e)) => out.push(e.into()),
                None => break,
            }
        }
    }

    /// The one-byte answer to SSLRequest/GSSENCRequest. Returns whether it consumed a byte.
    fn encryption_reply(&mut self, request: u32, input: &mut &[u8], out: &mut Vec<Output>) -> bool {
        match (request, input.first()) {
            (SSL_REQUEST, Some(b'S')) => self.start_encryption(out, Output::TlsStarted),
            (GSSENC_REQUEST, Some(b'G')) => self.start_encryption(
                out,
                Output::Notice(Notice {
                    reason: "sql_gssapi_encrypted",
                    detail: "PostgreSQL connection encrypted with GSSAPI; statements not visible"
                        .into(),
                }),
            ),
            (_, Some(b'N')) => {}
            // An old server answers an error message; let the framer read it.
            _ => return false,
        }
        *input = input.get(1..).unwrap_or_default();
        true
    }

    fn start_encryption(&mut self, out: &mut Vec<Output>, what: Output) {
        self.phase = Phase::Encrypted;
        out.push(what);
    }

    fn enter_typed(&mut self) {
        if self.phase == Phase::Startup {
            self.phase = Phase::Typed;
        }
    }

    fn client_message(&mut self, ty: u8, body: &[u8], cut: bool, out: &mut Vec<Output>) {
        let ok = match ty {
            0 => self.startup_packet(body),
            b'Q' => self.query(body, cut),
            b'P' => self.parse(body, cut),
            b'B' => self.bind(body, cut),
            b'E' => self.execute(body),
            b'C' => self.close(body),
            b'D' => self.push(Item::Describe),
            b'S' => self.push(Item::Sync),
            b'F' => self.push(Item::FunctionCall) && self.push(Item::Sync),
            // Flush, Terminate, Copy{Data,Done,Fail}; and 'p' (password / SASL / GSS response),
            // deliberately never looked into.
            _ => true,
        };
        if !ok {
            out.push(Malformed::PostgresMessage(char::from(ty)).into());
        }
        self.bound_queue(out);
    }

    fn startup_packet(&mut self, body: &[u8]) -> bool {
        let mut r = Reader::new(body);
        let Some(code) = r.u32_be() else { return false };
        match code {
            SSL_REQUEST | GSSENC_REQUEST => self.awaiting_encryption_reply = Some(code),
            CANCEL_REQUEST => {}
            c if c & 0xffff_0000 == PROTOCOL_3 => {
                self.phase = Phase::Typed;
                return self.startup_parameters(r);
            }
            _ => {
                self.phase = Phase::Typed;
                return false;
            }
        }
        true
    }

    fn startup_parameters(&mut self, mut r: Reader<'_>) -> bool {
        while let Some(key) = r.cstr() {
            if key.is_empty() {
                break;
            }
            let Some(value) = r.cstr() else { return false };
            match key {
                b"user" => self.user = Some(lossy(value)),
                b"database" => self.database = Some(lossy(value)),
                _ => {}
            }
        }
        // The server's default database is the user name.
        if self.database.as_deref().is_none_or(str::is_empty) {
            self.database.clone_from(&self.user);
        }
        true
    }

    fn event(&self, text: String, truncated: bool, params: Vec<Option<String>>) -> SqlEvent {
        SqlEvent {
            text,
            params,
            db_system: Protocol::Postgresql,
            user: self.user.clone(),
            database: self.database.clone(),
            status: Status::Unknown,
            result: NO_RESPONSE.to_string(),
            truncated,
        }
    }

    fn push(&mut self, item: Item) -> bool {
        if let Item::Statement { event, .. } | Item::Parse { event } = &item {
            self.sent.push(&event.text);
        }
        self.queue.push_back(item);
        true
    }

    fn statement_item(event: SqlEvent, span: Option<(usize, usize)>) -> Item {
        Item::Statement {
            event,
            rows: 0,
            emitted: false,
            span,
        }
    }

    fn query(&mut self, body: &[u8], cut: bool) -> bool {
        let sql = body.strip_suffix(&[0]).unwrap_or(body);
        if !cut && (body.last() != Some(&0) || sql.contains(&0)) {
            // The server rejects it with a protocol error and runs nothing; only its
            // ReadyForQuery is awaited.
            self.push(Item::Sync);
            return false;
        }
        let ranges = lexer::statements(sql);
        let count = ranges.len();
        if count == 0 {
            self.push(Item::EmptyQuery);
        }
        // Character offsets (error positions count characters), computed incrementally.
        let (mut chars, mut at) = (0, 0);
        for (i, (start, end)) in ranges.into_iter().enumerate() {
            chars += char_count(sql.get(at..start).unwrap_or_default());
            let part = sql.get(start..end).unwrap_or_default();
            let span = (chars, chars + char_count(part));
            (chars, at) = (span.1, end);
            let (text, over) = text_of(part, MAX_STATEMENT_BYTES);
            let truncated = over || (cut && i + 1 == count);
            let event = self.event(text, truncated, Vec::new());
            self.push(Self::statement_item(event, Some(span)));
        }
        self.push(Item::Sync)
    }

    fn parse(&mut self, body: &[u8], cut: bool) -> bool {
        let mut r = Reader::new(body);
        let Some(name) = r.cstr() else { return false };
        let (sql, complete) = match r.cstr() {
            Some(sql) => (sql, true),
            None if cut => (r.rest(), false),
            None => return false,
        };
        let (text, over) = text_of(sql, MAX_STATEMENT_BYTES);
        let mut param_types = Vec::new();
        if complete && let Some(n) = r.i16_be() {
            for _ in 0..n.max(0) {
                let Some(oid) = r.u32_be() else { break };
                param_types.push(oid);
            }
        }
        let truncated = over || !complete;
        let event = self.event(text.clone(), truncated, Vec::new());
        let size = text.len() + name.len() + 4 * param_types.len();
        self.statements.insert(
            name.to_vec(),
            Statement {
                text,
                truncated,
                param_types,
            },
            size,
        );
        self.push(Item::Parse { event })
    }

    fn bind(&mut self, body: &[u8], cut: bool) -> bool {
        let mut r = Reader::new(body);
        let (Some(portal), Some(name)) = (r.cstr(), r.cstr()) else {
            return false;
        };
        let statement = self.statements.get(name).cloned();
        let (text, mut truncated, types) = match statement {
            Some(s) => (s.text, s.truncated, s.param_types),
            None => (unseen_statement(name), false, Vec::new()),
        };
        let (params, params_cut, ok) = values::bind_parameters(&mut r, &types);
        truncated |= params_cut || (cut && !ok);
        let size =
            text.len() + portal.len() + params.iter().flatten().map(String::len).sum::<usize>();
        self.portals.insert(
            portal.to_vec(),
            Portal {
                text,
                truncated,
                params,
            },
            size,
        );
        self.push(Item::Bind);
        ok || cut
    }

    fn execute(&mut self, body: &[u8]) -> bool {
        let mut r = Reader::new(body);
        let Some(portal) = r.cstr() else { return false };
        let event = match self.portals.get(portal).cloned() {
            Some(p) => self.event(p.text, p.truncated, p.params),
            None => self.event(unseen_portal(portal), false, Vec::new()),
        };
        self.push(Self::statement_item(event, None))
    }

    fn close(&mut self, body: &[u8]) -> bool {
        let mut r = Reader::new(body);
        let (Some(kind), Some(name)) = (r.u8(), r.cstr()) else {
            return false;
        };
        match kind {
            b'S' => self.statements.remove(name),
            b'P' => self.portals.remove(name),
            _ => return false,
        }
        self.push(Item::Close)
    }

    fn server_message(&mut self, ty: u8, body: &[u8], out: &mut Vec<Output>) {
        match ty {
            b'C' => {
                let tag = Reader::new(body).cstr().map_or_else(|| lossy(body), lossy);
                self.complete(Status::Ok, tag, out);
            }
            b'I' => self.complete(Status::Ok, "EMPTY".to_string(), out),
            b's' => self.complete(Status::Ok, String::new(), out),
            b'E' => self.error(body, out),
            b'Z' => self.ready_for_query(out),
            b'D' => self.count_row(),
            b'1' => self.pop_aux(|i| matches!(i, Item::Parse { .. })),
            b'2' => self.pop_aux(|i| matches!(i, Item::Bind)),
            b'3' => self.pop_aux(|i| matches!(i, Item::Close)),
            b'T' | b'n' => self.pop_aux(|i| matches!(i, Item::Describe)),
            b'V' => self.pop_aux(|i| matches!(i, Item::FunctionCall)),
            b'S' => self.parameter_status(body),
            // Authentication, BackendKeyData, NoticeResponse, notifications, COPY traffic,
            // ParameterDescription: nothing to record.
            _ => {}
        }
    }

    fn parameter_status(&mut self, body: &[u8]) {
        let mut r = Reader::new(body);
        if let (Some(b"session_authorization"), Some(value)) = (r.cstr(), r.cstr()) {
            self.user = Some(lossy(value));
        }
    }

    fn count_row(&mut self) {
        if let Some(Item::Statement { rows, .. }) = self.queue.front_mut() {
            *rows += 1;
        }
    }

    /// Pops the front item if `is` it; a response that matches nothing is ignored.
    fn pop_aux(&mut self, is: impl Fn(&Item) -> bool) {
        if self.queue.front().is_some_and(is) {
            self.queue.pop_front();
        }
    }

    /// CommandComplete, `EmptyQueryResponse` or `PortalSuspended`: the front statement ran. Parse,
    /// Bind and Describe before it completed (their own answers may have been lost).
    fn complete(&mut self, status: Status, tag: String, out: &mut Vec<Output>) {
        while let Some(front) = self.queue.front() {
            match front {
                Item::Sync => return,
                Item::Statement { .. } => break,
                Item::EmptyQuery => {
                    self.queue.pop_front();
                    return;
                }
                _ => {
                    self.queue.pop_front();
                }
            }
        }
        if let Some(Item::Statement {
            event,
            rows,
            emitted,
            ..
        }) = self.queue.pop_front()
        {
            let result = if tag.is_empty() {
                format!("SUSPENDED after {rows} rows")
            } else {
                tag
            };
            emit(out, event, emitted, status, result);
        }
    }

    /// ErrorResponse: the front request failed, and the server skips the rest of its group.
    fn error(&mut self, body: &[u8], out: &mut Vec<Output>) {
        let (result, position) = error_text(body);
        if matches!(self.queue.front(), None | Some(Item::Sync)) {
            // The Sync stays: its ReadyForQuery still comes.
            Self::error_without_request(result, out);
            return;
        }
        if let Some(at) = position.and_then(|p| self.statement_at(p)) {
            // A syntax error anywhere in a Query string fails it before any statement runs:
            // the error belongs to the statement it points into, those before it did not run.
            for _ in 0..at {
                if let Some(Item::Statement { event, emitted, .. }) = self.queue.pop_front() {
                    emit(out, event, emitted, Status::Error, NOT_EXECUTED.to_string());
                }
            }
        }
        match self.queue.pop_front() {
            Some(Item::Statement { event, emitted, .. }) => {
                emit(out, event, emitted, Status::Error, result);
            }
            Some(aux) => self.aux_error(aux, result, out),
            None => {}
        }
        self.skip_rest_of_group(out);
    }

    /// Index in the queue of the Query statement holding character `position` (1-based), within
    /// the current group.
    fn statement_at(&self, position: usize) -> Option<usize> {
        self.queue
            .iter()
            .take_while(|i| !matches!(i, Item::Sync))
            .position(|i| {
                matches!(i, Item::Statement { span: Some((start, end)), .. }
                if *start < position && position <= *end)
            })
    }

    /// An error with no request waiting: a failed login, a failed implicit COMMIT at Sync, a
    /// server shutdown.
    fn error_without_request(result: String, out: &mut Vec<Output>) {
        out.push(Output::Notice(Notice::server_error(result)));
    }

    /// Parse, Bind or Describe failed: the Execute that follows in the group is the statement
    /// that failed; a lone Parse is reported with its own text.
    fn aux_error(&mut self, aux: Item, result: String, out: &mut Vec<Output>) {
        let next_statement = self
            .queue
            .iter()
            .take_while(|i| !matches!(i, Item::Sync))
            .position(|i| matches!(i, Item::Statement { .. }));
        if let Some(pos) = next_statement
            && let Some(Item::Statement { event, emitted, .. }) = self.queue.remove(pos)
        {
            emit(out, event, emitted, Status::Error, result);
        } else if let Item::Parse { event } = aux {
            emit(out, event, false, Status::Error, result);
        }
    }

    fn skip_rest_of_group(&mut self, out: &mut Vec<Output>) {
        while let Some(front) = self.queue.front() {
            if matches!(front, Item::Sync) {
                return;
            }
            if let Some(Item::Statement { event, emitted, .. }) = self.queue.pop_front() {
                emit(out, event, emitted, Status::Error, NOT_EXECUTED.to_string());
            }
        }
    }

    /// ReadyForQuery ends the group: anything still waiting in it got no answer.
    fn ready_for_query(&mut self, out: &mut Vec<Output>) {
        if !self.queue.iter().any(|i| matches!(i, Item::Sync)) {
            return;
        }
        while let Some(item) = self.queue.pop_front() {
            match item {
                Item::Sync => return,
                Item::Statement { event, emitted, .. } => {
                    emit(
                        out,
                        event,
                        emitted,
                        Status::Unknown,
                        NO_RESPONSE.to_string(),
                    );
                }
                _ => {}
            }
        }
    }

    /// Keeps the queue bounded: a client that pipelines without reading answers, or a lost
    /// direction, must not grow memory.
    fn bound_queue(&mut self, out: &mut Vec<Output>) {
        while self.queue.len() > MAX_PENDING
            || (self.queue.len() > 1 && self.waiting_bytes() > MAX_PENDING_BYTES)
        {
            if let Some(Item::Statement { event, emitted, .. }) = self.queue.pop_front() {
                emit(
                    out,
                    event,
                    emitted,
                    Status::Unknown,
                    NO_RESPONSE.to_string(),
                );
            }
        }
    }

    fn waiting_bytes(&self) -> usize {
        self.queue
            .iter()
            .map(|i| match i {
                Item::Statement { event, .. } | Item::Parse { event } => event_bytes(event),
                _ => 0,
            })
            .sum()
    }
}

impl Decoder for PostgresDecoder {
    fn feed(&mut self, dir: Direction, bytes: &[u8], out: &mut Vec<Output>) {
        match dir {
            Direction::ToServer => self.feed_to_server(bytes, out),
            Direction::ToClient => self.feed_to_client(bytes, out),
        }
    }

    fn flush_pending(&mut self, out: &mut Vec<Output>) {
        for item in &mut self.queue {
            if let Item::Statement { event, emitted, .. } = item
                && !*emitted
            {
                *emitted = true;
                out.push(Output::Sql(event.clone()));
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Output>) {
        self.flush_pending(out);
        self.queue.clear();
        self.statements.clear();
        self.portals.clear();
    }
}

fn event_bytes(event: &SqlEvent) -> usize {
    event.text.len()
        + event
            .params
            .iter()
            .flatten()
            .map(String::len)
            .sum::<usize>()
}

fn emit(out: &mut Vec<Output>, mut event: SqlEvent, emitted: bool, status: Status, result: String) {
    if emitted {
        return;
    }
    event.status = status;
    event.result = bounded_result(result);
    out.push(Output::Sql(event));
}

/// "ERROR 42601: syntax error at or near \"SELEC\"" from an ErrorResponse's fields, and the
/// error's position in the query string (1-based characters) if it has one.
fn error_text(body: &[u8]) -> (String, Option<usize>) {
    let mut r = Reader::new(body);
    let (mut severity, mut localized, mut code, mut message) = (None, None, None, None);
    let mut position = None;
    while let Some(field) = r.u8() {
        if field == 0 {
            break;
        }
        let Some(value) = r.cstr() else { break };
        match field {
            b'V' => severity = Some(lossy(value)),
            b'S' => localized = Some(lossy(value)),
            b'C' => code = Some(lossy(value)),
            b'M' => message = Some(lossy(value)),
            b'P' => position = std::str::from_utf8(value).ok().and_then(|p| p.parse().ok()),
            _ => {}
        }
    }
    let severity = severity.or(localized).unwrap_or_else(|| "ERROR".into());
    let code = code.unwrap_or_else(|| "?????".into());
    (
        format!("{severity} {code}: {}", message.unwrap_or_default()),
        position,
    )
}

/// Characters of UTF-8 text (bytes that do not continue a character).
fn char_count(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b & 0xc0 != 0x80).count()
}

fn unseen_statement(name: &[u8]) -> String {
    format!("<prepared statement {:?}: text not seen>", lossy(name))
}

fn unseen_portal(name: &[u8]) -> String {
    format!("<portal {:?}: statement text not seen>", lossy(name))
}
