//! MySQL/MariaDB client/server protocol (protocol 41), one decoder per connection.
//!
//! The server speaks first (greeting with its capabilities); the client answers with its own
//! capabilities, user and database; authentication follows and is never looked into. Then each
//! command starts a new sequence (sequence number 0) and the server answers it in full before
//! the next, so responses resolve the front of a request queue.

use std::collections::VecDeque;

use super::{
    Decoder, Direction, MAX_PARAM_BYTES, MAX_PARAMS, MAX_PENDING, MAX_PENDING_BYTES,
    MAX_STATEMENT_BYTES, Malformed, NO_RESPONSE, Notice, Output, Prepared, Protocol, SqlEvent,
    Status, bounded_result, text_of,
};
use crate::wire::{Reader, lossy};

mod framer;
mod handshake;
mod response;
mod values;

use framer::{Framer, Packet};
pub use handshake::{looks_like_greeting, looks_like_handshake_response};
use response::Response;

// Capability flags (lower 32 bits are MySQL's; MariaDB's extended ones are shifted up by 32).
pub(crate) const CLIENT_MYSQL: u64 = 1;
pub(crate) const CLIENT_CONNECT_WITH_DB: u64 = 1 << 3;
pub(crate) const CLIENT_COMPRESS: u64 = 1 << 5;
pub(crate) const CLIENT_PROTOCOL_41: u64 = 1 << 9;
pub(crate) const CLIENT_SSL: u64 = 1 << 11;
pub(crate) const CLIENT_SECURE_CONNECTION: u64 = 1 << 15;
pub(crate) const CLIENT_PLUGIN_AUTH_LENENC_DATA: u64 = 1 << 21;
pub(crate) const CLIENT_SESSION_TRACK: u64 = 1 << 23;
pub(crate) const CLIENT_DEPRECATE_EOF: u64 = 1 << 24;
pub(crate) const CLIENT_ZSTD_COMPRESSION: u64 = 1 << 26;
pub(crate) const CLIENT_QUERY_ATTRIBUTES: u64 = 1 << 27;
pub(crate) const MARIADB_CLIENT_CACHE_METADATA: u64 = 1 << (32 + 4);

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_FIELD_LIST: u8 = 0x04;
const COM_PROCESS_INFO: u8 = 0x0a;
const COM_CHANGE_USER: u8 = 0x11;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_STMT_CLOSE: u8 = 0x19;
const COM_STMT_FETCH: u8 = 0x1c;
const COM_STMT_BULK_EXECUTE: u8 = 0xfa;
/// MariaDB: execute the statement prepared last, in the same pipeline.
const LAST_PREPARED: u32 = 0xffff_ffff;

/// Capabilities assumed for a connection whose handshake was not seen.
const ASSUMED_CAPS: u64 = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the server greeting (or, on a TLS plaintext stream, the client's response).
    Greeting,
    /// Greeting seen; the client's `HandshakeResponse` comes next.
    HandshakeResponse,
    /// Authentication exchange: client packets carry credentials and are skipped.
    Auth,
    Command,
    /// Nothing more is decoded on this stream (TLS started, or a compressed protocol).
    Stopped,
}

#[derive(Debug, Clone)]
struct Statement {
    text: String,
    truncated: bool,
    params: u16,
    /// Parameter types (type, unsigned flag) as last sent with new-params-bound.
    types: Vec<(u8, bool)>,
}

/// A parameter sent with `COM_STMT_SEND_LONG_DATA`, awaiting its execute.
#[derive(Debug)]
struct LongData {
    statement: u32,
    param: u16,
    /// Rendered start of the data; empty past [`MAX_LONG_DATA_KEPT`] parameters.
    text: String,
    cut: bool,
}

/// Long-data parameters whose text is kept (bounds memory: each keeps up to `MAX_PARAM_BYTES`).
const MAX_LONG_DATA_KEPT: usize = 16;

/// A command awaiting its response.
#[derive(Debug)]
struct Request {
    kind: Kind,
    /// The statement to record once the response is complete.
    event: Option<SqlEvent>,
    response: Response,
    flushed: bool,
    /// An execute of the "last prepared" statement sent before that prepare was answered
    /// (MariaDB pipelining): its flags and parameter bytes, decoded once the statement's
    /// parameter count is known.
    deferred: Option<(u8, Vec<u8>)>,
}

