use std::time::Instant;

use proptest::prelude::*;

use super::{buildinfo::*, elf::*, pclntab::*, returns::*, *};

const KUBECTL: &str = "/usr/bin/kubectl";

fn kubectl() -> &'static Path {
    let path = Path::new(KUBECTL);
    assert!(
        path.exists(),
        "{KUBECTL} is missing: it is a required peer of these tests"
    );
    path
}

fn inspect_kubectl() -> GoTlsFunctions {
    match inspect(kubectl()).expect("inspecting kubectl") {
        GoBinary::GoTls(f) => f,
        other => panic!("kubectl should be a Go binary using crypto/tls, got {other:?}"),
    }
}

/// Go's stack-bound check opens every function that has a frame: `cmp rsp,[r14+0x10]`,
/// or for big frames `lea r12,[rsp-n]` then `cmp r12,[r14+0x10]`.
fn has_go_prologue(code: &[u8]) -> bool {
    code.starts_with(&[0x49, 0x3b, 0x66, 0x10])
        || (code.starts_with(&[0x4c, 0x8d, 0x64, 0x24]) && code[5..9] == [0x4d, 0x3b, 0x66, 0x10])
        || (code.starts_with(&[0x4c, 0x8d, 0xa4, 0x24]) && code[8..12] == [0x4d, 0x3b, 0x66, 0x10])
}

#[test]
fn kubectl_tls_functions() {
    let started = Instant::now();
    let found = inspect_kubectl();
    let elapsed = started.elapsed();
    let file = std::fs::read(kubectl()).unwrap();
    eprintln!(
        "kubectl: {:?}, Write at {:#x} ({} rets), Read at {:#x} ({} rets), inspected in {elapsed:?}",
        found.go_version,
        found.write.entry_offset,
        found.write.return_offsets.len(),
        found.read.entry_offset,
        found.read.return_offsets.len(),
    );
    assert_eq!(found.go_version.as_deref(), Some("go1.23.8"));
    assert_eq!(found.write.name, TLS_WRITE);
    assert_eq!(found.read.name, TLS_READ);
    assert_ne!(found.write.entry_offset, found.read.entry_offset);
    for f in [&found.write, &found.read] {
        let entry = f.entry_offset as usize;
        assert!(
            has_go_prologue(&file[entry..]),
            "{} at {entry:#x} starts with {:02x?}",
            f.name,
            &file[entry..entry + 12]
        );
        assert!(!f.return_offsets.is_empty(), "{} has no ret", f.name);
        assert!(f.return_offsets.windows(2).all(|w| w[0] < w[1]));
        for &ret in &f.return_offsets {
            let ret = ret as usize;
            assert!(ret > entry && ret - entry < MAX_FUNCTION_SIZE as usize);
            assert_eq!(file[ret], 0xc3, "{} ret at {ret:#x}", f.name);
            // Both functions have a frame, so each return follows `pop rbp`.
            assert_eq!(file[ret - 1], 0x5d, "{} ret at {ret:#x}", f.name);
        }
    }
}

#[test]
fn kubectl_without_section_headers_gives_the_same_answer() {
    let mut file = std::fs::read(kubectl()).unwrap();
    // e_shoff, e_shnum, e_shstrndx: as if stripped of section headers.
    file[0x28..0x30].fill(0);
    file[0x3c..0x40].fill(0);
    let stripped = inspect_bytes(&file).unwrap();
    assert_eq!(stripped, GoBinary::GoTls(inspect_kubectl()));
}

#[test]
fn kubectl_looks_like_go() {
    assert!(looks_like_go(kubectl()));
    assert!(!looks_like_go(Path::new("/usr/bin/bash")));
    assert!(!looks_like_go(&std::env::current_exe().unwrap()));
    assert!(!looks_like_go(Path::new("/nonexistent/binary")));
}

