use super::*;
use recorder_record::hex;

fn line(seq: u64) -> String {
    format!(
        r#"{{"kind":"exec","time":"2026-11-28T10:00:{:02}.000000000Z","host":"web-1","identity":"claude","session":"s{}","pid":{seq},"exec_id":"e{seq}","text":"echo {seq}"}}"#,
        seq % 60,
        seq % 3
    )
}

fn lines(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(line).collect()
}

#[expect(
    clippy::unnecessary_wraps,
    reason = "passed as the record check of `Store::append`, whose type returns a Result"
)]
fn ok(_: &Record) -> Result<(), String> {
    Ok(())
}

fn open(dir: &Path) -> Store {
    Store::open(
        dir,
        4096,
        CheckpointPolicy {
            every_records: 10,
            every: Duration::from_hours(1),
        },
    )
    .unwrap()
}

#[test]
fn stores_once_dedups_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let out = store.append("web-1", "b1", 1, &lines(1..26), ok).unwrap();
    assert_eq!(
        (out.stored.len(), out.duplicates, out.acked_sequence),
        (25, 0, Some(25))
    );
    // A retry overlapping what is stored: only the new part is stored.
    let out = store.append("web-1", "b1", 20, &lines(20..31), ok).unwrap();
    assert_eq!(
        (out.stored.len(), out.duplicates, out.acked_sequence),
        (5, 6, Some(30))
    );
    // Another stream of the same host is independent.
    let out = store.append("web-1", "b2", 1, &lines(1..3), ok).unwrap();
    assert_eq!((out.stored.len(), out.acked_sequence), (2, Some(2)));
    store.checkpoint().unwrap();
    let root = store.tree.root();
    drop(store);

    let mut store = open(dir.path());
    assert_eq!(store.len(), 32);
    assert_eq!(store.tree.root(), root);
    assert_eq!(store.acked("web-1", "b1"), Some(30));
    let out = store.append("web-1", "b1", 1, &lines(1..31), ok).unwrap();
    assert_eq!((out.stored.len(), out.duplicates), (0, 30));
    assert_eq!(store.read(3).unwrap().line, line(4).into_bytes());
    // What a client recomputes from a record as read back is the leaf in the tree.
    for i in [0, 3, 31] {
        let leaf = store.tree.node(NodeId { level: 0, index: i }).unwrap();
        assert_eq!(store.read(i).unwrap().leaf_hash(), leaf);
    }
    let s0 = store.sessions().find("s0", "").unwrap().unwrap().clone();
    assert_eq!(s0.records, 10);
    let replayed = store.session_records(s0.last_index).unwrap();
    assert_eq!(
        replayed.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]
    );
    assert!(
        scan::list_segments(dir.path()).unwrap().len() > 1,
        "small segments rotate"
    );
    let (leaf, path) = store.inclusion_proof(5, 32).unwrap().unwrap();
    assert!(merkle::verify_inclusion(&leaf, 5, 32, &path, &root));
}

#[test]
fn rejects_bad_lines_without_storing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let batch = vec![line(1), "not json".to_string()];
    let err = store.append("web-1", "b1", 1, &batch, ok).unwrap_err();
    assert!(err.to_string().contains("sequence 2"), "{err}");
    assert_eq!(store.len(), 0);
    let err = store
        .append("web-1", "b1", 1, &lines(1..2), |f| {
            Err(format!("host {} is not yours", f.host))
        })
        .unwrap_err();
    assert!(err.to_string().contains("host web-1 is not yours"), "{err}");
}

/// A data directory with 30 records in one segment and a checkpoint over them.
fn filled() -> (tempfile::TempDir, Vec<(u32, u64)>) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 1 << 30, CheckpointPolicy::default()).unwrap();
    store.append("web-1", "b1", 1, &lines(1..31), ok).unwrap();
    store.checkpoint().unwrap();
    let positions = (0..store.len())
        .map(|i| {
            let p = store.records.get(i).unwrap().unwrap();
            (p.segment, p.offset)
        })
        .collect();
    (dir, positions)
}

