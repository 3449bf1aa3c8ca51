//! The processes an agent holds, on disk. A held process is stopped: if the agent died with it
//! held, nobody would ever continue or kill it. The agent rewrites this file each time a hold
//! starts or ends, and at start resolves whatever a previous run left in it ([`resolve_left`]),
//! as the configuration says (deny by default). A process is known by its pid *and* its start
//! time, so a pid reused since is never touched.
use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{ApprovalError, OnRestart};

/// One held action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub request: String,
    pub pid: u32,
    /// The process's start time in clock ticks after boot (`/proc/PID/stat`, field 22).
    pub start_ticks: u64,
    pub identity: String,
    pub session: String,
    pub exec_id: String,
    pub action: String,
    pub text: String,
    pub rule: String,
    pub held_unix_ns: i64,
}

pub struct HoldsFile {
    path: PathBuf,
}

impl HoldsFile {
    pub fn new(path: PathBuf) -> Self {
        HoldsFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file's content with `held`, atomically (a new file renamed over the old),
    /// and on disk before it returns.
    pub fn save(&self, held: &[Held]) -> Result<(), ApprovalError> {
        let io = |what, source| ApprovalError::Io {
            what,
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec(held).unwrap_or_default();
        let mut file = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
        file.write_all(&body).map_err(|e| io("write", e))?;
        file.sync_all().map_err(|e| io("sync", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io("replace", e))?;
        Ok(())
    }

    /// What the file lists; nothing if there is no file. A damaged file is an error: its
    /// processes could not be resolved.
    pub fn load(&self) -> Result<Vec<Held>, ApprovalError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ApprovalError::Io {
                what: "parse",
                path: self.path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(ApprovalError::Io {
                what: "read",
                path: self.path.clone(),
                source: e,
            }),
        }
    }
}

/// What became of a hold left by a previous run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Killed (`on_restart = "deny"`).
    Killed,
    /// Continued (`on_restart = "approve"`).
    Continued,
    /// The process was gone (or its pid is another process's now).
    Gone,
}

/// Resolves every hold in `file` by `on_restart`, then empties the file.
pub fn resolve_left(
    file: &HoldsFile,
    on_restart: OnRestart,
) -> Result<Vec<(Held, Outcome)>, ApprovalError> {
    let mut out = Vec::new();
    for held in file.load()? {
        let same = start_ticks(held.pid) == Some(held.start_ticks);
        let outcome = if !same {
            Outcome::Gone
        } else if on_restart == OnRestart::Approve {
            signal(held.pid, libc::SIGCONT);
            Outcome::Continued
        } else {
            signal(held.pid, libc::SIGKILL);
            Outcome::Killed
        };
        out.push((held, outcome));
    }
    file.save(&[])?;
    Ok(out)
}

/// Sends `sig` to the process (its whole thread group).
pub fn signal(pid: u32, sig: i32) -> bool {
    // SAFETY: a plain system call on a pid; a wrong one fails with ESRCH.
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

/// The start time of `pid` in clock ticks after boot, if it runs.
pub fn start_ticks(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, ticks)| ticks)
}

/// The state letter (`R`, `S`, `T`…) and start time (clock ticks after boot) of `pid`, from one
/// read of `/proc/PID/stat`.
pub fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last `)`.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    // After `)`: state is field 3, start time (field 22) the 20th.
    let state = fields.next()?.chars().next()?;
    let ticks = fields.nth(18)?.parse().ok()?;
    Some((state, ticks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_left_hold_is_killed_and_a_reused_pid_is_not_touched() {
        use std::os::unix::process::ExitStatusExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = HoldsFile::new(dir.path().join("holds.json"));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        signal(pid, libc::SIGSTOP);
        let held = |pid, start_ticks| Held {
            request: format!("r{pid}"),
            pid,
            start_ticks,
            identity: "claude".into(),
            session: "s".into(),
            exec_id: "e".into(),
            action: "exec".into(),
            text: "sleep 30".into(),
            rule: "r".into(),
            held_unix_ns: 1,
        };
        let ticks = start_ticks(pid).unwrap();
        // Our own pid with a wrong start time: a stand-in for a pid reused by another process.
        file.save(&[held(pid, ticks), held(std::process::id(), ticks + 1)])
            .unwrap();
        let resolved = resolve_left(&file, OnRestart::Deny).unwrap();
        assert_eq!(resolved[0].1, Outcome::Killed);
        assert_eq!(resolved[1].1, Outcome::Gone);
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert!(
            file.load().unwrap().is_empty(),
            "resolved holds are forgotten"
        );
    }

    #[test]
    fn a_damaged_file_is_an_error_not_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("holds.json");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(HoldsFile::new(path).load().is_err());
    }
}
