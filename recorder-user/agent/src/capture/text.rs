//! Turning raw kernel bytes into the text users read: argv, shell-quoted command lines, paths,
//! exit statuses. Pure functions.
use recorder_common::{PATH_TOO_DEEP, PATH_UNLINKED, RawPath};

/// Splits the kernel's NUL-separated argv area. The area normally ends with a NUL; when it was
/// cut at the bound, the last argument is partial and has none. Empty arguments are kept.
/// Bytes that are not UTF-8 are replaced with U+FFFD.
pub(crate) fn split_argv(area: &[u8]) -> Vec<String> {
    if area.is_empty() {
        return Vec::new();
    }
    // A complete area ends with the last argument's NUL; a cut one (or one a process rewrote
    // before we read it) may not, and then its last piece is kept as is.
    let body = area.strip_suffix(&[0]).unwrap_or(area);
    body.split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

pub(crate) use recorder_record::shell::command_line;
#[cfg(test)]
use recorder_record::shell::quote as shell_quote;

/// An absolute path from kernel components (leaf first). A pseudo file (memfd) or a deleted
/// file reads like /proc/PID/exe: `/memfd:name (deleted)`. A walk stopped by the depth bound
/// starts with `.../`.
pub(crate) fn render_path(path: &RawPath) -> String {
    let depth = (path.depth as usize).min(path.components.len());
    let mut parts: Vec<String> = path.components[..depth]
        .iter()
        .rev()
        .map(|c| {
            let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
            String::from_utf8_lossy(&c[..end]).into_owned()
        })
        .collect();
    if path.flags & PATH_TOO_DEEP != 0 {
        parts.insert(0, "...".to_string());
    }
    let mut out = format!("/{}", parts.join("/"));
    if path.flags & PATH_UNLINKED != 0 {
        out.push_str(" (deleted)");
    }
    out
}

/// How a process ended, from `task_struct.exit_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    Code(u8),
    Signal { signal: u8, core_dumped: bool },
}

pub(crate) fn exit_status(raw: u32) -> ExitStatus {
    let signal = (raw & 0x7f) as u8;
    if signal == 0 {
        ExitStatus::Code(((raw >> 8) & 0xff) as u8)
    } else {
        ExitStatus::Signal {
            signal,
            core_dumped: raw & 0x80 != 0,
        }
    }
}

/// The conventional name of a Linux signal number (x86_64).
pub(crate) fn signal_name(signal: u8) -> String {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match NAMES.get(signal as usize) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => format!("SIG{signal}"),
    }
}

#[cfg(test)]
mod tests {
    use recorder_common::{PATH_COMPONENT, PATH_DEPTH};

    use super::*;

    /// A signal whose default action dumps core.
    const SIGSEGV: u32 = 11;

    #[test]
    fn splits_argv_exactly() {
        assert_eq!(split_argv(b"ls\0-l\0/\0"), ["ls", "-l", "/"]);
        assert_eq!(split_argv(b"echo\0\0a b\0"), ["echo", "", "a b"]);
        assert_eq!(split_argv(b"x\0line1\nline2\0"), ["x", "line1\nline2"]);
        assert_eq!(split_argv("é\0日本\0".as_bytes()), ["é", "日本"]);
        assert_eq!(split_argv(b"cat\0aaaa"), ["cat", "aaaa"]);
        assert!(split_argv(b"").is_empty());
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(
            command_line(&["ls".into(), "-l".into(), "/tmp".into()]),
            "ls -l /tmp"
        );
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    fn raw(components: &[&str], flags: u32) -> RawPath {
        let mut p = RawPath {
            depth: components.len() as u32,
            flags,
            components: [[0; PATH_COMPONENT]; PATH_DEPTH],
        };
        for (slot, c) in p.components.iter_mut().zip(components) {
            slot[..c.len()].copy_from_slice(c.as_bytes());
        }
        p
    }

    #[test]
    fn renders_paths_leaf_first() {
        assert_eq!(render_path(&raw(&["ls", "bin", "usr"], 0)), "/usr/bin/ls");
        assert_eq!(render_path(&raw(&[], 0)), "/");
        assert_eq!(
            render_path(&raw(&["memfd:payload"], PATH_UNLINKED)),
            "/memfd:payload (deleted)"
        );
        assert_eq!(render_path(&raw(&["c", "b"], PATH_TOO_DEEP)), "/.../b/c");
    }

    #[test]
    fn decodes_exit_status() {
        assert_eq!(exit_status(0), ExitStatus::Code(0));
        assert_eq!(exit_status(3 << 8), ExitStatus::Code(3));
        assert_eq!(
            exit_status(9),
            ExitStatus::Signal {
                signal: 9,
                core_dumped: false
            }
        );
        assert_eq!(
            exit_status(0x80 | SIGSEGV),
            ExitStatus::Signal {
                signal: 11,
                core_dumped: true
            }
        );
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(40), "SIG40");
    }
}