fn segment0(dir: &Path) -> PathBuf {
    dir.join(SEGMENT_DIR).join(segment::segment_name(0))
}

fn problems(dir: &Path) -> Vec<String> {
    scan::scan(dir, None, |_| {})
        .unwrap()
        .problems
        .iter()
        .map(std::string::ToString::to_string)
        .collect()
}

#[test]
fn an_untouched_log_verifies() {
    let (dir, _) = filled();
    assert_eq!(problems(dir.path()), Vec::<String>::new());
}

#[test]
fn one_changed_byte_is_found_where_it_is() {
    let (dir, pos) = filled();
    let mut data = fs::read(segment0(dir.path())).unwrap();
    let at = pos[7].1 as usize + 80; // inside record 7's line
    data[at] ^= 0x01;
    fs::write(segment0(dir.path()), &data).unwrap();
    let p = problems(dir.path());
    assert!(p[0].starts_with("segments/00000000.log record 7 "), "{p:?}");
    assert!(
        p[0].contains("log index 7, host web-1 stream b1 sequence 8: content changed"),
        "{p:?}"
    );
    // A start reads only what came after its saved state, so it does not see this; without
    // the state it reads everything and refuses the log.
    assert!(Store::open(dir.path(), 1 << 30, CheckpointPolicy::default()).is_ok());
    fs::remove_dir_all(dir.path().join(record_index::INDEX_DIR)).unwrap();
    assert!(Store::open(dir.path(), 1 << 30, CheckpointPolicy::default()).is_err());
}

#[test]
fn a_deleted_record_is_found_where_it_was() {
    let (dir, pos) = filled();
    let data = fs::read(segment0(dir.path())).unwrap();
    let (a, b) = (pos[12].1 as usize, pos[13].1 as usize);
    let cut = [&data[..a], &data[b..]].concat();
    fs::write(segment0(dir.path()), cut).unwrap();
    let p = problems(dir.path());
    assert!(
        p[0].starts_with("segments/00000000.log record 12 "),
        "{p:?}"
    );
    assert!(
        p[0].contains("sequence 14: says it is log index 13 but is at log index 12"),
        "{p:?}"
    );
    assert!(p.iter().any(|x| x.contains("hash chain broken")), "{p:?}");
    assert!(
        p.iter()
            .any(|x| x.contains("signed tree size 30 but the log holds 29 records")),
        "{p:?}"
    );
}

#[test]
fn two_swapped_records_are_found() {
    let (dir, pos) = filled();
    let data = fs::read(segment0(dir.path())).unwrap();
    let (a, b, c) = (pos[4].1 as usize, pos[5].1 as usize, pos[6].1 as usize);
    let swapped = [&data[..a], &data[b..c], &data[a..b], &data[c..]].concat();
    fs::write(segment0(dir.path()), swapped).unwrap();
    let p = problems(dir.path());
    assert!(p[0].starts_with("segments/00000000.log record 4 "), "{p:?}");
    assert!(
        p[0].contains("sequence 6: says it is log index 5 but is at log index 4"),
        "{p:?}"
    );
    assert!(p.iter().any(|x| x.contains("Merkle root differs")), "{p:?}");
}

