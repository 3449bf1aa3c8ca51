//! Probes that belong to a program rather than to a library: the `readline` return probe in
//! bash, and the Go TLS probes in Go programs (kubectl and any other Go client). Each binary
//! file is considered once (a uprobe is per inode: every process running that file is covered).
//!
//! The usual binaries (`bash`, `kubectl` on the agent's PATH) are attached before the agent
//! reports ready. Others are found when a watched process execs them; reading a Go binary's
//! symbol table takes a moment, so that work runs on a helper thread and the probes are
//! attached on the next tick. A Go program's first TLS bytes can come before that; the TLS
//! tracker then reports the connection as `tls_unhooked` rather than miss it silently.
use std::{
    collections::HashSet,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::mpsc,
    time::{Duration, Instant},
};

use super::gobin::{self, GoBinary, GoTlsFunctions};
use crate::loader::Probes;

/// Programs looked for on the agent's PATH at start.
const KNOWN_PROGRAMS: [&str; 2] = ["bash", "kubectl"];

/// Executable paths are remembered this long: an exec storm of the same few programs then costs
/// one set lookup per exec, and a program replaced at the same path is looked at again after it.
const PATH_MEMORY: Duration = Duration::from_mins(1);

/// What a Go binary inspection found, for the capture thread to attach.
type Inspected = (PathBuf, Result<GoBinary, gobin::GoBinError>);

pub(crate) struct ProgramProbes {
    /// (device, inode) of every binary already considered.
    seen: HashSet<(u64, u64)>,
    /// Executable paths (as the processes saw them) already considered, since `paths_since`.
    paths: HashSet<String>,
    paths_since: Instant,
    to_inspect: mpsc::Sender<PathBuf>,
    inspected: mpsc::Receiver<Inspected>,
}

impl ProgramProbes {
    /// Starts the inspection thread and attaches to the known programs on PATH.
    pub(crate) fn start(probes: &mut Probes) -> Self {
        let (to_inspect, requests) = mpsc::channel::<PathBuf>();
        let (results, inspected) = mpsc::channel::<Inspected>();
        let spawned = std::thread::Builder::new()
            .name("go-symbols".into())
            .spawn(move || {
                for path in requests {
                    let found = gobin::inspect(&path);
                    if results.send((path, found)).is_err() {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!("starting the Go symbol reader: {e}; Go programs will not be hooked");
        }
        let mut this = Self {
            seen: HashSet::new(),
            paths: HashSet::new(),
            paths_since: Instant::now(),
            to_inspect,
            inspected,
        };
        for name in KNOWN_PROGRAMS {
            if let Some(path) = on_path(name) {
                this.consider(probes, &path, true);
            }
        }
        this
    }

    /// A watched process exec'd `exe` (as it sees it).
    pub(crate) fn on_exec(&mut self, probes: &mut Probes, pid: u32, exe: &str) {
        if self.paths_since.elapsed() > PATH_MEMORY {
            self.paths.clear();
            self.paths_since = Instant::now();
        }
        if !self.paths.insert(exe.to_string()) {
            return;
        }
        // Through /proc the file is found while the process runs; if it is gone already, the
        // path may still name it here. Resolved, the path stays valid for the helper thread
        // and for aya, which opens it when it attaches.
        let Ok(path) = std::fs::canonicalize(format!("/proc/{pid}/exe"))
            .or_else(|_| std::fs::canonicalize(exe))
        else {
            return;
        };
        self.consider(probes, &path, false);
    }

    /// Attaches the probes of Go binaries inspected since the last tick.
    pub(crate) fn tick(&mut self, probes: &mut Probes) {
        while let Ok((path, found)) = self.inspected.try_recv() {
            Self::attach_go(probes, &path, found);
        }
    }

    /// Attaches what `path` (resolved, symlinks followed) needs, once per file.
    fn consider(&mut self, probes: &mut Probes, path: &Path, wait: bool) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if !meta.is_file() || !self.seen.insert((meta.dev(), meta.ino())) {
            return;
        }
        if path.file_name().is_some_and(|n| n == "bash") {
            match probes.attach_readline(path) {
                Ok(()) => tracing::info!(path = %path.display(), "shell line probe attached"),
                Err(e) => tracing::warn!(path = %path.display(), "cannot attach to readline: {e}"),
            }
            return;
        }
        if !gobin::looks_like_go(path) {
            return;
        }
        if wait {
            let found = gobin::inspect(path);
            Self::attach_go(probes, path, found);
        } else if self.to_inspect.send(path.to_path_buf()).is_err() {
            tracing::error!("the Go symbol reader stopped; Go programs are no longer hooked");
        }
    }

    fn attach_go(probes: &mut Probes, path: &Path, found: Result<GoBinary, gobin::GoBinError>) {
        match found {
            Ok(GoBinary::GoTls(tls)) => Self::attach_go_tls(probes, path, &tls),
            Ok(GoBinary::GoWithoutTls { .. } | GoBinary::NotGo) => {
                tracing::debug!(path = %path.display(), "no Go TLS in this program");
            }
            Err(e) => tracing::warn!(
                path = %path.display(),
                "cannot read the Go symbol table: {e}; its TLS traffic is not readable"
            ),
        }
    }

    fn attach_go_tls(probes: &mut Probes, path: &Path, tls: &GoTlsFunctions) {
        match probes.attach_go_tls(path, tls) {
            Ok(n) => tracing::info!(
                path = %path.display(),
                go = tls.go_version.as_deref().unwrap_or("unknown"),
                probes = n,
                "Go TLS plaintext probes attached"
            ),
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot attach the Go TLS probes: {e}");
            }
        }
    }
}

/// `name` found on the agent's PATH, symlinks resolved.
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
}
