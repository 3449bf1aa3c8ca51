//! Finding the OpenSSL libraries watched processes use, and attaching the TLS probes to each one
//! once (per file: a uprobe is per inode, so every process mapping that file is covered).
//!
//! The system libssl is attached at start. Private copies (inside Python wheels, application
//! bundles) are found in the memory maps of watched processes shortly after they exec, and again
//! a little later, since a library is mapped when the program loads it, not at exec.
use std::{
    collections::{HashSet, VecDeque},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::loader::Probes;

/// Where Debian and most distributions keep the system libssl.
const SYSTEM_LIBSSL: [&str; 4] = [
    "/usr/lib/x86_64-linux-gnu/libssl.so.3",
    "/lib/x86_64-linux-gnu/libssl.so.3",
    "/usr/lib64/libssl.so.3",
    "/usr/lib/libssl.so.3",
];

/// When to look at a new process's maps, after its exec.
const SCAN_AFTER: [Duration; 3] = [
    Duration::from_millis(20),
    Duration::from_millis(300),
    Duration::from_secs(2),
];

#[derive(Default)]
pub struct OpenSslTracker {
    /// (device, inode) of every file already probed (or found not to be OpenSSL).
    seen: HashSet<(u64, u64)>,
    /// Processes whose maps are due for a look.
    due: VecDeque<(Instant, u32)>,
    pub attached: Vec<PathBuf>,
}

impl OpenSslTracker {
    /// Attaches to the system libssl, where present.
    pub fn attach_system(&mut self, probes: &mut Probes) {
        for path in SYSTEM_LIBSSL {
            self.consider(probes, Path::new(path));
        }
    }

    /// A watched process exec'd: look at its maps soon, and again later.
    pub fn on_exec(&mut self, pid: u32) {
        let now = Instant::now();
        for delay in SCAN_AFTER {
            self.due.push_back((now + delay, pid));
        }
        if self.due.len() > 100_000 {
            // An exec storm: keep the newest; the system library covers most processes anyway.
            self.due.drain(..self.due.len() - 100_000);
        }
    }

    /// Scans the maps of processes that are due.
    pub fn tick(&mut self, probes: &mut Probes) {
        let now = Instant::now();
        let mut due: Vec<(Instant, u32)> = Vec::new();
        self.due.retain(|&(when, pid)| {
            if when <= now {
                due.push((when, pid));
                false
            } else {
                true
            }
        });
        for (_, pid) in due {
            for lib in ssl_libraries_of(pid) {
                self.consider(probes, &lib);
            }
        }
    }

    /// A watched process is mapping `path` (as it sees it) for execution: attach now, before its
    /// first TLS call.
    pub fn consider_mapped(&mut self, probes: &mut Probes, pid: u32, path: &str) {
        let through_root = PathBuf::from(format!("/proc/{pid}/root{path}"));
        if through_root.exists() {
            self.consider(probes, &through_root);
        } else {
            // The process is gone already; its library may still be on this filesystem.
            self.consider(probes, Path::new(path));
        }
    }

    fn consider(&mut self, probes: &mut Probes, path: &Path) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if !self.seen.insert((meta.dev(), meta.ino())) {
            return;
        }
        match probes.attach_openssl(path) {
            Ok(0) => tracing::debug!(path = %path.display(), "no OpenSSL entry points"),
            Ok(n) => {
                tracing::info!(path = %path.display(), entry_points = n, "TLS plaintext probes attached");
                self.attached.push(path.to_path_buf());
            }
            Err(e) => tracing::warn!(path = %path.display(), "cannot attach the TLS probes: {e}"),
        }
    }
}

/// The libssl files mapped by `pid`, as paths reachable from here (through the process's root,
/// so libraries inside containers resolve).
fn ssl_libraries_of(pid: u32) -> Vec<PathBuf> {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        let Some(path) = line.split_whitespace().nth(5) else {
            continue;
        };
        let name = path.rsplit('/').next().unwrap_or("");
        if name.starts_with("libssl") && name.contains(".so") {
            let through_root = PathBuf::from(format!("/proc/{pid}/root{path}"));
            if !out.contains(&through_root) {
                out.push(through_root);
            }
        }
    }
    out
}
