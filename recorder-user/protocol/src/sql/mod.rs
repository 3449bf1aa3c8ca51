//! SQL wire protocol decoding: PostgreSQL (v3) and MySQL/MariaDB (protocol 41).
//!
//! Pure code over bytes. The capture layer hands each connection's plaintext byte stream, both
//! directions, to one decoder per connection; the decoder turns it into [`SqlEvent`]s (a
//! statement with its server result) and [`Notice`]s (malformed input). Chunks may be split
//! anywhere. Memory per connection is bounded (see the `MAX_*` constants), and no input makes a
//! decoder panic.
//!
//! What is never recorded: passwords and authentication exchanges, row data, COPY data.
//! `docs/sql-protocols.md` describes the decoding in full.

pub mod lexer;
pub mod mysql;
pub mod postgres;

pub use mysql::MysqlDecoder;
pub use postgres::PostgresDecoder;

use std::collections::VecDeque;
use std::fmt::Write as _;

use crate::{Direction, Notice};

/// Longest statement text kept; a longer one is cut here and flagged `truncated`.
pub const MAX_STATEMENT_BYTES: usize = 1 << 20;
/// Longest rendering of one bound parameter; a longer one is cut and the event flagged.
pub const MAX_PARAM_BYTES: usize = 4096;
/// Most parameters kept per statement; the rest are dropped and the event flagged.
pub const MAX_PARAMS: usize = 1024;
/// Most requests awaiting their result per connection (pipelining), and the bytes of statement
/// text they may hold together. Past either, the oldest is emitted with [`Status::Unknown`].
pub const MAX_PENDING: usize = 256;
pub const MAX_PENDING_BYTES: usize = 4 << 20;
/// Most prepared statements (and PostgreSQL portals) remembered per connection, and the bytes
/// of statement text they may hold together; the oldest is forgotten past either bound.
pub const MAX_PREPARED: usize = 512;
pub const MAX_PREPARED_BYTES: usize = 4 << 20;
/// Longest result string (a server error message can be long).
pub const MAX_RESULT_BYTES: usize = 4096;
/// Worst-case bytes one decoder holds (what `buffered_bytes` reports stays under it): two
/// partial messages, the prepared statement and portal budgets, the pending budget, each of
/// these three allowed to overshoot by one entry (a statement with all its parameters), and
/// MySQL long-data parameters. About 21 MiB; a few KiB in practice.
pub const MAX_CONNECTION_BYTES: usize = 2 * (MAX_STATEMENT_BYTES + 64 * 1024)
    + 2 * MAX_PREPARED_BYTES
    + MAX_PENDING_BYTES
    + 3 * (MAX_STATEMENT_BYTES + MAX_PARAMS * MAX_PARAM_BYTES + 128 * 1024)
    + 16 * MAX_PARAM_BYTES;

/// Result string of a statement still pending when the decoder is flushed.
pub const NO_RESPONSE: &str = "no response";
/// The `reason` of every notice about malformed protocol bytes.
pub const MALFORMED: &str = "malformed_sql_protocol";
/// The `reason` of a notice for a server error that answers no statement (a failed login).
pub const SERVER_ERROR: &str = "sql_server_error";

/// A SQL wire protocol, also the record's `db.system`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Postgresql,
    Mysql,
}

impl Protocol {
    /// The `db.system` value of the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Postgresql => "postgresql",
            Protocol::Mysql => "mysql",
        }
    }
}

/// Outcome of a statement, as the server reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Ok,
    Error,
    /// No result was seen (connection closed, response lost, or flushed while waiting).
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Unknown => "unknown",
        }
    }
}

/// One statement sent to the server, with its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlEvent {
    pub text: String,
    /// Bound parameters in order; `None` is SQL NULL. Empty for the simple/text protocol.
    pub params: Vec<Option<String>>,
    pub db_system: Protocol,
    pub user: Option<String>,
    pub database: Option<String>,
    pub status: Status,
    /// Command tag / row count on success ("INSERT 0 1", "OK, 2 rows affected"), the error
    /// with its SQLSTATE or errno on failure, [`NO_RESPONSE`] when none was seen.
    pub result: String,
    /// The text or a parameter was cut at a bound.
    pub truncated: bool,
}

