//! TLS connections whose plaintext no probe delivers: a client whose raw socket carries a TLS
//! handshake and then encrypted application data, while no TLS probe (OpenSSL, Go) produced
//! plaintext for that socket. Such a client uses a library the agent does not hook (a static
//! OpenSSL that exports nothing, rustls, a Go binary whose symbols could not be read), and
//! a `tls_unhooked` notice says its traffic is not recorded, instead of a silent gap.
//!
//! SQL connections upgrade to TLS in the middle of their own protocol; the SQL tracker reports
//! those that never get plaintext. For them, and for every other TLS connection, this watch also
//! reports plaintext that starts late: probes attached for a process after its connection had
//! already sent encrypted data (the agent attaches the OpenSSL probes per process, as it learns
//! that a process maps libssl), so what was sent before is not recorded.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use recorder_common::DataHead;

use super::conn::{Origin, connection_key, direction, is_plaintext, server_name, socket_known};
use recorder_protocol::Direction;

/// Plaintext from a probe follows the ciphertext within microseconds; this leaves room for a
/// loaded machine and for the agent attaching a library's probes late.
const GRACE: Duration = Duration::from_secs(2);
/// Connections followed at once per tracker; past it the oldest are forgotten.
const MAX_TRACKED: usize = 65_536;

/// TLS record content types.
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
/// Largest encrypted TLS 1.3 Finished record body (SHA-384 suites).
const FINISHED_MAX: usize = 69;

#[derive(Debug)]
pub(crate) struct UnhookedTls {
    pub origin: Origin,
    pub server: String,
    /// Plaintext did come, but only after encrypted data had been sent.
    pub late: bool,
}

/// One client socket that started with a TLS handshake.
struct Watched {
    server: String,
    origin: Origin,
    /// Bytes of the current TLS record header seen so far (records can split across writes).
    header: Vec<u8>,
    /// Body bytes left in the current record.
    body_left: usize,
    /// Encrypted records the client sent so far.
    encrypted_records: u32,
    /// When the client first sent encrypted application data.
    data_since: Option<Instant>,
    /// The stream stopped parsing as TLS records: not followed any more.
    lost: bool,
    /// Report a connection that never gets plaintext (false where another tracker does).
    report_unhooked: bool,
}

#[derive(Default)]
pub(crate) struct TlsWatch {
    /// (tgid, connection) of client sockets that began with a TLS handshake and have no plaintext yet.
    sockets: HashMap<(u32, u64), Watched>,
    /// (tgid, sock) of sockets that had plaintext: never reported.
    hooked: HashMap<(u32, u64), Instant>,
    /// (tgid, sock) of client sockets whose first bytes were not TLS (a SQL protocol that may
    /// upgrade to TLS later).
    other: HashMap<(u32, u64), Instant>,
}

impl TlsWatch {
    pub(crate) fn on_data(&mut self, head: &DataHead, payload: &[u8], out: &mut Vec<UnhookedTls>) {
        let tgid = head.header.pid;
        // Per process, as the TLS connections whose socket is not known yet are.
        let key = (tgid, connection_key(head).1);
        if is_plaintext(head) {
            if socket_known(head) {
                if let Some(w) = self.sockets.remove(&key)
                    && w.data_since.is_some()
                {
                    out.push(UnhookedTls {
                        origin: Origin::of(head),
                        server: w.server,
                        late: true,
                    });
                }
                bounded_insert(&mut self.hooked, key);
            } else {
                // Plaintext whose socket is unknown: it may belong to any TLS socket of this
                // process, so none of them is reported.
                self.sockets.retain(|k, _| k.0 != tgid);
            }
            return;
        }
        if direction(head) != Direction::ToServer || self.hooked.contains_key(&key) {
            return;
        }
        let watched = if let Some(w) = self.sockets.get_mut(&key) {
            w
        } else {
            // A write that starts with a TLS ClientHello begins a TLS connection: at the
            // socket's first bytes, or after a SQL protocol's TLS request.
            let first = !self.other.contains_key(&key);
            if head.offset != 0 || !is_client_hello(payload) {
                if first && head.offset == 0 {
                    bounded_insert(&mut self.other, key);
                }
                return;
            }
            if self.sockets.len() >= MAX_TRACKED {
                self.sockets.clear();
            }
            self.sockets.entry(key).or_insert(Watched {
                server: server_name(&head.sock, true),
                origin: Origin::of(head),
                header: Vec::with_capacity(5),
                body_left: 0,
                encrypted_records: 0,
                data_since: None,
                lost: false,
                report_unhooked: first,
            })
        };
        watched.origin = Origin::of(head);
        watched.follow(payload);
    }

