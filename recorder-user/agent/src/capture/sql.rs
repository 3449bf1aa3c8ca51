//! SQL connections of watched processes: the socket and TLS byte streams of each connection,
//! reassembled per direction and handed to the protocol decoders, whose statements become `sql`
//! records attributed to the process that sent them.
//!
//! A connection is keyed by (tgid, `struct sock *`). Its raw socket bytes go to one decoder; once
//! that decoder sees the connection switch to TLS, the raw bytes are ciphertext and are ignored,
//! and the OpenSSL plaintext of the same socket goes to a second decoder made for it. A
//! connection whose first bytes are neither PostgreSQL nor MySQL is not SQL and is dropped.
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
    sql::{self, AnyDecoder, Decoder, Output, Protocol},
};

/// A connection with no traffic for this long has its pending statements reported and is
/// forgotten (the agent does not see close(2) yet).
const IDLE_FORGET: Duration = Duration::from_secs(30);
/// TLS seen on the raw socket with no plaintext from a hooked library within this long: the
/// statements of this connection cannot be read, and a `tls_unhooked` notice says so.
const TLS_UNHOOKED_AFTER: Duration = Duration::from_secs(2);

/// What the tracker produces for the record builder.
#[derive(Debug)]
pub(crate) enum SqlOutput {
    Statement {
        origin: Origin,
        server: String,
        tls: bool,
        protocol: Protocol,
        event: sql::SqlEvent,
    },
    Notice {
        origin: Origin,
        reason: String,
        detail: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ConnKey {
    tgid: u32,
    /// `struct sock *`, or the `SSL *` for TLS bytes whose socket is not known.
    id: u64,
}

enum RawState {
    /// Not enough bytes yet to tell the protocol (clients read a 4-byte MySQL header on its
    /// own, for instance): what arrived so far, in order.
    Unknown(Vec<(Direction, Vec<u8>)>),
    Sql(Box<AnyDecoder>),
    /// Not a SQL protocol: ignore the connection.
    NotSql,
    /// The raw stream switched to TLS: its bytes are ciphertext from here on.
    Tls {
        since: Instant,
        decoder_for_plaintext: Box<AnyDecoder>,
    },
}

/// Bytes looked at, per direction, before a connection is taken for something other than SQL.
const GUESS_BYTES: usize = 64;

enum Guess {
    Sql(Protocol),
    NotSql,
    NeedMore,
}

/// Guesses the protocol from the first bytes of each direction seen so far.
fn guess_from(seen: &[(Direction, Vec<u8>)]) -> Guess {
    let mut enough = false;
    for dir in [Direction::ToServer, Direction::ToClient] {
        let bytes: Vec<u8> = seen
            .iter()
            .filter(|(d, _)| *d == dir)
            .flat_map(|(_, b)| b.iter().copied())
            .collect();
        if bytes.is_empty() {
            continue;
        }
        if let Some(p) = sql::guess(dir, &bytes) {
            return Guess::Sql(p);
        }
        enough |= bytes.len() >= GUESS_BYTES;
    }
    if enough {
        Guess::NotSql
    } else {
        Guess::NeedMore
    }
}

/// The decoder of a connection's TLS plaintext.
enum Plaintext {
    Sql(Box<AnyDecoder>),
    /// TLS plaintext that is not SQL (an HTTPS client, say).
    NotSql,
}

/// A decoder for the TLS plaintext of a connection whose raw stream `d` decoded up to the switch.
fn for_tls(d: &AnyDecoder) -> AnyDecoder {
    match d {
        AnyDecoder::Postgres(p) => AnyDecoder::Postgres(p.for_tls_plaintext()),
        AnyDecoder::Mysql(m) => AnyDecoder::Mysql(m.for_tls_plaintext()),
    }
}

fn protocol_of(d: &AnyDecoder) -> Protocol {
    match d {
        AnyDecoder::Postgres(_) => Protocol::Postgresql,
        AnyDecoder::Mysql(_) => Protocol::Mysql,
    }
}

struct Conn {
    server: String,
    raw: RawState,
    /// Decoder of the OpenSSL plaintext, once any arrived.
    tls: Option<Plaintext>,
    tls_unhooked_reported: bool,
    gaps_reported: GapsReported,
    last_origin: Origin,
    last_seen: Instant,
    owners: Owners,
}

#[derive(Default)]
pub(crate) struct SqlTracker {
    conns: HashMap<ConnKey, Conn>,
}

impl SqlTracker {
    pub(crate) fn on_data(&mut self, head: &DataHead, payload: &[u8], out: &mut Vec<SqlOutput>) {
        let h = head.header;
        let origin = Origin::of(head);
        let dir = direction(head);
        let from_tls = is_plaintext(head);
        let (tgid, id) = connection_key(head);
        let key = ConnKey { tgid, id };
        let conn = self.conns.entry(key).or_insert_with(|| Conn {
            server: server_name(&head.sock, socket_known(head)),
            raw: RawState::Unknown(Vec::new()),
            tls: None,
            tls_unhooked_reported: false,
            gaps_reported: GapsReported::default(),
            last_origin: origin,
            last_seen: Instant::now(),
            owners: Owners::default(),
        });
        conn.last_seen = Instant::now();
        conn.owners.add(h.pid);
        if dir == Direction::ToServer {
            conn.last_origin = origin;
        }
        if let Some((reason, detail)) =
            gap_notice(head, &conn.server, "statements", &mut conn.gaps_reported)
        {
            out.push(SqlOutput::Notice {
                origin,
                reason: reason.into(),
                detail,
            });
        }
        let mut outputs = Vec::new();
        if from_tls {
            let plaintext = conn.tls.get_or_insert_with(|| match &conn.raw {
                RawState::Tls {
                    decoder_for_plaintext,
                    ..
                } => Plaintext::Sql(Box::new(for_tls(decoder_for_plaintext))),
                _ => match sql::guess(dir, payload) {
                    Some(p) => Plaintext::Sql(Box::new(AnyDecoder::new(p))),
                    None => Plaintext::NotSql,
                },
            });
            if let Plaintext::Sql(decoder) = plaintext {
                decoder.feed(dir, payload, &mut outputs);
                let protocol = Some(protocol_of(decoder));
                emit(conn, protocol, true, outputs, out);
            }
            return;
        }
        match &mut conn.raw {
            RawState::NotSql | RawState::Tls { .. } => {}
            RawState::Unknown(seen) => {
                seen.push((dir, payload.to_vec()));
                match guess_from(seen) {
                    Guess::Sql(p) => {
                        let mut decoder = AnyDecoder::new(p);
                        for (d, bytes) in seen.iter() {
                            decoder.feed(*d, bytes, &mut outputs);
                        }
                        conn.raw = RawState::Sql(Box::new(decoder));
                    }
                    Guess::NotSql => conn.raw = RawState::NotSql,
                    Guess::NeedMore => {}
                }
            }
            RawState::Sql(decoder) => decoder.feed(dir, payload, &mut outputs),
        }
        if outputs.iter().any(|o| matches!(o, Output::TlsStarted))
            && let RawState::Sql(decoder) = &conn.raw
        {
            let plaintext = for_tls(decoder);
            conn.raw = RawState::Tls {
                since: Instant::now(),
                decoder_for_plaintext: Box::new(plaintext),
            };
        }
        let protocol = match &conn.raw {
            RawState::Sql(d) => Some(protocol_of(d)),
            RawState::Tls {
                decoder_for_plaintext,
                ..
            } => Some(protocol_of(decoder_for_plaintext)),
            _ => None,
        };
        emit(conn, protocol, false, outputs, out);
    }

    /// The statements the TLS write `head` (just fed) completed: what a held write would run.
    /// Statements split over several writes come with the write that ends them, the one the
    /// server would act on.
    pub(crate) fn take_sent(&mut self, head: &DataHead) -> Option<(Protocol, Vec<String>)> {
        let (tgid, id) = connection_key(head);
        match self.conns.get_mut(&ConnKey { tgid, id })?.tls.as_mut()? {
            Plaintext::Sql(decoder) => Some((protocol_of(decoder), decoder.take_sent())),
            Plaintext::NotSql => None,
        }
    }

    /// The process closed the socket: report what is pending and forget the connection (the
    /// kernel will reuse the socket's address for another one).
    pub(crate) fn on_close(&mut self, tgid: u32, sock: u64, out: &mut Vec<SqlOutput>) {
        self.end(ConnKey { tgid, id: sock }, out);
    }

    /// The process exited: every connection only it used is over.
    pub(crate) fn on_exit(&mut self, tgid: u32, out: &mut Vec<SqlOutput>) {
        let keys: Vec<ConnKey> = self
            .conns
            .iter_mut()
            .filter_map(|(k, c)| (c.owners.exited(tgid) || k.tgid == tgid).then_some(*k))
            .collect();
        for key in keys {
            self.end(key, out);
        }
    }

    /// Ends a connection: statements still waiting for a result are reported as such.
    fn end(&mut self, key: ConnKey, out: &mut Vec<SqlOutput>) {
        let Some(mut conn) = self.conns.remove(&key) else {
            return;
        };
        if matches!(conn.raw, RawState::Tls { .. }) {
            report_unhooked(&mut conn, out);
        }
        let mut outputs = Vec::new();
        let protocol = match &mut conn.raw {
            RawState::Sql(d) => {
                d.finish(&mut outputs);
                Some(protocol_of(d))
            }
            _ => None,
        };
        emit(&mut conn, protocol, false, outputs, out);
        if let Some(Plaintext::Sql(d)) = conn.tls.as_mut() {
            let mut outputs = Vec::new();
            d.finish(&mut outputs);
            let protocol = Some(protocol_of(d));
            emit(&mut conn, protocol, true, outputs, out);
        }
    }

    /// Periodic work: `tls_unhooked` notices, and forgetting idle connections.
    pub(crate) fn tick(&mut self, out: &mut Vec<SqlOutput>) {
        let now = Instant::now();
        for conn in self.conns.values_mut() {
            if let RawState::Tls { since, .. } = &conn.raw
                && now.duration_since(*since) > TLS_UNHOOKED_AFTER
            {
                report_unhooked(conn, out);
            }
        }
        let idle: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, c)| now.duration_since(c.last_seen) > IDLE_FORGET)
            .map(|(k, _)| *k)
            .collect();
        for key in idle {
            self.end(key, out);
        }
    }
}

