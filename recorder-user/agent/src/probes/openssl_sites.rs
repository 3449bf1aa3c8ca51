//! Where to put the OpenSSL plaintext probes in a library (or an executable carrying OpenSSL).
//!
//! The obvious places are the four exported functions `SSL_read`, `SSL_read_ex`, `SSL_write`
//! and `SSL_write_ex`. But a uprobe whose first instruction the kernel cannot emulate
//! (`sub $0x18,%rsp`, the usual start of `SSL_read`) is stepped out of line, and that single
//! step is a second trap: measured here, 5.4 µs per call for an entry probe, against 1.2 µs at a
//! `push` the kernel emulates.
//!
//! In OpenSSL 1.1.1 and 3.x the four are thin wrappers: `SSL_read` and `SSL_read_ex` both call
//! `ssl_read_internal(s, buf, num, &readbytes)`, and the writes `ssl_write_internal`, whose
//! first instruction is a `push`. That internal function has the `_ex` form (the byte count
//! through the fourth argument), so one probe pair there sees every read through either
//! wrapper, once, at half the cost. The internal functions are not exported: they are found as
//! the call target of the wrappers, and used only when the code proves it (below); reads and
//! writes are decided apart (OpenSSL 3.3 changed only the write side, to `SSL_write_ex2`).
//! Anything else, or another architecture, gets the exported entry points.
use std::path::Path;

use recorder_common::names::{
    SSL_READ as READ, SSL_READ_EX as READ_EX, SSL_WRITE as WRITE, SSL_WRITE_EX as WRITE_EX,
};

use super::mapped_file::MappedFile;

/// The exported entry points and their programs.
const EXPORTED: [(&str, &str); 4] = [
    ("SSL_read", READ),
    ("SSL_read_ex", READ_EX),
    ("SSL_write", WRITE),
    ("SSL_write_ex", WRITE_EX),
];

/// One probe site in a file: the uprobe program for it and its file offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenSslEntry {
    pub program: &'static str,
    pub offset: u64,
}

/// A function of the file: its address, and its code as far as the file holds it.
struct Function {
    address: u64,
    code: Vec<u8>,
}