    /// The socket was closed or the process exited: a connection that sent encrypted data
    /// without plaintext is reported now.
    pub(crate) fn on_close(&mut self, tgid: u32, sock: u64, out: &mut Vec<UnhookedTls>) {
        self.hooked.remove(&(tgid, sock));
        self.other.remove(&(tgid, sock));
        if let Some(w) = self.sockets.remove(&(tgid, sock)) {
            w.report(out);
        }
    }

    pub(crate) fn on_exit(&mut self, tgid: u32, out: &mut Vec<UnhookedTls>) {
        self.hooked.retain(|k, _| k.0 != tgid);
        self.other.retain(|k, _| k.0 != tgid);
        let mut gone: Vec<(u32, u64)> = self
            .sockets
            .iter()
            .filter(|(k, _)| k.0 == tgid)
            .map(|(k, _)| *k)
            .collect();
        gone.sort_unstable();
        for key in gone {
            if let Some(w) = self.sockets.remove(&key) {
                w.report(out);
            }
        }
    }

    /// Reports connections that sent encrypted data more than `GRACE` ago with no plaintext.
    pub(crate) fn tick(&mut self, out: &mut Vec<UnhookedTls>) {
        let now = Instant::now();
        let due: Vec<(u32, u64)> = self
            .sockets
            .iter()
            .filter(|(_, w)| w.data_since.is_some_and(|t| now.duration_since(t) > GRACE))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(w) = self.sockets.remove(&key) {
                w.report(out);
            }
        }
        // Sockets closed without a close event seen (the process is gone): forget them.
        for map in [&mut self.hooked, &mut self.other] {
            map.retain(|_, t| now.duration_since(*t) < Duration::from_mins(10));
        }
    }
}

impl Watched {
    /// Walks the TLS records of the client's bytes, noting the first application data.
    fn follow(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.lost && self.data_since.is_none() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let need = 5 - self.header.len();
            let n = need.min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() < 5 {
                return;
            }
            let (kind, major) = (self.header[0], self.header[1]);
            if !(20..=24).contains(&kind) || major != 3 {
                self.lost = true;
                return;
            }
            self.body_left = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
            if kind == APPLICATION_DATA {
                // In TLS 1.3 the client's first encrypted record is its handshake Finished
                // (53 or 69 bytes), not data: data is a second record, or a larger one.
                self.encrypted_records += 1;
                if self.encrypted_records >= 2 || self.body_left > FINISHED_MAX {
                    self.data_since = Some(Instant::now());
                }
            }
            self.header.clear();
        }
    }

    fn report(self, out: &mut Vec<UnhookedTls>) {
        if self.data_since.is_some() && self.report_unhooked {
            out.push(UnhookedTls {
                origin: self.origin,
                server: self.server,
                late: false,
            });
        }
    }
}

/// Inserts `key`, forgetting everything first when the map is full (the maps only hold
/// sockets of watched processes; a bound keeps a socket leak in a client from growing them).
fn bounded_insert(map: &mut HashMap<(u32, u64), Instant>, key: (u32, u64)) {
    if map.len() >= MAX_TRACKED {
        map.clear();
    }
    map.insert(key, Instant::now());
}

/// A TLS record carrying a ClientHello: handshake type 1, TLS 1.0-1.3 record versions.
fn is_client_hello(b: &[u8]) -> bool {
    b.len() >= 6 && b[0] == HANDSHAKE && b[1] == 3 && b[2] <= 4 && b[5] == 1
}

#[cfg(test)]
mod tests {
    use recorder_common::{
        DATA_NO_SOCKET, DIR_EGRESS, DIR_INGRESS, DataSource, EventHeader, SockInfo,
    };

    use super::*;