/// A connection switched to TLS and no plaintext came from a hooked library: say so, once.
fn report_unhooked(conn: &mut Conn, out: &mut Vec<SqlOutput>) {
    if conn.tls.is_some() || conn.tls_unhooked_reported {
        return;
    }
    conn.tls_unhooked_reported = true;
    out.push(SqlOutput::Notice {
        origin: conn.last_origin,
        reason: "tls_unhooked".into(),
        detail: format!(
            "the SQL connection to {} switched to TLS through a library the agent has not hooked; \
             its statements are not recorded",
            conn.server
        ),
    });
}

fn emit(
    conn: &mut Conn,
    protocol: Option<Protocol>,
    tls: bool,
    outputs: Vec<Output>,
    out: &mut Vec<SqlOutput>,
) {
    for o in outputs {
        match o {
            Output::Sql(event) => out.push(SqlOutput::Statement {
                origin: conn.last_origin,
                server: conn.server.clone(),
                tls,
                protocol: protocol.unwrap_or(event.db_system),
                event,
            }),
            Output::Notice(n) => out.push(SqlOutput::Notice {
                origin: conn.last_origin,
                reason: n.reason.to_string(),
                detail: format!("{} (connection to {})", n.detail, conn.server),
            }),
            Output::TlsStarted => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use recorder_common::{DIR_EGRESS, DIR_INGRESS, EventHeader, SockInfo};

    use super::*;

    /// Reads a conversation recorded for the protocol decoders' tests (see
    /// recorder-user/protocol/tests/fixtures/sql/README.md).
    fn fixture(name: &str) -> Vec<(u32, Vec<u8>)> {
        let raw = std::fs::read(format!(
            "{}/../protocol/tests/fixtures/sql/{name}.bin",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let mut out = Vec::new();
        let mut rest = raw.as_slice();
        while let [dir, a, b, c, d, tail @ ..] = rest {
            let len = u32::from_le_bytes([*a, *b, *c, *d]) as usize;
            out.push((
                if *dir == 0 { DIR_EGRESS } else { DIR_INGRESS },
                tail[..len].to_vec(),
            ));
            rest = &tail[len..];
        }
        out
    }

    fn head(direction: u32, sock: u64) -> DataHead {
        DataHead {
            header: EventHeader {
                kind: 4,
                identity: 0,
                pid: 42,
                _pad: 0,
                ktime: 1,
                cgroup_id: 1,
            },
            sock: SockInfo {
                sock,
                family: 2,
                rport: 5432,
                raddr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ..Default::default()
            },
            direction,
            ..Default::default()
        }
    }

    fn feed(tracker: &mut SqlTracker, name: &str, sock: u64) -> Vec<SqlOutput> {
        let mut out = Vec::new();
        for (dir, bytes) in fixture(name) {
            tracker.on_data(&head(dir, sock), &bytes, &mut out);
        }
        out
    }

    #[test]
    fn plain_statements_come_out_with_their_server() {
        let mut tracker = SqlTracker::default();
        let out = feed(&mut tracker, "pg_psql_simple", 1);
        let texts: Vec<&str> = out
            .iter()
            .filter_map(|o| match o {
                SqlOutput::Statement {
                    event, server, tls, ..
                } => {
                    assert_eq!(server, "127.0.0.1:5432");
                    assert!(!tls);
                    Some(event.text.as_str())
                }
                SqlOutput::Notice { .. } => None,
            })
            .collect();
        assert!(
            texts.contains(&"INSERT INTO items VALUES (1, 'apple', 1.5)"),
            "{texts:?}"
        );
    }

    #[test]
    fn tls_without_plaintext_is_reported_when_the_connection_ends() {
        let mut tracker = SqlTracker::default();
        let out = feed(&mut tracker, "pg_tls", 7);
        assert!(
            out.iter()
                .all(|o| !matches!(o, SqlOutput::Statement { .. })),
            "ciphertext is never a statement"
        );
        let mut out = Vec::new();
        tracker.on_close(42, 7, &mut out);
        assert!(
            matches!(&out[..], [SqlOutput::Notice { reason, .. }] if reason == "tls_unhooked"),
            "{out:?}"
        );
    }

    #[test]
    fn a_reused_socket_address_is_a_new_connection_after_close() {
        let mut tracker = SqlTracker::default();
        feed(&mut tracker, "pg_tls", 9);
        let mut out = Vec::new();
        tracker.on_close(42, 9, &mut out);
        let out = feed(&mut tracker, "pg_psql_simple", 9);
        assert!(out.iter().any(|o| matches!(o, SqlOutput::Statement { .. })));
    }
}
