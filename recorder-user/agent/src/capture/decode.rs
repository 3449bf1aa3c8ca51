//! Decoding ring buffer items into the shared `#[repr(C)]` event types. Pure: bytes in, values
//! out; a short or unknown item is an error, never a panic.
use recorder_common::{
    CloseEvent, DATA_FIXED_LEN, DataHead, EXEC_FIXED_LEN, EventHeader, EventKind, ExecHead,
    ExitEvent, ForkEvent, IoUringEvent, LibraryEvent, SHELL_LINE_MAX, ShellEvent,
};

/// A decoded kernel event. The exec event's argv is borrowed from the ring buffer item.
pub(crate) enum RawEvent<'a> {
    Exec(Box<ExecHead>, &'a [u8]),
    Exit(ExitEvent),
    /// Socket or TLS bytes, with the payload borrowed from the ring buffer item.
    Data(DataHead, &'a [u8]),
    Library(Box<LibraryEvent>),
    IoUring(IoUringEvent),
    Close(CloseEvent),
    /// A shell line, with its text borrowed from the ring buffer item.
    Shell(Box<ShellEvent>, &'a [u8]),
    Fork(ForkEvent),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    #[error("ring buffer item of {0} bytes is shorter than an event header")]
    Short(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("{kind:?} event of {len} bytes is truncated")]
    Truncated { kind: EventKind, len: usize },
}

/// Reads a `T` from the start of `bytes` (unaligned).
fn read<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: the length is checked, the read is unaligned, and `Pod` types are valid for any
    // bit pattern.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

pub(crate) fn header(bytes: &[u8]) -> Result<EventHeader, DecodeError> {
    read::<EventHeader>(bytes).ok_or(DecodeError::Short(bytes.len()))
}

pub(crate) fn decode(bytes: &[u8]) -> Result<RawEvent<'_>, DecodeError> {
    let h = header(bytes)?;
    match EventKind::from_u32(h.kind) {
        Some(EventKind::Exec) => {
            let head = read::<ExecHead>(bytes).ok_or(DecodeError::Truncated {
                kind: EventKind::Exec,
                len: bytes.len(),
            })?;
            let argv = bytes
                .get(EXEC_FIXED_LEN..EXEC_FIXED_LEN + head.argv_len as usize)
                .ok_or(DecodeError::Truncated {
                    kind: EventKind::Exec,
                    len: bytes.len(),
                })?;
            Ok(RawEvent::Exec(Box::new(head), argv))
        }
        Some(EventKind::Exit) => {
            read::<ExitEvent>(bytes)
                .map(RawEvent::Exit)
                .ok_or(DecodeError::Truncated {
                    kind: EventKind::Exit,
                    len: bytes.len(),
                })
        }
        Some(EventKind::Data) => {
            let head = read::<DataHead>(bytes).ok_or(DecodeError::Truncated {
                kind: EventKind::Data,
                len: bytes.len(),
            })?;
            let payload = bytes
                .get(DATA_FIXED_LEN..DATA_FIXED_LEN + head.len as usize)
                .ok_or(DecodeError::Truncated {
                    kind: EventKind::Data,
                    len: bytes.len(),
                })?;
            Ok(RawEvent::Data(head, payload))
        }
        Some(EventKind::Library) => read::<LibraryEvent>(bytes)
            .map(|e| RawEvent::Library(Box::new(e)))
            .ok_or(DecodeError::Truncated {
                kind: EventKind::Library,
                len: bytes.len(),
            }),
        Some(EventKind::IoUring) => {
            read::<IoUringEvent>(bytes)
                .map(RawEvent::IoUring)
                .ok_or(DecodeError::Truncated {
                    kind: EventKind::IoUring,
                    len: bytes.len(),
                })
        }
        Some(EventKind::Close) => {
            read::<CloseEvent>(bytes)
                .map(RawEvent::Close)
                .ok_or(DecodeError::Truncated {
                    kind: EventKind::Close,
                    len: bytes.len(),
                })
        }
        Some(EventKind::Shell) => {
            let truncated = || DecodeError::Truncated {
                kind: EventKind::Shell,
                len: bytes.len(),
            };
            let ev = read::<ShellEvent>(bytes).ok_or_else(truncated)?;
            let fixed = size_of::<ShellEvent>() - SHELL_LINE_MAX;
            let line = bytes
                .get(fixed..fixed + (ev.len as usize).min(SHELL_LINE_MAX))
                .ok_or_else(truncated)?;
            Ok(RawEvent::Shell(Box::new(ev), line))
        }
        Some(EventKind::Fork) => {
            read::<ForkEvent>(bytes)
                .map(RawEvent::Fork)
                .ok_or(DecodeError::Truncated {
                    kind: EventKind::Fork,
                    len: bytes.len(),
                })
        }
        _ => Err(DecodeError::UnknownKind(h.kind)),
    }
}

#[cfg(test)]
mod tests {
    use recorder_common::{ExecEvent, ProcKey};

    use super::*;

    fn exec_bytes(argv: &[u8]) -> Vec<u8> {
        // Build a real ExecEvent and send only the used part, as the kernel does.
        // SAFETY: `ExecEvent` is `Pod` (integers and arrays of integers, padding in explicit
        // fields), so all-zero bytes are a valid value.
        let mut ev: Box<ExecEvent> = unsafe { Box::new_zeroed().assume_init() };
        ev.head.header.kind = EventKind::Exec as u32;
        ev.head.header.pid = 7;
        ev.head.exec = ProcKey {
            ktime: 5,
            pid: 7,
            _pad: 0,
        };
        ev.head.argv_len = argv.len() as u32;
        ev.argv[..argv.len()].copy_from_slice(argv);
        // SAFETY: the slice covers exactly the one `ExecEvent` `ev` owns, whose bytes are all
        // initialised (`Pod`: no implicit padding), and it is dropped before `ev` is.
        let all = unsafe {
            std::slice::from_raw_parts((&raw const *ev).cast::<u8>(), size_of::<ExecEvent>())
        };
        all[..EXEC_FIXED_LEN + argv.len()].to_vec()
    }

    #[test]
    fn decodes_exec_with_its_argv() {
        let bytes = exec_bytes(b"ls\0-l\0");
        let RawEvent::Exec(head, argv) = decode(&bytes).unwrap() else {
            panic!("not exec")
        };
        assert_eq!(head.exec.pid, 7);
        assert_eq!(argv, b"ls\0-l\0");
    }

    #[test]
    fn rejects_short_unknown_and_truncated_items() {
        assert_eq!(decode(&[1, 2, 3]).err(), Some(DecodeError::Short(3)));
        let mut bad = exec_bytes(b"x\0");
        bad[0] = 99;
        assert_eq!(decode(&bad).err(), Some(DecodeError::UnknownKind(99)));
        let cut = exec_bytes(b"abcdef\0");
        assert!(matches!(
            decode(&cut[..cut.len() - 3]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&cut[..100]),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