    fn head(source: DataSource, direction: u32, flags: u32) -> DataHead {
        DataHead {
            header: EventHeader {
                kind: 4,
                pid: 7,
                ..Default::default()
            },
            sock: SockInfo {
                sock: 99,
                family: 2,
                rport: 443,
                raddr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ..Default::default()
            },
            source: source as u32,
            direction,
            flags,
            ..Default::default()
        }
    }

    const HELLO: [u8; 9] = [22, 3, 1, 0, 4, 1, 0, 0, 0];
    /// A TLS 1.3 Finished-sized record; a second one is application data.
    const APP: [u8; 8] = [23, 3, 3, 0, 3, 0xaa, 0xbb, 0xcc];
    /// A PostgreSQL SSLRequest.
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];

    fn raw() -> DataHead {
        head(DataSource::Socket, DIR_EGRESS, 0)
    }

    fn feed(w: &mut TlsWatch, h: &DataHead, bytes: &[u8]) -> Vec<UnhookedTls> {
        let mut out = Vec::new();
        w.on_data(h, bytes, &mut out);
        out
    }

    #[test]
    fn encrypted_data_without_plaintext_is_reported_at_close() {
        let mut w = TlsWatch::default();
        feed(&mut w, &raw(), &HELLO);
        feed(&mut w, &raw(), &APP);
        // The record header split across two writes.
        feed(&mut w, &raw(), &APP[..2]);
        feed(&mut w, &raw(), &APP[2..]);
        feed(&mut w, &head(DataSource::Socket, DIR_INGRESS, 0), &APP);
        let mut out = Vec::new();
        w.on_close(7, 99, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].server, "10.0.0.1:443");
        assert!(!out[0].late);
    }

    #[test]
    fn plaintext_before_encrypted_data_means_hooked() {
        for flags in [0, DATA_NO_SOCKET] {
            let mut w = TlsWatch::default();
            feed(&mut w, &raw(), &HELLO);
            feed(&mut w, &raw(), &APP);
            let plain = head(DataSource::GoTls, DIR_EGRESS, flags);
            assert!(feed(&mut w, &plain, b"GET / HTTP/1.1\r\n").is_empty());
            feed(&mut w, &raw(), &APP);
            let mut out = Vec::new();
            w.on_exit(7, &mut out);
            assert!(out.is_empty(), "flags {flags}");
        }
    }

    #[test]
    fn plaintext_after_encrypted_data_is_reported_late() {
        let mut w = TlsWatch::default();
        feed(&mut w, &raw(), &HELLO);
        feed(&mut w, &raw(), &APP);
        feed(&mut w, &raw(), &APP);
        let out = feed(&mut w, &head(DataSource::OpenSsl, DIR_EGRESS, 0), b"Q");
        assert_eq!(out.len(), 1);
        assert!(out[0].late);
    }

    #[test]
    fn a_sql_connection_upgrading_to_tls_is_followed_for_late_plaintext_only() {
        let mut w = TlsWatch::default();
        feed(&mut w, &raw(), &SSL_REQUEST);
        feed(&mut w, &raw(), &HELLO);
        feed(&mut w, &raw(), &APP);
        feed(&mut w, &raw(), &APP);
        // Never hooked: the SQL tracker reports it, not this watch.
        let mut out = Vec::new();
        w.on_close(7, 99, &mut out);
        assert!(out.is_empty());
        // Hooked late: reported here.
        feed(&mut w, &raw(), &SSL_REQUEST);
        feed(&mut w, &raw(), &HELLO);
        feed(&mut w, &raw(), &APP);
        feed(&mut w, &raw(), &APP);
        let out = feed(&mut w, &head(DataSource::OpenSsl, DIR_EGRESS, 0), b"Q");
        assert!(out.len() == 1 && out[0].late);
    }

    #[test]
    fn a_handshake_alone_or_another_protocol_is_not_reported() {
        let mut w = TlsWatch::default();
        feed(&mut w, &raw(), &HELLO);
        // The TLS 1.3 Finished: one small encrypted record.
        feed(&mut w, &raw(), &APP);
        let mut out = Vec::new();
        w.on_close(7, 99, &mut out);
        assert!(out.is_empty());
        feed(&mut w, &raw(), b"GET / HTTP/1.1\r\n");
        feed(&mut w, &raw(), &APP);
        feed(&mut w, &raw(), &APP);
        w.on_close(7, 99, &mut out);
        assert!(out.is_empty());
    }
}
