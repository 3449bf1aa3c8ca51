//! The cgroup v2 filesystem: where it is mounted, and walks of its directories.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum CgroupfsError {
    #[error("cannot read /proc/self/mountinfo: {0}")]
    Mountinfo(std::io::Error),
    #[error(
        "no cgroup v2 hierarchy is mounted (no cgroup2 line in /proc/self/mountinfo); mount one with `mount -t cgroup2 none /sys/fs/cgroup`"
    )]
    NoV2,
}

/// The mount point of the cgroup v2 hierarchy (`/sys/fs/cgroup` on most hosts,
/// `/sys/fs/cgroup/unified` in systemd's hybrid mode).
pub(crate) fn v2_mount() -> Result<PathBuf, CgroupfsError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(CgroupfsError::Mountinfo)?;
    v2_mount_from(&text).ok_or(CgroupfsError::NoV2)
}

/// Parses mountinfo text: `id parent major:minor root mountpoint options... - fstype source super`.
pub(crate) fn v2_mount_from(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let point = left.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_octal(point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every cgroup directory below `mount`: inode (= cgroup id) -> path relative to the mount,
/// written `/a/b` (the root is `/`).
pub(crate) fn walk_ids(mount: &Path) -> HashMap<u64, String> {
    let mut out = HashMap::new();
    let mut stack = vec![mount.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        let rel = dir
            .strip_prefix(mount)
            .map_or_else(|_| "/".into(), |r| format!("/{}", r.display()));
        out.insert(meta.ino(), rel);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    out
}

/// The first directory named `name` below `mount`, breadth first (systemd puts a unit's cgroup at
/// `.../<slice>/<unit>`).
pub(crate) fn find_dir_named(mount: &Path, name: &str) -> Option<PathBuf> {
    let mut queue = std::collections::VecDeque::from([mount.to_path_buf()]);
    while let Some(dir) = queue.pop_front() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if entry.file_name() == name {
                return Some(entry.path());
            }
            queue.push_back(entry.path());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v2_mount_in_hybrid_and_unified_layouts() {
        let hybrid = "25 0 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n\
                      27 25 0:24 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(
            v2_mount_from(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified =
            "30 1 0:26 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            v2_mount_from(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let escaped = "30 1 0:26 / /mnt/my\\040cg rw - cgroup2 none rw\n";
        assert_eq!(v2_mount_from(escaped), Some(PathBuf::from("/mnt/my cg")));
        assert_eq!(v2_mount_from("1 0 0:1 / / rw - ext4 /dev/vda rw\n"), None);
    }

    #[test]
    fn this_machine_has_a_v2_hierarchy() {
        let mount = v2_mount().unwrap();
        let ids = walk_ids(&mount);
        assert_eq!(
            ids.get(&std::fs::metadata(&mount).unwrap().ino())
                .map(String::as_str),
            Some("/")
        );
    }
}
