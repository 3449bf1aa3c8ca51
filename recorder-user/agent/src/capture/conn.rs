//! What the connection trackers (SQL, HTTP, TLS) share: how a data event is read (who sent
//! the bytes, which way, on which connection), and how the peer of a socket is named.
use std::net::{Ipv4Addr, Ipv6Addr};

use recorder_common::{
    DATA_DISCARDED, DATA_IOV_MAX, DATA_NO_SOCKET, DATA_SYSCALL_MAX, DATA_TRUNCATED,
    DATA_UNCAPTURED, DIR_EGRESS, DataHead, DataSource, ProcKey, SYSCALL_NONE, SockInfo,
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

/// The gap notices a connection already gave: each is given once per connection.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct GapsReported {
    truncated: bool,
    uncaptured: bool,
    discarded: bool,
}

/// A notice (reason, detail) when this event stands for bytes of the connection that were not
/// captured, the first time the connection has such a gap: past `DATA_SYSCALL_MAX` or the
/// buffers of a vectored call (`data_truncated`), moved with no user buffer to read
/// (`data_uncaptured`: `io_uring`, sendfile, splice, a kernel thread), or discarded by the kernel
/// (`data_discarded`). `what` is what decodes after the gap may get wrong.
pub(crate) fn gap_notice(
    head: &DataHead,
    server: &str,
    what: &str,
    reported: &mut GapsReported,
) -> Option<(&'static str, String)> {
    let sent = direction(head) == Direction::ToServer;
    let pid = head.header.pid;
    let total = head.total;
    if head.flags & DATA_UNCAPTURED != 0 {
        if std::mem::replace(&mut reported.uncaptured, true) {
            return None;
        }
        return Some((
            "data_uncaptured",
            format!(
                "pid {pid} {} {total} bytes on its connection to {server} through {}, which \
                 gives the agent no buffer to read them from: they are not recorded, nor are \
                 later such transfers on this connection; {what} after them may not decode",
                if sent { "sent" } else { "received" },
                syscall_name(head.syscall),
            ),
        ));
    }
    if head.flags & DATA_DISCARDED != 0 {
        if std::mem::replace(&mut reported.discarded, true) {
            return None;
        }
        return Some((
            "data_discarded",
            format!(
                "pid {pid} had {total} received bytes on its connection to {server} discarded \
                 by the kernel (MSG_TRUNC) without reading them: they are not recorded; {what} \
                 after them may not decode"
            ),
        ));
    }
    if head.flags & DATA_TRUNCATED == 0 || head.offset != 0 || reported.truncated {
        return None;
    }
    reported.truncated = true;
    let missing = if head.len == 0 {
        head.total
    } else {
        head.total.saturating_sub(DATA_SYSCALL_MAX as u64)
    };
    Some((
        "data_truncated",
        format!(
            "{missing} bytes of one {} on the connection to {server} were not captured (one call \
             is captured up to {DATA_SYSCALL_MAX} bytes, across up to {DATA_IOV_MAX} buffers); \
             {what} after it on this connection may not decode",
            if sent { "write" } else { "read" },
        ),
    ))
}

/// How bytes moved with no user buffer, from the system call the task was in.
fn syscall_name(syscall: u32) -> String {
    #[cfg(target_arch = "aarch64")]
    use recorder_common::syscalls::aarch64 as nr;
    #[cfg(not(target_arch = "aarch64"))]
    use recorder_common::syscalls::x86_64 as nr;
    match syscall {
        SYSCALL_NONE => "a kernel thread or an io_uring worker".to_string(),
        nr::IO_URING_ENTER => "io_uring".to_string(),
        nr::SENDFILE => "sendfile".to_string(),
        nr::SPLICE => "splice".to_string(),
        other => format!("system call {other}"),
    }
}

/// The key a tracker keeps the connection of these bytes under: `(0, cookie)` when the socket's
/// cookie is known (unique for the host's uptime, so a connection the kernel places where a
/// closed one was is another one, and a socket passed to another process, by fork or over
/// `SCM_RIGHTS`, stays the same connection); else `(tgid, struct sock *)` (system-call capture,
/// which reports closes), or `(tgid, TLS connection)` while its socket is not known (pointers are
/// only unique within a process).
pub(crate) fn connection_key(head: &DataHead) -> (u32, u64) {
    if !socket_known(head) {
        (head.header.pid, head.tls)
    } else if head.sock.cookie != 0 {
        (0, head.sock.cookie)
    } else {
        (head.header.pid, head.sock.sock)
    }
}

/// The processes that used a connection: it ends when the last of them exits.
#[derive(Debug, Default)]
pub(crate) struct Owners(Vec<u32>);

impl Owners {
    pub(crate) fn add(&mut self, tgid: u32) {
        if !self.0.contains(&tgid) {
            self.0.push(tgid);
        }
    }

    /// `tgid` exited; whether no owner is left.
    pub(crate) fn exited(&mut self, tgid: u32) -> bool {
        self.0.retain(|&t| t != tgid);
        self.0.is_empty()
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