#[test]
fn a_torn_tail_is_cut_off_on_start() {
    let (dir, _) = filled();
    let mut f = OpenOptions::new()
        .append(true)
        .open(segment0(dir.path()))
        .unwrap();
    f.write_all(&[100, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(f);
    let mut store = Store::open(dir.path(), 1 << 30, CheckpointPolicy::default()).unwrap();
    assert_eq!(store.len(), 30);
    store.append("web-1", "b1", 31, &lines(31..32), ok).unwrap();
    drop(store);
    assert_eq!(problems(dir.path()), Vec::<String>::new());
}

/// A pruned segment: its records are gone, the log still opens (from the saved state and from
/// a full read), proofs of the other records still verify, the chain goes on across the gap.
#[test]
fn a_pruned_segment_keeps_the_tree_the_chains_and_the_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    for batch in 0..12u64 {
        let first = batch * 10 + 1;
        store
            .append("web-1", "b1", first, &lines(first..first + 10), ok)
            .unwrap();
    }
    assert!(store.current_seg >= 2, "segments: {}", store.current_seg);
    // Segment 0 as retention would describe it.
    let path = store.segment_path(0);
    let data = fs::read(&path).unwrap();
    let mut offset = HEADER.len();
    let mut leaves = Vec::new();
    let (mut first_prev, mut last) = (None, None);
    while offset < data.len() {
        let f = segment::decode_frame(&data[offset..]).unwrap();
        first_prev.get_or_insert(f.entry.prev);
        last = Some(f.entry.sequence);
        leaves.push(f.computed_leaf());
        offset += f.len;
    }
    let n = leaves.len() as u64;
    let mut entry = pruned::PrunedSegment {
        segment: 0,
        first_index: 0,
        end_index: n,
        oldest: "o".into(),
        newest: "n".into(),
        rule: "test".into(),
        time: "t".into(),
        archive: None,
        leaves_sha256: String::new(),
        streams: vec![pruned::PrunedStream {
            host: "web-1".into(),
            boot: "b1".into(),
            first_sequence: 1,
            last_sequence: last.unwrap(),
            first_prev: hex::encode(&first_prev.unwrap()),
            last_leaf: hex::encode(leaves.last().unwrap()),
            records: n,
        }],
        sessions: Vec::new(),
        signature: String::new(),
    };
    // The segment being written is refused; a described segment whose leaves differ too.
    let mut current = entry.clone();
    current.segment = store.current_seg;
    assert!(store.sign_pruned(&mut current, &leaves).is_err());
    let mut wrong = leaves.clone();
    wrong[0][0] ^= 1;
    assert!(store.sign_pruned(&mut entry.clone(), &wrong).is_err());
    store.sign_pruned(&mut entry, &leaves).unwrap();
    store.prune(entry, &leaves).unwrap();
    assert!(!path.exists());
    assert!(matches!(
        store.read(0),
        Err(StoreError::Pruned { segment: 0, .. })
    ));
    assert_eq!(store.read(n).unwrap().index, n);
    // Records go on after the gap; a checkpoint covers all.
    store
        .append("web-1", "b1", 121, &lines(121..131), ok)
        .unwrap();
    store.checkpoint().unwrap();
    let cp = store.latest_checkpoint().cloned().unwrap();
    let root = store.tree.root();
    drop(store);

    for full_read in [false, true] {
        if full_read {
            fs::remove_dir_all(dir.path().join(record_index::INDEX_DIR)).unwrap();
        }
        let mut store = open(dir.path());
        assert_eq!((store.len(), store.tree.root()), (130, root));
        assert_eq!(store.read(n + 1).unwrap().sequence, n + 2);
        let (leaf, path) = store.inclusion_proof(n + 5, cp.tree_size).unwrap().unwrap();
        assert!(merkle::verify_inclusion(
            &leaf,
            n + 5,
            cp.tree_size,
            &path,
            &cp.root_hash().unwrap()
        ));
        let scan = scan::scan(dir.path(), None, |_| {}).unwrap();
        assert!(scan.problems.is_empty(), "{:?}", scan.problems);
        assert_eq!((scan.records, scan.pruned_records), (130, n));
    }

    // The ledger edited: the scan names the entry.
    let ledger = dir.path().join("pruned").join(pruned::LEDGER_FILE);
    let text = fs::read_to_string(&ledger).unwrap();
    fs::write(
        &ledger,
        text.replace("\"rule\":\"test\"", "\"rule\":\"other\""),
    )
    .unwrap();
    let scan = scan::scan(dir.path(), None, |_| {}).unwrap();
    assert!(
        scan.problems[0].0.contains("bad signature"),
        "{:?}",
        scan.problems
    );
}