/// Why bytes were not decodable; reported as a [`Notice`] with reason [`MALFORMED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("PostgreSQL {side} startup packet with length {len}")]
    PostgresStartup { side: &'static str, len: u32 },
    #[error("PostgreSQL {side} message type 0x{ty:02x} with length {len}")]
    PostgresHeader {
        side: &'static str,
        ty: u8,
        len: u32,
    },
    #[error("PostgreSQL client message {0:?} does not parse")]
    PostgresMessage(char),
    #[error("MySQL server greeting is not protocol 10")]
    MysqlGreetingVersion,
    #[error("MySQL server greeting does not parse")]
    MysqlGreeting,
    #[error("MySQL handshake response too short")]
    MysqlHandshake,
    #[error("MySQL pre-4.1 handshake is not decoded")]
    MysqlPre41,
    #[error("empty MySQL command packet")]
    MysqlEmptyCommand,
    #[error("unknown MySQL command 0x{0:02x}")]
    MysqlUnknownCommand(u8),
    #[error("MySQL query attributes do not parse")]
    MysqlQueryAttributes,
    #[error("MySQL COM_STMT_EXECUTE does not parse")]
    MysqlExecute,
}

impl From<Malformed> for Notice {
    fn from(e: Malformed) -> Self {
        Notice {
            reason: MALFORMED,
            detail: e.to_string(),
        }
    }
}

impl From<Malformed> for Output {
    fn from(e: Malformed) -> Self {
        Output::Notice(e.into())
    }
}

impl Notice {
    /// A server error that answers no statement (a failed login, a refused connection).
    fn server_error(detail: String) -> Self {
        Notice {
            reason: SERVER_ERROR,
            detail,
        }
    }
}

/// What a decoder produces, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Sql(SqlEvent),
    Notice(Notice),
    /// The connection switched to TLS on the raw stream: the decoder ignores the rest of the raw
    /// bytes. The statements arrive as plaintext from the TLS library hooks, fed to a decoder
    /// made by the decoder's `for_tls_plaintext`.
    TlsStarted,
}

/// A per-connection protocol decoder.
pub trait Decoder {
    /// Feeds the next chunk of one direction. Outputs are appended to `out`.
    fn feed(&mut self, dir: Direction, bytes: &[u8], out: &mut Vec<Output>);
    /// Emits every statement still waiting for its result with [`Status::Unknown`], keeping the
    /// connection state. A result that arrives later for such a statement is dropped, so callers
    /// use this on idle connections (a time bound), not on busy ones.
    fn flush_pending(&mut self, out: &mut Vec<Output>);
    /// The connection closed: like [`Decoder::flush_pending`].
    fn finish(&mut self, out: &mut Vec<Output>) {
        self.flush_pending(out);
    }
}

/// The statements a client sent lately, for a look before they run (approvals). Bounded: a
/// connection nobody asks about keeps only the last few.
#[derive(Debug, Default)]
pub struct Sent(Vec<String>);

impl Sent {
    pub const KEPT: usize = 16;

    fn push(&mut self, text: &str) {
        if self.0.len() == Self::KEPT {
            self.0.remove(0);
        }
        self.0.push(text.to_string());
    }

    fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.0)
    }
}

/// A decoder for either protocol, for callers that hold connections of both kinds.
#[derive(Debug)]
pub enum AnyDecoder {
    Postgres(PostgresDecoder),
    Mysql(MysqlDecoder),
}

impl AnyDecoder {
    pub fn new(protocol: Protocol) -> Self {
        match protocol {
            Protocol::Postgresql => AnyDecoder::Postgres(PostgresDecoder::new()),
            Protocol::Mysql => AnyDecoder::Mysql(MysqlDecoder::new()),
        }
    }

    /// A decoder for the plaintext of this connection once its raw stream started TLS.
    #[must_use]
    pub fn for_tls_plaintext(&self) -> Self {
        match self {
            AnyDecoder::Postgres(d) => AnyDecoder::Postgres(d.for_tls_plaintext()),
            AnyDecoder::Mysql(d) => AnyDecoder::Mysql(d.for_tls_plaintext()),
        }
    }

    /// The texts of the statements the client sent since the last call, oldest first: what a
    /// write held for approval asks the server to run. The last [`Sent::KEPT`] only.
    pub fn take_sent(&mut self) -> Vec<String> {
        match self {
            AnyDecoder::Postgres(d) => d.take_sent(),
            AnyDecoder::Mysql(d) => d.take_sent(),
        }
    }

    /// Bytes held for the connection (see the decoders' `buffered_bytes`).
    pub fn buffered_bytes(&self) -> usize {
        match self {
            AnyDecoder::Postgres(d) => d.buffered_bytes(),
            AnyDecoder::Mysql(d) => d.buffered_bytes(),
        }
    }
}

