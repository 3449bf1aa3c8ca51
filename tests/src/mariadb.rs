//! A throwaway MariaDB server for the tests: its own data directory in a temp dir, TLS with a
//! certificate made for it, a loopback port and a Unix socket, real password logins. Runs as the
//! `mysql` user; killed and removed on drop.
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct Mariadb {
    pub port: u16,
    pub socket: PathBuf,
    server: Child,
    _dir: tempfile::TempDir,
}

impl Mariadb {
    pub fn start() -> Self {
        crate::require_root();
        let dir = tempfile::Builder::new()
            .prefix("recorder-my-")
            .tempdir()
            .unwrap();
        let root = dir.path();
        let data = root.join("data");
        std::fs::create_dir(&data).unwrap();
        // A private tmpdir: servers bootstrapping side by side in /tmp can
        // pick the same temporary table name, and one deletes the other's.
        let tmp = root.join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        crate::run_ok(Command::new("chmod").args(["755", root.to_str().unwrap()]));
        crate::self_signed_cert(root);
        crate::run_ok(Command::new("chown").args(["-R", "mysql:mysql", root.to_str().unwrap()]));
        crate::run_ok(
            Command::new("mariadb-install-db")
                .args([
                    "--no-defaults",
                    "--user=mysql",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ])
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--tmpdir={}", tmp.display())),
        );
        let port = crate::free_port();
        let socket = root.join("sock");
        let server = Command::new("mariadbd")
            .args([
                "--no-defaults",
                "--user=mysql",
                "--bind-address=127.0.0.1",
                "--skip-log-bin",
            ])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}/pid", data.display()))
            .arg(format!("--log-error={}/err.log", data.display()))
            .arg(format!("--ssl-cert={}", root.join("server.crt").display()))
            .arg(format!("--ssl-key={}", root.join("server.key").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mariadbd (apt-get install mariadb-server; cargo xtask setup does)");
        let my = Mariadb {
            port,
            socket,
            server,
            _dir: dir,
        };
        let start = Instant::now();
        while !my.admin_ok("SELECT 1") {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "mariadbd did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        for sql in [
            "CREATE DATABASE shop",
            "CREATE USER alice@'127.0.0.1' IDENTIFIED BY 'alice-pw'",
            "CREATE USER alice@'localhost' IDENTIFIED BY 'alice-pw'",
            "GRANT ALL ON shop.* TO alice@'127.0.0.1'",
            "GRANT ALL ON shop.* TO alice@'localhost'",
        ] {
            assert!(my.admin_ok(sql), "{sql}");
        }
        my
    }

    /// Runs SQL as root over the Unix socket (outside any watched cgroup).
    fn admin_ok(&self, sql: &str) -> bool {
        Command::new("mariadb")
            .args(["--no-defaults", "-u", "root"])
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-e", sql])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