/// The OpenSSL probe sites of `path` (none: it is not OpenSSL), reads first: attaching takes
/// milliseconds, and a request caught by a write probe then has its response caught too.
/// Read once per file, so attaching for each new process costs only the attach itself: the
/// process is running towards its first TLS call meanwhile.
pub(crate) fn openssl_entries(path: &Path) -> Result<Vec<OpenSslEntry>, String> {
    use object::{Object, ObjectSection, ObjectSymbol};
    // Mapped, not read: an executable carrying OpenSSL (Node) is around 100 MB, of which the
    // dynamic symbol table is a small part.
    let map = MappedFile::open(path).map_err(|e| e.to_string())?;
    let file = object::File::parse(map.bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    // Address -> file offset, and the code at an address, within the executable sections.
    let sections: Vec<_> = file
        .sections()
        .filter(|s| s.kind() == object::SectionKind::Text)
        .filter_map(|s| Some((s.address(), s.file_range()?, s.data().ok()?)))
        .collect();
    let offset_of = |address: u64| {
        sections.iter().find_map(|&(start, (offset, size), _)| {
            (address >= start && address - start < size).then(|| address - start + offset)
        })
    };
    // The code is read from the file, not through the mapping, where probes of another tracer
    // would show as breakpoints (see `MappedFile::read_at`).
    let function_at = |address: u64| {
        sections.iter().find_map(|&(start, (offset, size), _)| {
            let at = address.checked_sub(start).filter(|&at| at < size)?;
            let len = (size - at).min(MAX_WRAPPER_BYTES as u64) as usize;
            Some(Function {
                address,
                code: map.read_at(offset + at, len).ok()?,
            })
        })
    };
    // The internal functions are in `.text` (not a PLT stub) and are not exported themselves.
    let text = file
        .section_by_name(".text")
        .map(|s| s.address()..s.address() + s.size());
    let is_private_code = |address: u64| {
        text.as_ref().is_some_and(|t| t.contains(&address))
            && !file
                .dynamic_symbols()
                .any(|s| s.is_definition() && s.address() == address)
    };
    let mut exported: Vec<(&'static str, u64)> = Vec::new();
    for symbol in file.dynamic_symbols() {
        let Ok(name) = symbol.name() else { continue };
        let Some(&(_, program)) = EXPORTED.iter().find(|(s, _)| *s == name) else {
            continue;
        };
        if !symbol.is_definition() || symbol.address() == 0 {
            continue;
        }
        if !exported.iter().any(|&(p, _)| p == program) {
            exported.push((program, symbol.address()));
        }
    }
    // A library without SSL_write is not OpenSSL, whatever else it exports.
    if !exported.iter().any(|&(p, _)| p == WRITE) {
        return Ok(Vec::new());
    }
    let address = |program| {
        exported
            .iter()
            .find(|&&(p, _)| p == program)
            .map(|&(_, a)| a)
    };
    let internal = |plain, ex| {
        if !cfg!(target_arch = "x86_64") {
            return None;
        }
        let inner =
            wrapped_call(&function_at(address(ex)?)?, true).filter(|&a| is_private_code(a))?;
        // Only if the plain form goes through the same function: else its calls would be missed.
        (wrapped_call(&function_at(address(plain)?)?, false)? == inner).then_some(inner)
    };
    let (read, write) = (internal(READ, READ_EX), internal(WRITE, WRITE_EX));
    // Reading and writing through one function would be no OpenSSL this knows.
    let distinct = read != write;
    let mut entries = Vec::new();
    for (plain, ex, inner) in [(READ, READ_EX, read), (WRITE, WRITE_EX, write)] {
        match inner.filter(|_| distinct).and_then(offset_of) {
            Some(offset) => entries.push(OpenSslEntry {
                program: ex,
                offset,
            }),
            None => entries.extend([plain, ex].into_iter().filter_map(|program| {
                Some(OpenSslEntry {
                    program,
                    offset: offset_of(address(program)?)?,
                })
            })),
        }
    }
    Ok(entries)
}

/// How much of a wrapper is decoded: `SSL_read` reaches its call within 32 bytes.
const MAX_WRAPPER_BYTES: usize = 96;

/// The function a thin wrapper hands its call to: the target of the first direct `call` (or
/// tail `jmp`), reached without leaving straight-line code, and before which the argument
/// registers are only read. With `same_arguments` (the `_ex` wrappers, which pass all four on),
/// none of `rdi`, `rsi`, `rdx`, `rcx` may be written; without (`SSL_read(s, buf, int num)`, which
/// widens `num` and adds `&readbytes`), only `rdi` and `rsi`. An `_ex` wrapper must be straight
/// code; in the plain one, conditional jumps are followed by their fall-through (its `num < 0`
/// check jumps away). Any instruction not on a short list of plain ones ends the search: the
/// code is then not the wrapper this expects.
fn wrapped_call(function: &Function, same_arguments: bool) -> Option<u64> {
    use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, Register};
    let mut decoder = Decoder::with_ip(64, &function.code, function.address, DecoderOptions::NONE);
    let mut instr = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instr);
        match instr.flow_control() {
            FlowControl::Call | FlowControl::UnconditionalBranch
                if instr.is_call_near() || instr.is_jmp_short_or_near() =>
            {
                return Some(instr.near_branch_target());
            }
            // An `_ex` wrapper has nothing to check: a branch there means the internal function
            // was inlined, and the call found would be one of its helpers (`ERR_new`, say).
            FlowControl::ConditionalBranch if !same_arguments && instr.is_jcc_short_or_near() => {
                continue;
            }
            FlowControl::Next => {}
            _ => return None,
        }
        let plain = matches!(
            instr.mnemonic(),
            Mnemonic::Endbr64
                | Mnemonic::Nop
                | Mnemonic::Push
                | Mnemonic::Sub
                | Mnemonic::Add
                | Mnemonic::Mov
                | Mnemonic::Movsxd
                | Mnemonic::Xor
                | Mnemonic::Test
                | Mnemonic::Cmp
                | Mnemonic::Lea
        );
        if !plain {
            return None;
        }
        // These write at most their first operand, and none of them implicitly.
        let written = match instr.mnemonic() {
            Mnemonic::Test | Mnemonic::Cmp | Mnemonic::Push => Register::None,
            _ => instr.op0_register().full_register(),
        };
        let kept: &[Register] = if same_arguments {
            &[Register::RDI, Register::RSI, Register::RDX, Register::RCX]
        } else {
            &[Register::RDI, Register::RSI]
        };
        if kept.contains(&written) {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(path: &str) -> Vec<OpenSslEntry> {
        openssl_entries(Path::new(path)).unwrap()
    }

    fn wrapper(code: &[u8], same_arguments: bool) -> Option<u64> {
        wrapped_call(
            &Function {
                address: 0x1000,
                code: code.to_vec(),
            },
            same_arguments,
        )
    }

    #[test]
    fn the_system_libssl_is_probed_inside_its_wrappers_at_two_functions_that_start_with_a_push() {
        let path = "/usr/lib/x86_64-linux-gnu/libssl.so.3";
        let found = sites(path);
        let programs: Vec<_> = found.iter().map(|e| e.program).collect();
        assert_eq!(programs, [READ_EX, WRITE_EX]);
        assert_ne!(found[0].offset, found[1].offset);
        // The point of it: both internal functions start with an instruction the kernel
        // emulates, `push` (0x50..0x57, with a REX.B prefix for r8..r15).
        let bytes = std::fs::read(path).unwrap();
        for site in &found {
            let at = site.offset as usize;
            let first = match bytes[at] {
                0x41 => bytes[at + 1],
                b => b,
            };
            assert!((0x50..=0x57).contains(&first), "{site:?} starts {first:#x}");
        }
    }

    #[test]
    fn node_carries_openssl_without_thin_wrappers_and_keeps_the_exported_entry_points() {
        // Node's build inlines the internal functions into the four (which start with `push`).
        let programs: Vec<_> = sites("/usr/bin/node").iter().map(|e| e.program).collect();
        assert_eq!(programs, [READ, READ_EX, WRITE, WRITE_EX]);
    }

    #[test]
    fn files_that_do_not_define_openssl_have_no_sites_and_bad_files_are_errors() {
        // Python imports libssl (undefined symbols) and curl goes through libcurl.
        assert!(sites("/usr/bin/python3").is_empty());
        assert!(sites("/usr/bin/curl").is_empty());
        // Not a regular file, not ELF: errors, not panics.
        assert!(openssl_entries(Path::new("/usr/bin")).is_err());
        assert!(openssl_entries(Path::new("/etc/hostname")).is_err());
    }

    #[test]
    fn a_wrapper_is_followed_to_its_call_only_through_plain_code() {
        // SSL_read_ex of OpenSSL 3.0: sub $8,%rsp; call +0x100.
        let ex = [0x48, 0x83, 0xec, 0x08, 0xe8, 0xfb, 0x00, 0x00, 0x00];
        assert_eq!(wrapper(&ex, true), Some(0x1000 + 4 + 5 + 0xfb));
        // A tail call: jmp +0x10.
        assert_eq!(wrapper(&[0xe9, 0x10, 0, 0, 0], true), Some(0x1015));
        // SSL_read: test %edx,%edx; js +0x10 (followed through); mov %rsp,%rcx;
        // movslq %edx,%rdx; call.
        let plain = [
            0x85, 0xd2, 0x78, 0x10, 0x48, 0x89, 0xe1, 0x48, 0x63, 0xd2, 0xe8, 0, 0, 0, 0,
        ];
        assert_eq!(wrapper(&plain, false), Some(0x100f));
        // ... but the same code changes rcx and rdx, which an `_ex` wrapper must pass on.
        assert_eq!(wrapper(&plain, true), None);
        // SSL_write_ex of OpenSSL 3.3, into SSL_write_ex2(s, buf, num, flags, written):
        // mov %rcx,%r8; xor %ecx,%ecx; jmp. The arguments change meaning: refused.
        let ex2 = [0x49, 0x89, 0xc8, 0x31, 0xc9, 0xeb, 0x10];
        assert_eq!(wrapper(&ex2, true), None);
        // The buffer moved before the call: not a plain hand-over.
        assert_eq!(wrapper(&[0x48, 0x89, 0xd6, 0xe8, 0, 0, 0, 0], false), None);
        // A return, an indirect call, or an unknown instruction first: not a wrapper.
        assert_eq!(wrapper(&[0xc3, 0xe8, 0, 0, 0, 0], true), None);
        assert_eq!(wrapper(&[0xff, 0xd0, 0xe8, 0, 0, 0, 0], true), None);
        assert_eq!(wrapper(&[0xf3, 0x48, 0xab, 0xe8, 0, 0, 0, 0], true), None);
        // An `_ex` wrapper with a check before its call has the internal function inlined:
        // cmpq $0,0x30(%rdi); je; call (ERR_new, say). The plain form may have its check.
        let inlined = [0x48, 0x83, 0x7f, 0x30, 0x00, 0x74, 0x10, 0xe8, 0, 0, 0, 0];
        assert_eq!(wrapper(&inlined, true), None);
        assert_eq!(wrapper(&inlined, false), Some(0x100c));
        // Code that ends (or cannot be decoded) before any call.
        assert_eq!(wrapper(&[0x90, 0x90], true), None);
        assert_eq!(wrapper(&[], true), None);
    }
}