impl Decoder for AnyDecoder {
    fn feed(&mut self, dir: Direction, bytes: &[u8], out: &mut Vec<Output>) {
        match self {
            AnyDecoder::Postgres(d) => d.feed(dir, bytes, out),
            AnyDecoder::Mysql(d) => d.feed(dir, bytes, out),
        }
    }
    fn flush_pending(&mut self, out: &mut Vec<Output>) {
        match self {
            AnyDecoder::Postgres(d) => d.flush_pending(out),
            AnyDecoder::Mysql(d) => d.flush_pending(out),
        }
    }
}

/// Guesses the protocol of a new connection from the first bytes seen in one direction.
///
/// PostgreSQL clients speak first (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest);
/// MySQL servers speak first (the protocol-10 greeting). A MySQL client's HandshakeResponse41
/// is recognised too, since the plaintext of a TLS connection starts there.
pub fn guess(dir: Direction, first: &[u8]) -> Option<Protocol> {
    match dir {
        Direction::ToServer if postgres::looks_like_startup(first) => Some(Protocol::Postgresql),
        Direction::ToServer if mysql::looks_like_handshake_response(first) => Some(Protocol::Mysql),
        Direction::ToClient if mysql::looks_like_greeting(first) => Some(Protocol::Mysql),
        _ => None,
    }
}

/// Whether `bytes` start like a TLS record (a handshake, alert, change-cipher-spec or
/// application-data record of TLS 1.0-1.3), so ciphertext is never parsed as SQL.
pub fn looks_like_tls_record(bytes: &[u8]) -> bool {
    match bytes {
        [content, 3, minor, rest @ ..] if (0x14..=0x17).contains(content) && *minor <= 4 => {
            match rest {
                [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]) <= 16384 + 2048,
                _ => true,
            }
        }
        _ => false,
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary; says whether it cut.
fn truncate_utf8(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}

/// Lossy UTF-8 of at most `max` bytes of `bytes`; says whether it cut.
fn text_of(bytes: &[u8], max: usize) -> (String, bool) {
    let cut = bytes.len() > max;
    let mut s = String::from_utf8_lossy(bytes.get(..max).unwrap_or(bytes)).into_owned();
    // A cut through a multi-byte character leaves a replacement char; fine for a cut text.
    truncate_utf8(&mut s, max + 3);
    (s, cut)
}

/// Renders a binary value as PostgreSQL-style hex (`\x0a1b`), bounded.
fn hex_of(bytes: &[u8]) -> (String, bool) {
    let keep = (MAX_PARAM_BYTES - 2) / 2;
    let cut = bytes.len() > keep;
    let mut s = String::with_capacity(2 + 2 * bytes.len().min(keep));
    s.push_str("\\x");
    for b in bytes.iter().take(keep) {
        let _ = write!(s, "{b:02x}");
    }
    (s, cut)
}

/// Caps a result string at [`MAX_RESULT_BYTES`].
fn bounded_result(mut s: String) -> String {
    truncate_utf8(&mut s, MAX_RESULT_BYTES);
    s
}

/// Remembered prepared statements / portals, bounded by count and total text bytes; the oldest
/// entry goes first.
#[derive(Debug)]
struct Prepared<K, V> {
    entries: VecDeque<(K, V, usize)>,
    bytes: usize,
}

impl<K: PartialEq, V> Default for Prepared<K, V> {
    fn default() -> Self {
        Prepared {
            entries: VecDeque::default(),
            bytes: 0,
        }
    }
}

impl<K: PartialEq, V> Prepared<K, V> {
    /// Inserts (replacing any entry of the same key); `size` is its share of the byte budget.
    fn insert(&mut self, key: K, value: V, size: usize) {
        self.remove(&key);
        while !self.entries.is_empty()
            && (self.entries.len() >= MAX_PREPARED || self.bytes + size > MAX_PREPARED_BYTES)
        {
            if let Some((_, _, s)) = self.entries.pop_front() {
                self.bytes -= s;
            }
        }
        self.bytes += size;
        self.entries.push_back((key, value, size));
    }

    fn get<Q: PartialEq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.entries
            .iter()
            .find(|(k, _, _)| k.borrow() == key)
            .map(|(_, v, _)| v)
    }

    fn get_mut<Q: PartialEq + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.entries
            .iter_mut()
            .find(|(k, _, _)| k.borrow() == key)
            .map(|(_, v, _)| v)
    }

    fn remove<Q: PartialEq + ?Sized>(&mut self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
    {
        if let Some(i) = self.entries.iter().position(|(k, _, _)| k.borrow() == key)
            && let Some((_, _, s)) = self.entries.remove(i)
        {
            self.bytes -= s;
        }
    }

    fn bytes(&self) -> usize {
        self.bytes
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests;