#[test]
fn non_go_executables() {
    assert_eq!(
        inspect(Path::new("/usr/bin/bash")).unwrap(),
        GoBinary::NotGo
    );
    assert_eq!(
        inspect(&std::env::current_exe().unwrap()).unwrap(),
        GoBinary::NotGo
    );
}

#[test]
fn unusable_files_are_clean_errors() {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("kubectl-head");
    let mut bytes = std::fs::read(kubectl()).unwrap();
    bytes.truncate(4 << 20);
    std::fs::write(&head, &bytes).unwrap();
    let err = inspect(&head).unwrap_err();
    assert!(matches!(err, GoBinError::TruncatedFile(_)), "{err}");

    let text = dir.path().join("script");
    std::fs::write(&text, "#!/bin/sh\necho hi\n").unwrap();
    assert!(matches!(inspect(&text), Err(GoBinError::NotElf)));
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    assert!(matches!(inspect(&empty), Err(GoBinError::NotElf)));
    assert!(matches!(
        inspect(dir.path()),
        Err(GoBinError::Open(MapError::NotRegularFile(_)))
    ));
    assert!(matches!(
        inspect(&dir.path().join("missing")),
        Err(GoBinError::Open(MapError::Io { .. }))
    ));
}

// -----------------------------------------------------------------------------------------
// Synthetic executables, for the older table layouts and for fuzzing.

const TEXT_VADDR: u64 = 0x40_0000;
const CODE_OFF: usize = 0x100;
const TABLE_OFF: usize = 0x200;
const TABLE_VADDR: u64 = 0x60_0200;

/// Three functions: (name, code). The second holds 0xC3 as an immediate, which is no `ret`.
fn functions() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "main.main",
            vec![0x49, 0x3b, 0x66, 0x10, 0xc3, 0xcc, 0xcc, 0xcc],
        ),
        (
            TLS_WRITE,
            vec![
                0x49, 0x3b, 0x66, 0x10, // cmp rsp,[r14+0x10]
                0xb8, 0xc3, 0x00, 0x00, 0x00, // mov eax,0xc3
                0xc2, 0x08, 0x00, // ret 8
                0x5d, 0xc3, // pop rbp; ret
                0xcc, 0xcc, // padding
            ],
        ),
        (TLS_READ, vec![0x90, 0xc3, 0x90, 0xc3]),
    ]
}

/// A pclntab of `version` for [`functions`] laid out from `CODE_OFF`.
fn build_pclntab(version: PclnVersion) -> Vec<u8> {
    let funcs = functions();
    let text_start = TEXT_VADDR + CODE_OFF as u64;
    let mut starts = Vec::new();
    let mut at = 0u64;
    for (_, code) in &funcs {
        starts.push(at);
        at += code.len() as u64;
    }
    starts.push(at);
    let mut names = Vec::new();
    let mut name_offs = Vec::new();
    for (name, _) in &funcs {
        name_offs.push(names.len() as u32);
        names.extend_from_slice(name.as_bytes());
        names.push(0);
    }
    let n = funcs.len();
    let put = |out: &mut Vec<u8>, v: u64, size: usize| {
        out.extend_from_slice(&v.to_le_bytes()[..size]);
    };
    let (magic, header_words) = match version {
        PclnVersion::V12 => (0xffff_fffbu32, 1),
        PclnVersion::V116 => (0xffff_fffa, 7),
        PclnVersion::V118 => (0xffff_fff1, 8),
    };
    let field = Pclntab::field_size(version);
    let header_len = 8 + 8 * header_words;
    // Layout after the header: names, then function table, then _func records.
    let (names_at, pcln_at) = match version {
        PclnVersion::V12 => (header_len + (2 * n + 1) * 8 + n * 16, header_len),
        _ => (header_len, header_len + names.len()),
    };
    let funcs_rel = (2 * n + 1) * field; // records right after the function table
    let mut out = Vec::new();
    out.extend_from_slice(&magic.to_le_bytes());
    out.extend_from_slice(&[0, 0, 1, 8]);
    put(&mut out, n as u64, 8);
    match version {
        PclnVersion::V12 => {}
        PclnVersion::V116 => {
            for w in [0, names_at as u64, 0, 0, 0, pcln_at as u64] {
                put(&mut out, w, 8);
            }
        }
        PclnVersion::V118 => {
            for w in [0, text_start, names_at as u64, 0, 0, 0, pcln_at as u64] {
                put(&mut out, w, 8);
            }
        }
    }
    if version != PclnVersion::V12 {
        out.extend_from_slice(&names);
    }
    // Function table; `funcoff` is relative to the table start for 1.2, to pcln after.
    let func_base = if version == PclnVersion::V12 {
        0
    } else {
        pcln_at
    };
    let entry = |i: usize| match version {
        PclnVersion::V118 => starts[i],
        _ => text_start + starts[i],
    };
    for i in 0..n {
        put(&mut out, entry(i), field);
        put(
            &mut out,
            (pcln_at + funcs_rel + 16 * i - func_base) as u64,
            field,
        );
    }
    put(&mut out, entry(n), field);
    for (i, &name_off) in name_offs.iter().enumerate() {
        let name_off = match version {
            PclnVersion::V12 => names_at as u32 + name_off,
            _ => name_off,
        };
        let mut rec = Vec::new();
        put(&mut rec, entry(i), field);
        rec.extend_from_slice(&name_off.to_le_bytes());
        rec.resize(16, 0);
        out.extend_from_slice(&rec);
    }
    if version == PclnVersion::V12 {
        assert_eq!(out.len(), names_at);
        out.extend_from_slice(&names);
    }
    out
}