#[derive(Debug, Clone)]
enum Kind {
    /// Query-like: OK, ERR, or result sets (possibly several).
    Query,
    /// `COM_STMT_EXECUTE`: like a query, with binary rows.
    Execute,
    InitDb(String),
    Prepare,
    /// Rows from an open cursor.
    Fetch,
    /// Column definitions up to EOF.
    FieldList,
    /// A single response packet of any form.
    OnePacket,
}

#[derive(Debug)]
pub struct MysqlDecoder {
    phase: Phase,
    to_server: Framer,
    to_client: Framer,
    server_caps: Option<u64>,
    caps: u64,
    /// The handshake response was seen: `caps` are the connection's, not assumed.
    caps_known: bool,
    user: Option<String>,
    database: Option<String>,
    statements: Prepared<u32, Statement>,
    last_prepared: Option<u32>,
    long_data: Vec<LongData>,
    queue: VecDeque<Request>,
    /// The texts of the statements the client sent since the last [`Self::take_sent`].
    sent: super::Sent,
}

impl Default for MysqlDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl MysqlDecoder {
    pub fn new() -> Self {
        MysqlDecoder {
            phase: Phase::Greeting,
            to_server: Framer::default(),
            to_client: Framer::default(),
            server_caps: None,
            caps: ASSUMED_CAPS,
            caps_known: false,
            user: None,
            database: None,
            statements: Prepared::default(),
            last_prepared: None,
            long_data: Vec::new(),
            queue: VecDeque::new(),
            sent: super::Sent::default(),
        }
    }

    /// The statements the client sent since the last call (see [`super::AnyDecoder::take_sent`]).
    pub fn take_sent(&mut self) -> Vec<String> {
        self.sent.take()
    }

