//! The syslog exporter: RFC 5424 messages over TCP or TLS to rsyslog, syslog-ng or any SIEM's
//! syslog input.
//!
//! Syslog over TCP has no acknowledgement, so "delivered" is decided from the connection
//! itself: a record counts as delivered once the receiver's TCP has acknowledged its last byte
//! (the socket's send queue has drained past it, `SIOCOUTQ`) and the connection is still open
//! `confirm_ms` later (`TCP_INFO`). A receiver that stops or restarts closes the connection,
//! and whatever it acknowledged in the last moments but may not have written is sent again
//! after the reconnect: a duplicate, with the same event id, rather than a loss.
mod message;

use std::{
    collections::VecDeque,
    io,
    os::fd::{AsRawFd as _, RawFd},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use message::frame;
use recorder_store::StoredRecord;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::{config::SyslogConfig, cursor::Position};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A receiver that takes nothing for this long is treated as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct SyslogSink {
    address: String,
    facility: u8,
    confirm: Duration,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    conn: Option<Conn>,
    /// Bytes written to the TCP connection (TLS records included).
    written: u64,
    /// Sent batches not yet acknowledged by the receiver's TCP: (next log index, end byte).
    unacked: VecDeque<(u64, u64)>,
    /// Acknowledged batches waiting out `confirm`: (next log index, acknowledged at).
    acked: VecDeque<(u64, Instant)>,
    buf: Vec<u8>,
}

enum Conn {
    Plain(Counted),
    Tls(Box<TlsStream<Counted>>),
}

impl Conn {
    fn counted(&self) -> &Counted {
        match self {
            Conn::Plain(c) => c,
            Conn::Tls(t) => t.get_ref().0,
        }
    }
}

impl SyslogSink {
    pub(crate) fn new(cfg: &SyslogConfig) -> Result<Self, String> {
        let tls = if cfg.tls {
            let ca = cfg.ca.as_deref().ok_or("tls needs ca")?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in recorder_api::tls::load_certs(ca).map_err(|e| e.to_string())? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let builder = ClientConfig::builder().with_root_certificates(roots);
            let config = match (&cfg.cert, &cfg.key) {
                (Some(cert), Some(key)) => builder
                    .with_client_auth_cert(
                        recorder_api::tls::load_certs(cert).map_err(|e| e.to_string())?,
                        recorder_api::tls::load_key(key).map_err(|e| e.to_string())?,
                    )
                    .map_err(|e| format!("client certificate: {e}"))?,
                _ => builder.with_no_client_auth(),
            };
            let host = cfg
                .server_name
                .clone()
                .unwrap_or_else(|| host_of(&cfg.address));
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("server name {host:?}: {e}"))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Self {
            address: cfg.address.clone(),
            facility: cfg.facility_code()?,
            confirm: cfg.confirm(),
            tls,
            conn: None,
            written: 0,
            unacked: VecDeque::new(),
            acked: VecDeque::new(),
            buf: Vec::new(),
        })
    }

    /// Sends `records` (the chosen ones of the log up to `next`).
    pub(crate) async fn send(
        &mut self,
        records: &[&StoredRecord],
        next: u64,
    ) -> Result<(), String> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        self.buf.clear();
        for rec in records {
            frame(rec, self.facility, &mut self.buf);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err("not connected".into());
        };
        let write = async {
            match conn {
                Conn::Plain(c) => c.write_all(&self.buf).await,
                Conn::Tls(t) => {
                    t.write_all(&self.buf).await?;
                    t.flush().await
                }
            }
        };
        tokio::time::timeout(WRITE_TIMEOUT, write)
            .await
            .map_err(|_| format!("{}: took nothing for {WRITE_TIMEOUT:?}", self.address))?
            .map_err(|e| format!("{}: {e}", self.address))?;
        self.written = conn.counted().written;
        self.unacked.push_back((next, self.written));
        Ok(())
    }

    /// What is delivered by now (see the module's comment), or an error if the connection is
    /// gone.
    pub(crate) fn confirmed(&mut self) -> Result<Option<Position>, String> {
        let Some(conn) = &self.conn else {
            return Ok(None);
        };
        let (established, queued) = tcp_state(conn.counted().fd)
            .map_err(|e| format!("{}: cannot read the connection's state: {e}", self.address))?;
        if !established {
            return Err(format!(
                "{}: the receiver closed the connection",
                self.address
            ));
        }
        let acknowledged = self.written.saturating_sub(queued);
        let now = Instant::now();
        while let Some(&(next, end)) = self.unacked.front() {
            if end > acknowledged {
                break;
            }
            self.acked.push_back((next, now));
            self.unacked.pop_front();
        }
        let mut delivered = None;
        while let Some(&(next, at)) = self.acked.front() {
            if now.duration_since(at) < self.confirm {
                break;
            }
            delivered = Some(Position {
                next,
                file_offset: None,
            });
            self.acked.pop_front();
        }
        Ok(delivered)
    }

    /// Drops the connection and what was sent on it: the runner sends again from its cursor.
    pub(crate) fn reset(&mut self) {
        self.conn = None;
        self.written = 0;
        self.unacked.clear();
        self.acked.clear();
    }

    async fn connect(&self) -> Result<Conn, String> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
            .await
            .map_err(|_| format!("{}: no answer in {CONNECT_TIMEOUT:?}", self.address))?
            .map_err(|e| format!("{}: {e}", self.address))?;
        let _ = stream.set_nodelay(true);
        let counted = Counted {
            fd: stream.as_raw_fd(),
            inner: stream,
            written: 0,
        };
        match &self.tls {
            None => Ok(Conn::Plain(counted)),
            Some((connector, name)) => {
                let tls =
                    tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name.clone(), counted))
                        .await
                        .map_err(|_| {
                            format!("{}: no TLS handshake in {CONNECT_TIMEOUT:?}", self.address)
                        })?
                        .map_err(|e| format!("{}: TLS: {e}", self.address))?;
                Ok(Conn::Tls(Box::new(tls)))
            }
        }
    }
}

fn host_of(address: &str) -> String {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// Whether the connection is still established, and how many bytes it has sent that the peer
/// has not acknowledged yet (or not sent at all).
fn tcp_state(fd: RawFd) -> io::Result<(bool, u64)> {
    const TCP_ESTABLISHED: u8 = 1;
    // SAFETY: tcp_info is plain old data; all zeros is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a writable tcp_info of `len` bytes, and the kernel writes at most `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ on a TCP socket) writes one int to the pointer given.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &raw mut queued) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((info.tcpi_state == TCP_ESTABLISHED, queued.max(0) as u64))
}

/// A TCP stream that counts the bytes written to it, so that what the TLS layer wrote can be
/// compared with the socket's send queue.
struct Counted {
    inner: TcpStream,
    fd: RawFd,
    written: u64,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.written += n as u64;
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
