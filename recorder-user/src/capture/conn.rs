//! What the connection trackers (SQL, HTTP, TLS) share: who sent the bytes, and how the peer
//! of a socket is named in records.
use std::net::{Ipv4Addr, Ipv6Addr};

use recorder_common::{DataHead, ProcKey, SockInfo};

/// Who sent a statement or a request.
#[derive(Debug, Clone, Copy)]
pub struct Sender {
    pub identity: u32,
    pub pid: u32,
    pub exec: ProcKey,
    pub session: ProcKey,
    pub ktime: u64,
}

impl Sender {
    /// The process behind a data event, at the time of the event.
    pub fn of(head: &DataHead) -> Self {
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
pub fn server_name(sock: &SockInfo, known: bool) -> String {
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