    /// A decoder for the plaintext of this connection once TLS started: it knows the server's
    /// capabilities from the greeting on the raw stream and expects the `HandshakeResponse`.
    #[must_use]
    pub fn for_tls_plaintext(&self) -> Self {
        let mut d = Self::new();
        d.server_caps = self.server_caps;
        d.phase = Phase::HandshakeResponse;
        d
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// Bytes held for this connection: partial packets, prepared statements, statements awaiting
    /// results (texts only; a bound for memory accounting and tests).
    pub fn buffered_bytes(&self) -> usize {
        let waiting = self.waiting_bytes();
        let long: usize = self.long_data.iter().map(|l| l.text.len()).sum();
        self.to_server.buffered_bytes()
            + self.to_client.buffered_bytes()
            + self.statements.bytes()
            + long
            + waiting
    }

    fn has(&self, cap: u64) -> bool {
        self.caps & cap != 0
    }

    fn feed_to_server(&mut self, mut input: &[u8], out: &mut Vec<Output>) {
        // No TLS-record check here: MySQL starts TLS only after an SSL request packet, and a
        // handshake packet's length bytes can look like a TLS record header.
        while !input.is_empty() && self.phase != Phase::Stopped {
            let Some(packet) = self.to_server.next(&mut input) else {
                break;
            };
            self.client_packet(&packet, out);
        }
    }

    fn feed_to_client(&mut self, mut input: &[u8], out: &mut Vec<Output>) {
        while !input.is_empty() && self.phase != Phase::Stopped {
            let Some(packet) = self.to_client.next(&mut input) else {
                break;
            };
            self.server_packet(&packet, out);
        }
    }

    fn stop(&mut self, out: &mut Vec<Output>, why: Output) {
        self.phase = Phase::Stopped;
        out.push(why);
    }

    fn client_packet(&mut self, p: &Packet, out: &mut Vec<Output>) {
        match self.phase {
            Phase::HandshakeResponse if p.seq > 0 => self.handshake_response(p, out),
            // Without the greeting, only a packet shaped like a handshake response is taken for
            // one: an authentication packet (a password) must never be read as a user name.
            Phase::Greeting if p.seq > 0 && handshake::is_client_handshake(&p.payload) => {
                self.handshake_response(p, out);
            }
            // In `Greeting`, the handshake was not seen: the connection predates the capture.
            // In `Auth`, a new command sequence: authentication is over even if its OK was
            // missed.
            Phase::Greeting | Phase::Auth if p.seq == 0 => {
                self.phase = Phase::Command;
                self.command(p, out);
            }
            Phase::Command if p.seq == 0 => self.command(p, out),
            // Authentication data (passwords, keys), LOCAL INFILE contents: never looked into.
            _ => {}
        }
        self.bound_queue(out);
    }

    fn handshake_response(&mut self, p: &Packet, out: &mut Vec<Output>) {
        let hs = match handshake::client_handshake(&p.payload) {
            Ok(hs) => hs,
            Err(e) => {
                out.push(e.into());
                if e == Malformed::MysqlPre41 {
                    self.phase = Phase::Stopped;
                }
                return;
            }
        };
        self.caps = hs.caps & self.server_caps.unwrap_or(u64::MAX);
        self.caps_known = true;
        if hs.ssl_request {
            self.stop(out, Output::TlsStarted);
            return;
        }
        self.user = hs.user;
        self.database = hs.database;
        self.phase = Phase::Auth;
        if self.has(CLIENT_COMPRESS | CLIENT_ZSTD_COMPRESSION) {
            let detail = "compressed MySQL protocol; statements not decoded".to_string();
            self.stop(
                out,
                Output::Notice(Notice {
                    reason: "sql_unsupported",
                    detail,
                }),
            );
        }
    }

    fn event(&self, text: String, truncated: bool, params: Vec<Option<String>>) -> SqlEvent {
        SqlEvent {
            text,
            params,
            db_system: Protocol::Mysql,
            user: self.user.clone(),
            database: self.database.clone(),
            status: Status::Unknown,
            result: NO_RESPONSE.to_string(),
            truncated,
        }
    }

    fn request(&mut self, kind: Kind, event: Option<SqlEvent>) {
        if let Some(event) = &event {
            self.sent.push(&event.text);
        }
        let response = Response::new(matches!(kind, Kind::Fetch));
        self.queue.push_back(Request {
            kind,
            event,
            response,
            flushed: false,
            deferred: None,
        });
    }

    fn command(&mut self, p: &Packet, out: &mut Vec<Output>) {
        let Some((&cmd, body)) = p.payload.split_first() else {
            out.push(Malformed::MysqlEmptyCommand.into());
            return;
        };
        match cmd {
            COM_QUERY => self.query(body, p.cut, out),
            COM_INIT_DB => {
                let db = lossy(body);
                let event = self.event(format!("USE {db}"), false, Vec::new());
                self.request(Kind::InitDb(db), Some(event));
            }
            COM_STMT_PREPARE => {
                let (text, truncated) = text_of(body, MAX_STATEMENT_BYTES);
                let event = self.event(text, truncated || p.cut, Vec::new());
                self.request(Kind::Prepare, Some(event));
            }
            COM_STMT_EXECUTE => self.execute(body, out),
            COM_STMT_BULK_EXECUTE => {
                let id = Reader::new(body).u32_le();
                let event = self.prepared_event(id, Vec::new(), false);
                self.request(Kind::Query, Some(event));
            }
            COM_STMT_SEND_LONG_DATA => self.long_data(body),
            COM_STMT_CLOSE => {
                if let Some(id) = Reader::new(body).u32_le() {
                    self.statements.remove(&id);
                }
            }
            COM_STMT_FETCH => self.request(Kind::Fetch, None),
            COM_FIELD_LIST => self.request(Kind::FieldList, None),
            COM_PROCESS_INFO => self.request(Kind::Query, None),
            COM_CHANGE_USER => self.change_user(body),
            COM_QUIT => {}
            // Ping, statistics, reset, set option, debug, refresh, shutdown...: one packet back.
            0x05..=0x0f | 0x1a | 0x1b | 0x1f => self.request(Kind::OnePacket, None),
            other => out.push(Malformed::MysqlUnknownCommand(other).into()),
        }
    }

    fn query(&mut self, body: &[u8], cut: bool, out: &mut Vec<Output>) {
        let mut r = Reader::new(body);
        if self.has(CLIENT_QUERY_ATTRIBUTES) && !skip_query_attributes(&mut r) {
            out.push(Malformed::MysqlQueryAttributes.into());
            return;
        }
        let (text, truncated) = text_of(r.rest(), MAX_STATEMENT_BYTES);
        let event = self.event(text, truncated || cut, Vec::new());
        self.request(Kind::Query, Some(event));
    }

    fn change_user(&mut self, body: &[u8]) {
        let mut r = Reader::new(body);
        let user = r.cstr().map(lossy);
        let auth = if self.has(CLIENT_SECURE_CONNECTION) {
            r.u8().and_then(|n| r.take(usize::from(n)))
        } else {
            r.cstr()
        };
        if let Some(user) = user {
            self.user = Some(user);
        }
        if auth.is_some() {
            self.database = r.cstr().map(lossy).filter(|d| !d.is_empty());
        }
        // Prepared statements do not survive a change of user.
        self.statements.clear();
        self.phase = Phase::Auth;
    }

    fn long_data(&mut self, body: &[u8]) {
        let mut r = Reader::new(body);
        let (Some(id), Some(param)) = (r.u32_le(), r.u16_le()) else {
            return;
        };
        let statement = self.resolve_id(id);
        let (chunk, cut) = text_of(r.rest(), MAX_PARAM_BYTES);
        let count = self.long_data.len();
        let kept = count < MAX_LONG_DATA_KEPT;
        match self
            .long_data
            .iter_mut()
            .find(|l| l.statement == statement && l.param == param)
        {
            Some(l) => {
                l.text.push_str(&chunk);
                l.cut |= cut | super::truncate_utf8(&mut l.text, MAX_PARAM_BYTES);
            }
            None if count < MAX_PARAMS => {
                let text = if kept { chunk } else { String::new() };
                self.long_data.push(LongData {
                    statement,
                    param,
                    text,
                    cut: cut || !kept,
                });
            }
            None => {}
        }
    }

    fn resolve_id(&self, id: u32) -> u32 {
        match (id, self.last_prepared) {
            (LAST_PREPARED, Some(last)) => last,
            _ => id,
        }
    }

    fn prepared_event(&self, id: Option<u32>, params: Vec<Option<String>>, cut: bool) -> SqlEvent {
        let id = id.map(|id| self.resolve_id(id));
        if let Some(s) = id.and_then(|id| self.statements.get(&id)) {
            self.event(s.text.clone(), s.truncated || cut, params)
        } else {
            let name = id.map_or_else(|| "?".to_string(), |id| id.to_string());
            self.event(
                format!("<prepared statement {name}: text not seen>"),
                cut,
                params,
            )
        }
    }

    fn execute(&mut self, body: &[u8], out: &mut Vec<Output>) {
        let mut r = Reader::new(body);
        let (Some(id), Some(flags), Some(_iterations)) = (r.u32_le(), r.u8(), r.u32_le()) else {
            out.push(Malformed::MysqlExecute.into());
            return;
        };
        if id == LAST_PREPARED && self.execute_after_pending_prepare(flags, r.rest()) {
            return;
        }
        let id = self.resolve_id(id);
        let (params, cut, ok) = self.execute_params(id, flags, &mut r);
        if !ok {
            out.push(Malformed::MysqlExecute.into());
        }
        let event = self.prepared_event(Some(id), params, cut);
        self.long_data.retain(|l| l.statement != id);
        self.request(Kind::Execute, Some(event));
    }

    /// An execute of the statement whose prepare is still unanswered: queued with that
    /// statement's text, parameters decoded when the prepare's answer gives their count.
    fn execute_after_pending_prepare(&mut self, flags: u8, params: &[u8]) -> bool {
        let Some(prepare) = self
            .queue
            .iter()
            .rev()
            .find(|r| matches!(r.kind, Kind::Prepare))
        else {
            return false;
        };
        let (text, truncated) = prepare
            .event
            .as_ref()
            .map_or_else(Default::default, |e| (e.text.clone(), e.truncated));
        let event = self.event(text, truncated, Vec::new());
        self.request(Kind::Execute, Some(event));
        if let Some(req) = self.queue.back_mut() {
            let kept = params.get(..MAX_STATEMENT_BYTES).unwrap_or(params);
            req.deferred = Some((flags, kept.to_vec()));
        }
        true
    }

    /// The prepare `id` was answered: decode the executes queued behind it.
    fn decode_deferred(&mut self, id: u32) {
        let waiting: Vec<usize> = self
            .queue
            .iter()
            .take_while(|r| !matches!(r.kind, Kind::Prepare))
            .enumerate()
            .filter(|(_, r)| r.deferred.is_some())
            .map(|(i, _)| i)
            .collect();
        for i in waiting {
            let Some((flags, bytes)) = self.queue.get_mut(i).and_then(|r| r.deferred.take()) else {
                continue;
            };
            let (params, cut, _) = self.execute_params(id, flags, &mut Reader::new(&bytes));
            if let Some(event) = self.queue.get_mut(i).and_then(|r| r.event.as_mut()) {
                event.params = params;
                event.truncated |= cut;
            }
        }
    }

    /// Decodes the parameters of an execute with the statement's parameter count and the types
    /// sent now or remembered from an earlier execute. Returns (values, cut, parsed fully).
    fn execute_params(
        &mut self,
        id: u32,
        flags: u8,
        r: &mut Reader<'_>,
    ) -> (Vec<Option<String>>, bool, bool) {
        let named = self.has(CLIENT_QUERY_ATTRIBUTES);
        let Some(stmt) = self.statements.get_mut(&id) else {
            return (Vec::new(), false, true);
        };
        let mut count = usize::from(stmt.params);
        // MySQL 8 with query attributes: an explicit count (PARAMETER_COUNT_AVAILABLE).
        if named && flags & 0x08 != 0 {
            match r.lenenc().and_then(|n| usize::try_from(n).ok()) {
                Some(n) => count = n,
                None => return (Vec::new(), false, false),
            }
        }
        if count == 0 {
            return (Vec::new(), false, true);
        }
        let Some(nulls) = r.take(count.div_ceil(8)) else {
            return (Vec::new(), false, false);
        };
        if r.u8() == Some(1) {
            let mut types = Vec::with_capacity(count.min(MAX_PARAMS));
            for i in 0..count {
                let (Some(ty), Some(flag)) = (r.u8(), r.u8()) else {
                    return (Vec::new(), false, false);
                };
                if named && r.lenenc_bytes().is_none() {
                    return (Vec::new(), false, false);
                }
                // Types past the kept parameters are read over, not remembered.
                if i < MAX_PARAMS {
                    types.push((ty, flag & 0x80 != 0));
                }
            }
            stmt.types = types;
        }
        let mut params = Vec::new();
        // Values past MAX_PARAMS are the last bytes of the packet: no need to read them.
        let cut = count > MAX_PARAMS;
        let mut cut_value = false;
        for i in 0..count.min(MAX_PARAMS) {
            let is_null = nulls.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
            let long = self
                .long_data
                .iter()
                .find(|l| l.statement == id && usize::from(l.param) == i);
            let value = if is_null {
                None
            } else if let Some(l) = long {
                cut_value |= l.cut;
                Some(l.text.clone())
            } else {
                let Some(&(ty, unsigned)) = stmt.types.get(i) else {
                    return (params, cut || cut_value, false);
                };
                if ty == values::TYPE_NULL {
                    None
                } else {
                    let Some((text, over)) = values::read_value(r, ty, unsigned) else {
                        return (params, cut || cut_value, false);
                    };
                    cut_value |= over;
                    Some(text)
                }
            };
            params.push(value);
        }
        let cut = cut || cut_value;
        (params, cut, true)
    }

    fn server_packet(&mut self, p: &Packet, out: &mut Vec<Output>) {
        match self.phase {
            Phase::Greeting if p.seq == 0 => self.greeting(p, out),
            Phase::Auth => self.auth_reply(p, out),
            Phase::Command => self.response(p, out),
            _ => {}
        }
    }

    fn greeting(&mut self, p: &Packet, out: &mut Vec<Output>) {
        if p.payload.first() == Some(&0xff) {
            // Refused before the handshake (too many connections, host not allowed).
            let detail = response::error_text(&p.payload, false);
            out.push(Output::Notice(Notice::server_error(detail)));
            return;
        }
        match handshake::greeting(&p.payload) {
            Ok(caps) => {
                self.server_caps = Some(caps);
                self.phase = Phase::HandshakeResponse;
            }
            Err(e) => out.push(e.into()),
        }
    }

    fn auth_reply(&mut self, p: &Packet, out: &mut Vec<Output>) {
        match p.payload.first() {
            Some(0x00) => self.phase = Phase::Command,
            Some(0xff) => {
                let detail = response::error_text(&p.payload, self.has(CLIENT_PROTOCOL_41));
                out.push(Output::Notice(Notice::server_error(detail)));
            }
            // Auth switch, more data (RSA key, fast-auth result): nothing to record.
            _ => {}
        }
    }

    fn response(&mut self, p: &Packet, out: &mut Vec<Output>) {
        let caps = self.caps;
        let Some(front) = self.queue.front_mut() else {
            return;
        };
        let done = match front.kind {
            Kind::Prepare => front.response.prepare_packet(p, caps),
            Kind::FieldList => front.response.until_eof(p),
            Kind::OnePacket | Kind::InitDb(_) => front.response.one_packet(p, caps),
            Kind::Query | Kind::Execute | Kind::Fetch => {
                front
                    .response
                    .result_packet(p, caps, matches!(front.kind, Kind::Execute))
            }
        };
        if !self.caps_known {
            self.caps |= front.response.learned_caps();
        }
        if done && let Some(req) = self.queue.pop_front() {
            self.complete(req, out);
        }
    }

    fn complete(&mut self, req: Request, out: &mut Vec<Output>) {
        let failed = req.response.failed();
        match &req.kind {
            Kind::InitDb(db) if !failed => self.database = Some(db.clone()),
            Kind::Query if !failed => self.track_use(req.event.as_ref()),
            Kind::Prepare => {
                if let (Some((id, params)), Some(event)) =
                    (req.response.prepared(), req.event.as_ref())
                {
                    self.remember(id, params, event);
                    self.decode_deferred(id);
                    // Prepared fine: the statement is recorded when executed.
                    return;
                }
            }
            _ => {}
        }
        if let Some(db) = req.response.schema_change() {
            self.database = Some(db);
        }
        if let Some(mut event) = req.event
            && !req.flushed
        {
            event.status = if failed { Status::Error } else { Status::Ok };
            event.result = bounded_result(req.response.result_text());
            out.push(Output::Sql(event));
        }
    }

    fn remember(&mut self, id: u32, params: u16, event: &SqlEvent) {
        let stmt = Statement {
            text: event.text.clone(),
            truncated: event.truncated,
            params,
            types: Vec::new(),
        };
        let size = event.text.len() + 64 + 2 * usize::from(params).min(MAX_PARAMS);
        self.statements.insert(id, stmt, size);
        self.last_prepared = Some(id);
    }

    /// `USE db` sent as a query changes the database (when session tracking is off).
    fn track_use(&mut self, event: Option<&SqlEvent>) {
        let Some(text) = event.map(|e| e.text.trim()) else {
            return;
        };
        let mut words = text.split_whitespace();
        if words.next().is_some_and(|w| w.eq_ignore_ascii_case("use"))
            && let Some(db) = words.next()
            && words.next().is_none()
        {
            let db = db.trim_end_matches(';').trim_matches('`');
            if !db.is_empty() {
                self.database = Some(db.to_string());
            }
        }
    }

    fn bound_queue(&mut self, out: &mut Vec<Output>) {
        while self.queue.len() > MAX_PENDING
            || (self.queue.len() > 1 && self.waiting_bytes() > MAX_PENDING_BYTES)
        {
            if let Some(Request {
                event: Some(event),
                flushed: false,
                ..
            }) = self.queue.pop_front()
            {
                out.push(Output::Sql(event));
            }
        }
    }

    /// Bytes held by requests awaiting their answers: statement texts, parameters, and the raw
    /// parameters of executes waiting for their prepare's answer.
    fn waiting_bytes(&self) -> usize {
        let event =
            |e: &SqlEvent| e.text.len() + e.params.iter().flatten().map(String::len).sum::<usize>();
        self.queue
            .iter()
            .map(|r| {
                r.event.as_ref().map_or(0, event) + r.deferred.as_ref().map_or(0, |d| d.1.len())
            })
            .sum()
    }
}

/// Skips the query attributes MySQL 8 puts before the text of `COM_QUERY`.
fn skip_query_attributes(r: &mut Reader<'_>) -> bool {
    let (Some(count), Some(_sets)) = (r.lenenc(), r.lenenc()) else {
        return false;
    };
    let Ok(count) = usize::try_from(count) else {
        return false;
    };
    if count == 0 {
        return true;
    }
    let Some(nulls) = r.take(count.div_ceil(8)) else {
        return false;
    };
    if r.u8() != Some(1) {
        return false;
    }
    let mut types = Vec::new();
    for _ in 0..count {
        let (Some(ty), Some(flag), Some(_name)) = (r.u8(), r.u8(), r.lenenc_bytes()) else {
            return false;
        };
        types.push((ty, flag & 0x80 != 0));
    }
    types.into_iter().enumerate().all(|(i, (ty, unsigned))| {
        let null = nulls.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
        null || ty == values::TYPE_NULL || values::read_value(r, ty, unsigned).is_some()
    })
}

impl Decoder for MysqlDecoder {
    fn feed(&mut self, dir: Direction, bytes: &[u8], out: &mut Vec<Output>) {
        match dir {
            Direction::ToServer => self.feed_to_server(bytes, out),
            Direction::ToClient => self.feed_to_client(bytes, out),
        }
    }

    fn flush_pending(&mut self, out: &mut Vec<Output>) {
        for req in &mut self.queue {
            if let (Some(event), false) = (&req.event, req.flushed) {
                req.flushed = true;
                out.push(Output::Sql(event.clone()));
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Output>) {
        self.flush_pending(out);
        self.queue.clear();
        self.statements.clear();
        self.long_data.clear();
    }
}
