//! Attaching the OpenSSL probes to the libssl files watched processes use, in one of two scopes
//! (`--tls-probes`):
//!
//! - `all` (default): each file once, for every process that maps it. The system libssl is
//!   attached at start, so no watched process's first TLS bytes are missed; the cost is that a
//!   uprobe plants its breakpoint in every process mapping the file, so every TLS user on the
//!   host (a database server's backends too) traps on each `SSL_read`/`SSL_write`.
//! - `watched`: each file for each watched process only, so unwatched processes never trap. A
//!   process gets its probes when it maps libssl (the kernel reports the `mmap` at once), but
//!   attaching takes milliseconds and a short-lived client can send its first bytes before;
//!   the TLS watch then reports `tls_hooked_late` or `tls_unhooked`. A forked child shares its
//!   parent's libraries but not its probes: the kernel reports forks of processes that have
//!   them, and the child gets its own.
//!
//! In both, libraries are also found in the memory maps of processes shortly after they exec or
//! are adopted (a private libssl mapped before the agent was watching). An executable that
//! carries OpenSSL itself and exports its entry points (Node) is attached as a library is, at
//! the exec of each watched process that runs it.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    num::NonZeroU32,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::{
    openssl_sites::{OpenSslEntry, openssl_entries},
    programs::on_path,
};
use crate::{
    config::TlsProbes,
    loader::{ProbeLink, Probes},
};

/// Where Debian and most distributions keep the system libssl.
const SYSTEM_LIBSSL: [&str; 4] = [
    "/usr/lib/x86_64-linux-gnu/libssl.so.3",
    "/lib/x86_64-linux-gnu/libssl.so.3",
    "/usr/lib64/libssl.so.3",
    "/usr/lib/libssl.so.3",
];

/// Programs on the agent's PATH known to carry OpenSSL in their executable, looked at before
/// the agent is ready: with `all` their probes are in place before their first run, and with
/// `watched` their entry points are already known at each exec.
const KNOWN_CARRIERS: [&str; 1] = ["node"];

/// When to look at a new process's maps, after its exec.
const SCAN_AFTER: [Duration; 3] = [
    Duration::from_millis(20),
    Duration::from_millis(300),
    Duration::from_secs(2),
];
/// How often to look for processes that ended without an `exit` event (those that forked but
/// never exec'd) and detach their probes.
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// Executable paths are remembered this long (whether they carry OpenSSL): an exec storm then
/// costs one lookup per exec, and a program replaced at the same path is looked at again.
const EXE_MEMORY: Duration = Duration::from_mins(1);

/// The OpenSSL files one process uses, and the probes attached for it.
#[derive(Default)]
struct Hooked {
    /// (device, inode, path as reachable from here) of each file.
    files: Vec<(u64, u64, PathBuf)>,
    links: Vec<ProbeLink>,
}

pub(crate) struct OpenSslProbes {
    scope: TlsProbes,
    /// With `TlsProbes::All`: (device, inode) of the files attached for every process.
    global: HashSet<(u64, u64)>,
    /// The OpenSSL entry points of each file looked at, by (device, inode); empty for a file
    /// that is not OpenSSL.
    entries: HashMap<(u64, u64), Vec<OpenSslEntry>>,
    /// (device, inode) of files already reported in the log.
    announced: HashSet<(u64, u64)>,
    procs: HashMap<u32, Hooked>,
    /// Processes whose maps are due for a look: one queue per delay of `SCAN_AFTER`, so each
    /// stays in time order.
    due: [VecDeque<(Instant, u32)>; SCAN_AFTER.len()],
    last_sweep: Instant,
    /// Executable paths (as processes name them) and whether the file carries OpenSSL, since
    /// `exes_since`.
    exes: HashMap<String, bool>,
    exes_since: Instant,
}

impl OpenSslProbes {
    /// With `TlsProbes::All`, attaches the system libssl now.
    pub(crate) fn start(scope: TlsProbes, probes: &mut Probes) -> Self {
        let mut this = Self {
            scope,
            global: HashSet::new(),
            entries: HashMap::new(),
            announced: HashSet::new(),
            procs: HashMap::new(),
            due: Default::default(),
            last_sweep: Instant::now(),
            exes: HashMap::new(),
            exes_since: Instant::now(),
        };
        if scope == TlsProbes::All {
            for path in SYSTEM_LIBSSL {
                this.attach(probes, 0, Path::new(path));
            }
        }
        for name in KNOWN_CARRIERS {
            let Some(path) = on_path(name) else { continue };
            let carries = this.carries_openssl(&path);
            this.exes.insert(path.display().to_string(), carries);
            if carries && scope == TlsProbes::All {
                this.attach(probes, 0, &path);
            }
        }
        this
    }

    /// A watched process exec'd `exe` (or was adopted): attach now if the executable carries
    /// OpenSSL, and look at its maps soon, and again later.
    pub(crate) fn on_exec(&mut self, probes: &mut Probes, pid: u32, exe: &str) {
        if self.exes_since.elapsed() > EXE_MEMORY {
            self.exes.clear();
            self.exes_since = Instant::now();
        }
        let carries = if let Some(&known) = self.exes.get(exe) {
            known
        } else {
            let through_root = through_root(pid, exe);
            let path = if through_root.exists() {
                through_root
            } else {
                PathBuf::from(exe)
            };
            let carries = self.carries_openssl(&path);
            self.exes.insert(exe.to_string(), carries);
            carries
        };
        if carries {
            self.consider_mapped(probes, pid, exe);
        }
        let now = Instant::now();
        for (queue, delay) in self.due.iter_mut().zip(SCAN_AFTER) {
            queue.push_back((now + delay, pid));
            if queue.len() > 100_000 {
                // An exec storm: keep the newest; the mmap events cover libraries mapped later.
                queue.drain(..queue.len() - 100_000);
            }
        }
    }