/// A section-less x86-64 ELF: code segment, read-only pclntab segment, writable segment
/// with Go 1.18+ build information.
fn build_elf(version: PclnVersion) -> Vec<u8> {
    let table = build_pclntab(version);
    let info_off = (TABLE_OFF + table.len()).next_multiple_of(0x100);
    let mut info = BUILDINFO_MAGIC.to_vec();
    info.extend_from_slice(&[8, 2]);
    info.resize(32, 0);
    info.push(8);
    info.extend_from_slice(b"go1.99.1");
    info.push(0);
    let mut out = vec![0u8; info_off + info.len()];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4..7].copy_from_slice(&[2, 1, 1]);
    out[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
    out[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    out[0x34..0x36].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    out[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    out[0x38..0x3a].copy_from_slice(&3u16.to_le_bytes()); // e_phnum
    out[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
    let segments = [
        (0u64, TEXT_VADDR, TABLE_OFF as u64, 5u32),
        (TABLE_OFF as u64, TABLE_VADDR, table.len() as u64, 4),
        (
            info_off as u64,
            0x80_0000 + info_off as u64,
            info.len() as u64,
            6,
        ),
    ];
    for (i, (offset, vaddr, size, flags)) in segments.into_iter().enumerate() {
        let ph = &mut out[64 + 56 * i..64 + 56 * (i + 1)];
        ph[0..4].copy_from_slice(&1u32.to_le_bytes());
        ph[4..8].copy_from_slice(&flags.to_le_bytes());
        ph[8..16].copy_from_slice(&offset.to_le_bytes());
        ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
        ph[24..32].copy_from_slice(&vaddr.to_le_bytes());
        ph[32..40].copy_from_slice(&size.to_le_bytes());
        ph[40..48].copy_from_slice(&size.to_le_bytes());
    }
    let code: Vec<u8> = functions().into_iter().flat_map(|(_, c)| c).collect();
    out[CODE_OFF..CODE_OFF + code.len()].copy_from_slice(&code);
    out[TABLE_OFF..TABLE_OFF + table.len()].copy_from_slice(&table);
    out[info_off..].copy_from_slice(&info);
    out
}

#[test]
fn synthetic_executables_of_every_table_layout() {
    for version in [PclnVersion::V12, PclnVersion::V116, PclnVersion::V118] {
        let elf = build_elf(version);
        let found = inspect_bytes(&elf).unwrap_or_else(|e| panic!("{version:?}: {e}"));
        let write_at = CODE_OFF as u64 + 8;
        let read_at = write_at + 16;
        assert_eq!(
            found,
            GoBinary::GoTls(GoTlsFunctions {
                go_version: Some("go1.99.1".into()),
                write: GoFunction {
                    name: TLS_WRITE.into(),
                    entry_offset: write_at,
                    // `ret 8` and the final `ret`, not the 0xC3 immediate.
                    return_offsets: vec![write_at + 9, write_at + 13],
                },
                read: GoFunction {
                    name: TLS_READ.into(),
                    entry_offset: read_at,
                    return_offsets: vec![read_at + 1, read_at + 3],
                },
            }),
            "{version:?}"
        );
    }
}

#[test]
fn go_without_tls_and_unsupported_tables() {
    let mut elf = build_elf(PclnVersion::V118);
    let table = TABLE_OFF + 72;
    // Rename the read function: the Write function alone is not enough.
    let at = table
        + build_pclntab(PclnVersion::V118)[72..]
            .windows(TLS_READ.len())
            .position(|w| w == TLS_READ.as_bytes())
            .unwrap();
    elf[at] = b'X';
    assert_eq!(
        inspect_bytes(&elf).unwrap(),
        GoBinary::GoWithoutTls {
            go_version: Some("go1.99.1".into())
        }
    );
    let err = Pclntab::parse(&[0xf5, 0xff, 0xff, 0xff, 0, 0, 1, 8], None)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "unsupported pclntab version (magic 0xfffffff5)"
    );
}

#[test]
fn code_that_does_not_decode_is_refused() {
    // 0x0f 0x0b is ud2 (fine); a lone 0x0f at the end is a cut instruction.
    assert_eq!(find_returns(&[0x0f, 0x0b, 0xc3], 0x1000), Ok(vec![2]));
    assert!(find_returns(&[0xc3, 0x0f], 0x1000).is_err());
    assert!(find_returns(&[0xb8, 0xc3, 0x00], 0x1000).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_executables_never_panic(
        version in prop_oneof![Just(PclnVersion::V12), Just(PclnVersion::V116), Just(PclnVersion::V118)],
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut elf = build_elf(version);
        for (at, value) in edits {
            let i = at.index(elf.len());
            elf[i] = value;
        }
        if truncate {
            elf.truncate(cut.index(elf.len()));
        }
        let _ = inspect_bytes(&elf);
    }

    #[test]
    fn random_tables_never_panic(
        magic in prop_oneof![Just(0xffff_fffbu32), Just(0xffff_fffa), Just(0xffff_fff0), Just(0xffff_fff1)],
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut table = magic.to_le_bytes().to_vec();
        table.extend_from_slice(&[0, 0, 1, 8]);
        table.extend_from_slice(&body);
        if let Ok(pcln) = Pclntab::parse(&table, Some(0x40_1000)) {
            let _ = pcln.find_functions([TLS_WRITE, TLS_READ]);
        }
    }

    #[test]
    fn mutated_real_table_head_never_panics(
        edits in proptest::collection::vec((0usize..4096, any::<u8>()), 0..8),
        len in 0usize..4096,
    ) {
        let head = kubectl_table_head();
        let mut table = head[..len.min(head.len())].to_vec();
        for (at, value) in edits {
            if let Some(b) = table.get_mut(at) {
                *b = value;
            }
        }
        if let Ok(pcln) = Pclntab::parse(&table, None) {
            let _ = pcln.find_functions([TLS_WRITE, TLS_READ]);
        }
    }
}

/// The first 4 KiB of kubectl's pclntab (header and start of the name table).
fn kubectl_table_head() -> &'static [u8] {
    static HEAD: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    HEAD.get_or_init(|| {
        let file = std::fs::read(kubectl()).unwrap();
        let elf = Elf::parse(&file).unwrap();
        let table = elf.find_pclntab().unwrap();
        table[..4096].to_vec()
    })
}
