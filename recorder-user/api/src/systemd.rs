//! The `sd_notify` protocol, so both processes run as `Type=notify` systemd services: systemd
//! then counts a service as started only once it is really serving (the agent's probes
//! attached, the collector listening), and units ordered after it wait for that.
//!
//! The protocol is one datagram of `KEY=VALUE` lines to the Unix socket named by
//! `$NOTIFY_SOCKET` (a leading `@` names the abstract namespace). It needs no library: std's
//! `UnixDatagram` speaks it.
use std::{
    ffi::OsStr,
    os::{
        linux::net::SocketAddrExt as _,
        unix::{
            ffi::OsStrExt as _,
            net::{SocketAddr, UnixDatagram},
        },
    },
    path::Path,
};

/// The variable systemd sets for a `Type=notify` service.
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Tells the service manager `state` (`READY=1`, `STOPPING=1`, ...). Does nothing when the
/// process was not started by one (`$NOTIFY_SOCKET` unset); a failed send is logged, since
/// systemd would then time the start out and the log is where to look.
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    if let Err(e) = send(&socket, state) {
        tracing::warn!(
            socket = %socket.to_string_lossy(),
            error = %e,
            state,
            "cannot notify the service manager"
        );
    }
}

/// Sends one notification datagram to `socket` (a path, or `@name` in the abstract namespace).
fn send(socket: &OsStr, state: &str) -> std::io::Result<()> {
    let addr = match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(Path::new(socket))?,
    };
    let sent = UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(std::io::Error::other(format!(
            "sent {sent} of {} bytes",
            state.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{process::Command, time::Duration};

    use super::*;

    /// Set for the child process of `notifies_through_the_variable`, so the helper test below
    /// only acts when run by it.
    const CHILD_MARK: &str = "RECORDER_TEST_NOTIFY_CHILD";

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).expect("a notification datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// `notify` reads `$NOTIFY_SOCKET` as systemd sets it. The variable is set for a child (this
    /// test binary, running only the helper below) rather than here: changing the environment
    /// of a process whose other test threads may read it is not sound.
    #[test]
    fn notifies_through_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "systemd::tests::child_sends_ready", "--ignored"])
            .env(NOTIFY_SOCKET, &path)
            .env(CHILD_MARK, "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(receive(&socket), "READY=1");
    }

    #[test]
    #[ignore = "run by notifies_through_the_variable, with NOTIFY_SOCKET set"]
    fn child_sends_ready() {
        if std::env::var_os(CHILD_MARK).is_some() {
            notify("READY=1");
        }
    }

    #[test]
    fn abstract_socket() {
        let name = format!("recorder-notify-test-{}", std::process::id());
        let socket =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        send(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        assert_eq!(receive(&socket), "STOPPING=1");
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let e = send(dir.path().join("absent").as_os_str(), "READY=1").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