    /// A watched process is mapping `path` (as it sees it) for execution: attach now, before
    /// its first TLS call.
    pub(crate) fn consider_mapped(&mut self, probes: &mut Probes, pid: u32, path: &str) {
        let through_root = through_root(pid, path);
        if through_root.exists() {
            self.attach(probes, pid, &through_root);
        } else if self.scope == TlsProbes::All {
            // The process is gone already; its library may still be on this filesystem.
            self.attach(probes, pid, Path::new(path));
        }
    }

    /// A process with probes forked: the child gets the same.
    pub(crate) fn on_fork(&mut self, probes: &mut Probes, parent: u32, child: u32) {
        let Some(files) = self.procs.get(&parent).map(|h| h.files.clone()) else {
            return;
        };
        for (_, _, path) in files {
            self.attach(probes, child, &path);
        }
    }

    /// The process ended: its probes go.
    pub(crate) fn on_exit(&mut self, probes: &mut Probes, pid: u32) {
        if let Some(hooked) = self.procs.remove(&pid) {
            let started = Instant::now();
            probes.detach(hooked.links);
            probes.set_tls_hooked(pid, false);
            let micros = started.elapsed().as_micros() as u64;
            tracing::debug!(pid, micros, "TLS plaintext probes detached");
        }
    }

    /// Scans the maps of processes that are due, and detaches the probes of ended processes.
    pub(crate) fn tick(&mut self, probes: &mut Probes) {
        let now = Instant::now();
        for stage in 0..self.due.len() {
            while let Some(&(when, pid)) = self.due[stage].front() {
                if when > now {
                    break;
                }
                self.due[stage].pop_front();
                for lib in ssl_libraries_of(pid) {
                    self.attach(probes, pid, &lib);
                }
            }
        }
        if now.duration_since(self.last_sweep) >= SWEEP_EVERY {
            self.last_sweep = now;
            let gone: Vec<u32> = self
                .procs
                .keys()
                .copied()
                .filter(|pid| !Path::new(&format!("/proc/{pid}")).exists())
                .collect();
            for pid in gone {
                self.on_exit(probes, pid);
            }
        }
    }

    /// Attaches to `path` for `pid` (with `TlsProbes::Watched`) or for everyone, once.
    fn attach(&mut self, probes: &mut Probes, pid: u32, path: &Path) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let file = (meta.dev(), meta.ino());
        if self.scope == TlsProbes::All {
            if !self.global.insert(file) {
                return;
            }
            let entries = self.entries_of(file, path);
            if entries.is_empty() {
                return;
            }
            match probes.attach_openssl(path, &entries, None) {
                // Kept for the agent's lifetime.
                Ok(_) => tracing::info!(path = %path.display(), "TLS plaintext probes attached"),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cannot attach the TLS probes: {e}");
                }
            }
            return;
        }
        let Some(nz_pid) = NonZeroU32::new(pid) else {
            return;
        };
        let entries = self.entries_of(file, path);
        if entries.is_empty() {
            return;
        }
        let has = |h: &Hooked| h.files.iter().any(|f| (f.0, f.1) == file);
        if self.procs.get(&pid).is_some_and(has) {
            return;
        }
        // Marked first: a fork while the probes are being attached is reported, and handled
        // once they are.
        let first = !self.procs.contains_key(&pid);
        if first {
            probes.set_tls_hooked(pid, true);
        }
        let started = Instant::now();
        match probes.attach_openssl(path, &entries, Some(nz_pid)) {
            Ok(links) => {
                let micros = started.elapsed().as_micros() as u64;
                let hooked = self.procs.entry(pid).or_default();
                hooked.files.push((file.0, file.1, path.to_path_buf()));
                hooked.links.extend(links);
                if self.announced.insert(file) {
                    tracing::info!(path = %path.display(), pid, micros, "TLS plaintext probes attached");
                } else {
                    tracing::debug!(path = %path.display(), pid, micros, "TLS plaintext probes attached");
                }
            }
            Err(e) => {
                if first {
                    probes.set_tls_hooked(pid, false);
                }
                tracing::warn!(
                    path = %path.display(),
                    pid,
                    "cannot attach the TLS probes: {e}; this process's TLS traffic is not readable"
                );
            }
        }
    }

    /// Whether the executable at `path` exports OpenSSL's entry points itself (read once per file).
    fn carries_openssl(&mut self, path: &Path) -> bool {
        let Ok(meta) = std::fs::metadata(path) else {
            return false;
        };
        !self.entries_of((meta.dev(), meta.ino()), path).is_empty()
    }

    /// The OpenSSL entry points of a file, read once.
    fn entries_of(&mut self, file: (u64, u64), path: &Path) -> Vec<OpenSslEntry> {
        if self.entries.len() >= 65_536 && !self.entries.contains_key(&file) {
            // Every executable run is looked at: forget them all rather than grow without end.
            self.entries.clear();
        }
        self.entries
            .entry(file)
            .or_insert_with(|| {
                let entries = openssl_entries(path).unwrap_or_else(|e| {
                    tracing::warn!("cannot read the symbols of {e}");
                    Vec::new()
                });
                if !entries.is_empty() {
                    tracing::debug!(path = %path.display(), ?entries, "OpenSSL probe sites");
                }
                entries
            })
            .clone()
    }
}

/// `path` as process `pid` names it, reached through its root directory (so files inside a
/// container resolve).
fn through_root(pid: u32, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root{path}"))
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
            let through_root = through_root(pid, path);
            if !out.contains(&through_root) {
                out.push(through_root);
            }
        }
    }
    out
}
