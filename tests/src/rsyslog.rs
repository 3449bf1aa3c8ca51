//! A throwaway rsyslog (Debian's) receiving RFC 5424 over TCP or TLS on a loopback port and
//! writing each message to a file as `HOSTNAME TAB MSGID TAB STRUCTURED-DATA TAB MSG`. Runs in
//! the foreground with its own configuration and work directory; stopped on drop.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct Rsyslog {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// The receiver's TLS identity and the CA it is issued by (PEM files).
pub struct TlsFiles<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

impl Rsyslog {
    /// Starts rsyslogd with its files under `dir` (created), listening on `port`.
    pub fn start(dir: &Path, port: u16, tls: Option<&TlsFiles<'_>>) -> Self {
        assert!(
            Path::new("/usr/sbin/rsyslogd").exists(),
            "rsyslogd is missing: run `cargo xtask setup` (Debian packages rsyslog, rsyslog-openssl)"
        );
        std::fs::create_dir_all(dir.join("work")).unwrap();
        let global_tls = tls.map_or(String::new(), |t| {
            format!(
                "DefaultNetstreamDriver=\"ossl\"\n  DefaultNetstreamDriverCAFile=\"{}\"\n  DefaultNetstreamDriverCertFile=\"{}\"\n  DefaultNetstreamDriverKeyFile=\"{}\"",
                t.ca.display(),
                t.cert.display(),
                t.key.display()
            )
        });
        let module = if tls.is_some() {
            r#"module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")"#
        } else {
            r#"module(load="imtcp")"#
        };
        let conf = format!(
            r#"global(workDirectory="{work}" maxMessageSize="256k"
  {global_tls})
{module}
template(name="fields" type="string" string="%hostname%\t%msgid%\t%structured-data%\t%msg%\n")
input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="out")
ruleset(name="out") {{
  action(type="omfile" file="{out}" template="fields")
}}
"#,
            work = dir.join("work").display(),
            out = dir.join("out.log").display(),
        );
        std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
        let mut r = Self {
            port,
            dir: dir.to_path_buf(),
            child: None,
        };
        r.restart();
        r
    }

    /// Starts rsyslogd again (after `stop`) with the same configuration and output file.
    pub fn restart(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("rsyslogd.log"))
            .unwrap();
        let child = Command::new("/usr/sbin/rsyslogd")
            .args(["-n", "-i"])
            .arg(self.dir.join("rsyslogd.pid"))
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting rsyslogd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not listen on {} within 10 s: {}",
                self.port,
                std::fs::read_to_string(self.dir.join("rsyslogd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait: rsyslogd writes what it has queued and exits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill has no memory preconditions; the pid is our child's.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// The whole lines written so far (rsyslogd writes its file in buffered chunks).
    pub fn output(&self) -> String {
        crate::whole_lines(&self.dir.join("out.log"))
    }

    /// rsyslogd's own messages (for a failure's explanation).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("rsyslogd.log")).unwrap_or_default()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
