//! What the connection trackers (SQL, HTTP, TLS) share: how a data event is read (who sent
//! the bytes, which way, on which connection), and how the peer of a socket is named.
use std::net::{Ipv4Addr, Ipv6Addr};

use recorder_common::{
    DATA_IOV_MAX, DATA_NO_SOCKET, DATA_SYSCALL_MAX, DATA_TRUNCATED, DIR_EGRESS, DataHead,
    DataSource, ProcKey, SockInfo,
};

use recorder_protocol::Direction;

/// Which way the bytes of a data event went.
pub(crate) fn direction(head: &DataHead) -> Direction {
    if head.direction == DIR_EGRESS {
        Direction::ToServer
    } else {
        Direction::ToClient
    }
}

/// The bytes came from a TLS probe (plaintext), not from a socket system call.
pub(crate) fn is_plaintext(head: &DataHead) -> bool {
    head.source != DataSource::Socket as u32
}

/// Whether the event's socket is known: always for socket bytes; for TLS plaintext, once a
/// system call inside the TLS library tied the TLS connection to its socket.
pub(crate) fn socket_known(head: &DataHead) -> bool {
    !is_plaintext(head) || head.flags & DATA_NO_SOCKET == 0
}

/// The detail of a `data_truncated` notice when this event starts a call whose bytes were not
/// all captured (past `DATA_SYSCALL_MAX`, or, for an event without payload, past the buffers of
/// a vectored call), once per connection: `reported` remembers. `what` is what decodes after
/// the gap may get wrong.
pub(crate) fn truncation_notice(
    head: &DataHead,
    server: &str,
    what: &str,
    reported: &mut bool,
) -> Option<String> {
    if head.flags & DATA_TRUNCATED == 0 || head.offset != 0 || *reported {
        return None;
    }
    *reported = true;
    let missing = if head.len == 0 {
        head.total
    } else {
        head.total.saturating_sub(DATA_SYSCALL_MAX as u64)
    };
    Some(format!(
        "{missing} bytes of one {} on the connection to {server} were not captured (one call is \
         captured up to {DATA_SYSCALL_MAX} bytes, across up to {DATA_IOV_MAX} buffers); {what} \
         after it on this connection may not decode",
        if direction(head) == Direction::ToServer {
            "write"
        } else {
            "read"
        },
    ))
}

/// The connection the bytes belong to: the `struct sock *`, or the TLS connection while its
/// socket is not known.
pub(crate) fn connection_id(head: &DataHead) -> u64 {
    if socket_known(head) {
        head.sock.sock
    } else {
        head.tls
    }
}

/// The process a statement or a request came from (the sender of its bytes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    pub identity: u32,
    pub pid: u32,
    pub exec: ProcKey,
    pub session: ProcKey,
    pub ktime: u64,
}

impl Origin {
    /// The process behind a data event, at the time of the event.
    pub(crate) fn of(head: &DataHead) -> Self {
        let h = head.header;
        Self {
            identity: h.identity,
            pid: h.pid,
            exec: head.exec,
            session: head.session,
            ktime: h.ktime,
        }
    }
}

/// `host:port` of the peer, `[v6]:port`, or `unix` for a Unix socket.
pub(crate) fn server_name(sock: &SockInfo, known: bool) -> String {
    if !known {
        return "unknown".into();
    }
    match sock.family {
        2 => {
            let a = Ipv4Addr::new(sock.raddr[0], sock.raddr[1], sock.raddr[2], sock.raddr[3]);
            format!("{a}:{}", sock.rport)
        }
        10 => format!("[{}]:{}", Ipv6Addr::from(sock.raddr), sock.rport),
        1 => "unix".into(),
        f => format!("family-{f}"),
    }
}
