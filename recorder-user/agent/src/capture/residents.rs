//! Processes already running in a cgroup when it starts to be watched. The kernel adopts such a
//! process at its next fork or exec; one that never does either (a container's main process: a
//! Python agent talking to its database) would never be recorded. The agent adopts them itself:
//! each goes into the kernel's table of tracked processes, so its socket and TLS traffic is
//! captured from then on, and gets an `exec` record marked `adopted`, built from `/proc` as the
//! kernel builds one from the task.
//!
//! A container's cgroup becomes watched only after its pod's status names the container,
//! always after its first process started: this is how that process is recorded.
use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use recorder_common::{
    ARGV_MAX, EXEC_ADOPTED, EXEC_ARGV_TRUNCATED, EXEC_SESSION_ROOT, EventHeader, EventKind,
    ExecHead, PATH_COMPONENT, PATH_DEPTH, PATH_MISSING, PATH_TOO_DEEP, PATH_UNLINKED,
    PROC_OWN_EXEC, ProcInfo, ProcKey, RawPath,
};

use super::builder::boot_ns_now;
use crate::loader::Probes;

/// An adopted process's exec event, as the ring buffer would carry it.
pub(crate) struct Resident {
    pub(crate) head: Box<ExecHead>,
    pub(crate) argv: Vec<u8>,
}

/// Adopts every process in `dir` and the cgroups below it for `identity`, skipping those the
/// kernel tracks already. `mount` is the cgroup v2 mount.
pub(crate) fn adopt_all(
    probes: &mut Probes,
    mount: &Path,
    dir: &Path,
    identity: u32,
) -> Vec<Resident> {
    let mut out = Vec::new();
    for pid in pids_below(dir) {
        match adopt(probes, mount, pid, identity) {
            Ok(Some(resident)) => out.push(resident),
            Ok(None) => {}
            Err(e) => tracing::debug!(pid, error = %e, "not adopted"),
        }
    }
    out
}

/// The processes of `dir` and of the cgroups below it.
fn pids_below(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(pids_below(&entry.path()));
            }
        }
    }
    pids
}

/// What `/proc/<pid>/stat` says: (parent pid, start time in boot-clock nanoseconds).
fn stat(pid: u32) -> std::io::Result<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let bad = || std::io::Error::other(format!("/proc/{pid}/stat: unexpected format"));
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .ok_or_else(bad)?
        .1
        .split_whitespace()
        .collect();
    // Fields 4 (ppid) and 22 (starttime, clock ticks since boot), counted from 1 with the pid.
    let ppid = fields.get(1).and_then(|f| f.parse().ok()).ok_or_else(bad)?;
    let ticks: u64 = fields
        .get(19)
        .and_then(|f| f.parse().ok())
        .ok_or_else(bad)?;
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1);
    Ok((ppid, ticks * (1_000_000_000 / hz)))
}

fn adopt(
    probes: &mut Probes,
    mount: &Path,
    pid: u32,
    identity: u32,
) -> Result<Option<Resident>, Box<dyn std::error::Error>> {
    let (ppid, started) = stat(pid)?;
    let key = ProcKey {
        ktime: started,
        pid,
        _pad: 0,
    };
    let info = ProcInfo {
        identity,
        flags: PROC_OWN_EXEC,
        exec: key,
        session: key,
    };
    if !probes.track(pid, info)? {
        return Ok(None); // the kernel adopted it first
    }
    // The process may have ended before it was tracked (the kernel then never reports its
    // exit, and the entry would wait for the pid's next owner): it must still be the same one.
    if stat(pid).map(|(_, s)| s).ok() != Some(started) {
        probes.untrack(pid);
        return Ok(None);
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut flags = EXEC_SESSION_ROOT | EXEC_ADOPTED;
    let argv_total = cmdline.len() as u64;
    let mut argv = cmdline;
    if argv.len() > ARGV_MAX {
        argv.truncate(ARGV_MAX);
        flags |= EXEC_ARGV_TRUNCATED;
    }
    let head = ExecHead {
        header: EventHeader {
            kind: EventKind::Exec as u32,
            identity,
            pid,
            _pad: 0,
            ktime: boot_ns_now(),
            cgroup_id: cgroup_id(mount, pid).unwrap_or(0),
        },
        exec: key,
        parent_exec: ProcKey::NONE,
        session: key,
        ppid,
        uid: real_uid(pid).unwrap_or(u32::MAX),
        flags,
        argv_len: argv.len() as u32,
        argv_total,
        exe: raw_path(std::fs::read_link(format!("/proc/{pid}/exe")).ok()),
        cwd: raw_path(std::fs::read_link(format!("/proc/{pid}/cwd")).ok()),
    };
    Ok(Some(Resident {
        head: Box::new(head),
        argv,
    }))
}

/// The cgroup v2 id (the directory's inode) of the process's cgroup.
fn cgroup_id(mount: &Path, pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = mount.join(path.trim_start_matches('/'));
    std::fs::metadata(dir).ok().map(|m| m.ino())
}

fn real_uid(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// A path in the kernel event's form: components leaf first, each NUL-terminated in its slot.
fn raw_path(path: Option<PathBuf>) -> RawPath {
    let mut raw = RawPath {
        depth: 0,
        flags: 0,
        components: [[0; PATH_COMPONENT]; PATH_DEPTH],
    };
    let Some(path) = path else {
        raw.flags = PATH_MISSING;
        return raw;
    };
    let mut text = path.to_string_lossy().into_owned();
    if let Some(live) = text.strip_suffix(" (deleted)") {
        text = live.to_string();
        raw.flags |= PATH_UNLINKED;
    }
    let parts: Vec<&str> = text.split('/').filter(|p| !p.is_empty()).collect();
    if parts.len() > PATH_DEPTH {
        raw.flags |= PATH_TOO_DEEP;
    }
    for (slot, part) in raw.components.iter_mut().zip(parts.iter().rev()) {
        let bytes = part.as_bytes();
        let n = bytes.len().min(PATH_COMPONENT - 1);
        slot[..n].copy_from_slice(&bytes[..n]);
        raw.depth += 1;
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::text::render_path;

    #[test]
    fn paths_read_back_as_the_kernel_writes_them() {
        let raw = raw_path(Some(PathBuf::from("/usr/bin/python3.11")));
        assert_eq!(render_path(&raw), "/usr/bin/python3.11");
        let raw = raw_path(Some(PathBuf::from("/tmp/agent (deleted)")));
        assert_ne!(raw.flags & PATH_UNLINKED, 0);
        assert_eq!(raw_path(None).flags, PATH_MISSING);
    }

    #[test]
    fn reads_this_process() {
        let (ppid, started) = stat(std::process::id()).unwrap();
        assert!(ppid > 0 && started > 0);
        assert!(started <= boot_ns_now());
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        assert_eq!(real_uid(std::process::id()), Some(uid));
    }
}
