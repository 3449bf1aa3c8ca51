//! Process and session ids as records carry them: opaque to users, unique per host across
//! boots. Both are built from the boot tag (the first 8 hex digits of the kernel's boot id),
//! the thread-group id and the exec's boot-clock time.

/// `exec_id`: `{boot}-{pid}-{ktime}`.
pub fn exec_id(boot: &str, pid: u32, ktime: u64) -> String {
    // Built by hand: every record carries two ids, and `format!` was an eighth of the agent's
    // work per SQL statement.
    let mut id = String::with_capacity(boot.len() + 32);
    id.push_str(boot);
    id.push('-');
    push_digits(&mut id, pid.into(), 10);
    id.push('-');
    push_digits(&mut id, ktime, 10);
    id
}

/// `session`: `s{boot}-{ktime:x}-{pid}`, from the session root's exec.
pub fn session_id(boot: &str, pid: u32, ktime: u64) -> String {
    let mut id = String::with_capacity(boot.len() + 32);
    id.push('s');
    id.push_str(boot);
    id.push('-');
    push_digits(&mut id, ktime, 16);
    id.push('-');
    push_digits(&mut id, pid.into(), 10);
    id
}

/// Appends `value` in `radix` (10 or 16, lowercase), as `format!("{value}")` or `{value:x}`.
fn push_digits(out: &mut String, mut value: u64, radix: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b"0123456789abcdef"[(value % radix) as usize];
        value /= radix;
        if value == 0 {
            break;
        }
    }
    out.extend(digits[start..].iter().map(|&b| b as char));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_as_their_formatted_parts() {
        for (pid, ktime) in [
            (1, 1),
            (32749, 34_628_784_871_227),
            (u32::MAX, u64::MAX),
            (4_194_304, 0x1f7e_a46b_d73b),
        ] {
            assert_eq!(
                exec_id("789155ce", pid, ktime),
                format!("789155ce-{pid}-{ktime}")
            );
            assert_eq!(
                session_id("789155ce", pid, ktime),
                format!("s789155ce-{ktime:x}-{pid}")
            );
        }
    }
}
