//! A throwaway PostgreSQL 15 server for the tests: its own cluster in a temp dir, TLS on with a
//! certificate made for it, listening on a loopback port and a Unix socket in that dir. Runs as
//! the `postgres` user (initdb refuses root); stopped and removed on drop.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Postgres {
    pub port: u16,
    /// Directory holding the Unix socket (`host=` for a Unix-socket connection).
    pub socket_dir: PathBuf,
    dir: tempfile::TempDir,
}

fn as_postgres(program: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--", program]);
    cmd
}

impl Postgres {
    pub fn start() -> Self {
        Self::start_with_cert(None)
    }

    /// Started with this certificate and key (PEM) as its TLS identity instead of a
    /// self-signed one for `localhost` (which names the host in its CN only).
    pub fn start_with_cert(identity: Option<(&Path, &Path)>) -> Self {
        crate::require_root();
        let dir = tempfile::Builder::new()
            .prefix("recorder-pg-")
            .tempdir()
            .unwrap();
        let root = dir.path();
        crate::run_ok(Command::new("chmod").args(["755", root.to_str().unwrap()]));
        let data = root.join("data");
        match identity {
            Some((cert, key)) => {
                std::fs::copy(cert, root.join("server.crt")).unwrap();
                std::fs::copy(key, root.join("server.key")).unwrap();
            }
            None => crate::self_signed_cert(root),
        }
        crate::run_ok(Command::new("chown").args([
            "-R",
            "postgres:postgres",
            root.to_str().unwrap(),
        ]));
        crate::run_ok(
            Command::new("chmod").args(["600", root.join("server.key").to_str().unwrap()]),
        );
        crate::run_ok(as_postgres(&format!("{BIN}/initdb")).args([
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]));
        let port = crate::free_port();
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nssl = on\n\
             ssl_cert_file = '{}'\nssl_key_file = '{}'\nfsync = off\nlog_min_messages = warning\n",
            root.display(),
            root.join("server.crt").display(),
            root.join("server.key").display()
        );
        let mut existing = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        existing.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), existing).unwrap();
        crate::run_ok(
            as_postgres(&format!("{BIN}/pg_ctl"))
                .args(["-D", data.to_str().unwrap(), "-l"])
                .arg(root.join("log"))
                .args(["-w", "start"]),
        );
        let pg = Postgres {
            port,
            socket_dir: root.to_path_buf(),
            dir,
        };
        pg.psql_admin("CREATE ROLE alice LOGIN");
        pg.psql_admin("CREATE DATABASE shop OWNER alice");
        pg.psql_admin("CREATE ROLE bob LOGIN");
        pg
    }

    /// Runs SQL as the superuser over the Unix socket, outside any watched cgroup.
    pub fn psql_admin(&self, sql: &str) {
        crate::run_ok(
            Command::new("psql")
                .args([
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    self.socket_dir.to_str().unwrap(),
                ])
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                    sql,
                ]),
        );
    }

    /// Runs SQL as the superuser in database `db`; returns what psql printed (tuples only,
    /// unaligned, `|` between columns).
    pub fn query(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Stops the server at once, as a crash would (no shutdown checkpoint; every client is
    /// cut off), and starts it again on the same port.
    pub fn restart_immediate(&self) {
        let data = self.dir.path().join("data");
        crate::run_ok(as_postgres(&format!("{BIN}/pg_ctl")).args([
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]));
        crate::run_ok(
            as_postgres(&format!("{BIN}/pg_ctl"))
                .args(["-D", data.to_str().unwrap(), "-l"])
                .arg(self.dir.path().join("log"))
                .args(["-w", "start"]),
        );
    }

    /// From now on, TCP clients must show a certificate `ca` (PEM) signed, whose common name is
    /// the role they log in as (pg_hba.conf `hostssl ... cert`); the Unix socket stays trusted
    /// for the tests' own queries. Reloads the server.
    pub fn require_client_certs(&self, ca: &Path) {
        let root = self.dir.path();
        let data = root.join("data");
        std::fs::copy(ca, root.join("client-ca.crt")).unwrap();
        crate::run_ok(Command::new("chown").args([
            "postgres:postgres",
            root.join("client-ca.crt").to_str().unwrap(),
        ]));
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str(&format!(
            "ssl_ca_file = '{}'\n",
            root.join("client-ca.crt").display()
        ));
        std::fs::write(data.join("postgresql.conf"), conf).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 cert\n",
        )
        .unwrap();
        crate::run_ok(
            as_postgres(&format!("{BIN}/pg_ctl"))
                .args(["-D", data.to_str().unwrap(), "-w", "restart", "-l"])
                .arg(root.join("log")),
        );
    }

    /// A libpq connection string over TCP with the given sslmode.
    pub fn tcp(&self, user: &str, db: &str, sslmode: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname={db} sslmode={sslmode}",
            self.port
        )
    }

    /// A libpq connection string over the Unix socket.
    pub fn unix(&self, user: &str, db: &str) -> String {
        format!(
            "host={} port={} user={user} dbname={db}",
            self.socket_dir.display(),
            self.port
        )
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&format!("{BIN}/pg_ctl"))
            .args([
                "-D",
                self.dir.path().join("data").to_str().unwrap(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }
}
