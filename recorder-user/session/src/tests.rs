//! Evidence made from a real store, checked; then changed in each way a forger could.
use recorder_record::hex;
use recorder_store::{CheckpointPolicy, Store, index::SessionFilter};

use crate::{Evidence, EvidenceRecord, FORMAT, SessionView, check};

fn line(kind: &str, second: u32, session: &str, fields: &str) -> String {
    format!(
        r#"{{"kind":"{kind}","time":"2026-12-05T10:00:{second:02}.000000000Z","host":"h","identity":"claude","session":"{session}","pid":7,"exec_id":"e7"{fields}}}"#
    )
}

/// A store with two sessions and a host-wide loss during the first, and the evidence of it.
fn evidence() -> (tempfile::TempDir, Evidence) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 1 << 20, CheckpointPolicy::default()).unwrap();
    let exec = r#","argv":["sh","-c","false"],"argv_truncated":false,"cgroup":"/a","cwd":"/","exe":"/bin/sh","parent_exec_id":"","ppid":1,"text":"sh -c false","uid":0"#;
    let lines = [
        line("exec", 1, "s1", exec),
        line("exec", 2, "s2", exec),
        line(
            "loss",
            3,
            "",
            r#","count":2,"lost_kind":"exec","reason":"ring_buffer_full""#,
        ),
        line("exit", 4, "s1", r#","duration_ms":3.0,"exit_code":1"#),
    ];
    store.append("h", "b1", 1, &lines, |_| Ok(())).unwrap();
    let cp = store.checkpoint().unwrap().unwrap();
    let summary = store
        .sessions()
        .list(&SessionFilter::default())
        .into_iter()
        .find(|s| s.session == "s1")
        .unwrap()
        .clone();
    assert_eq!((summary.failed, summary.gaps), (1, 0));
    let context = store.sessions().context_gaps(&summary);
    assert_eq!(context, [2]);
    let mut records = Vec::new();
    for i in store.session_indexes(summary.last_index).unwrap() {
        let r = store.read(i).unwrap();
        let (_, path) = store.inclusion_proof(i, cp.tree_size).unwrap().unwrap();
        records.push(EvidenceRecord::new(&r, Some(path)));
    }
    let loss = store.read(2).unwrap();
    let (_, path) = store.inclusion_proof(2, cp.tree_size).unwrap().unwrap();
    let e = Evidence {
        format: FORMAT.into(),
        made: String::new(),
        session: SessionView::from(&summary),
        verdict: crate::Verdict::default(),
        records,
        context: vec![EvidenceRecord::new(&loss, Some(path))],
        checkpoint: Some((&cp).into()),
        public_key: hex::encode(&store.public_key()),
    };
    (dir, e)
}

#[test]
fn evidence_of_a_real_store_checks_and_says_what_may_be_missing() {
    let (_dir, e) = evidence();
    let c = check(&e);
    assert!(c.ok(), "{:?}", c.problems);
    assert_eq!((c.proven, c.pending), (3, 0));
    assert!(!c.verdict.complete);
    assert_eq!(c.verdict.gaps.len(), 1);
    assert_eq!(c.verdict.gaps[0].index, 2);
    assert_eq!(c.verdict.label(), "incomplete (1 gap)");
}

#[test]
fn every_change_is_caught_and_names_its_record() {
    let (_dir, good) = evidence();
    // One byte of a record's line.
    let mut e = good.clone();
    e.records[1].line = e.records[1].line.replace("exit_code\":1", "exit_code\":0");
    let c = check(&e);
    assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
    assert_eq!(c.problems[0].index, Some(3));
    assert!(
        c.problems[0]
            .what
            .contains("not included in the signed checkpoint")
    );
    // The record's place in the log.
    let mut e = good.clone();
    e.context[0].index = 1;
    assert!(check(&e).problems.iter().any(|p| p.index == Some(1)));
    // A record of another session slipped in (its proof is good: it is in the log).
    let mut e = good.clone();
    e.session.session = "s2".into();
    assert!(
        check(&e)
            .problems
            .iter()
            .any(|p| p.what.contains("not this one"))
    );
    // The checkpoint's root, or the key.
    let mut e = good.clone();
    e.checkpoint.as_mut().unwrap().root = "00".repeat(32);
    assert!(check(&e).problems[0].what.contains("is not signed by"));
    let mut e = good.clone();
    e.public_key = "11".repeat(32);
    assert!(!check(&e).ok());
    // A record without its proof is not evidence.
    let mut e = good;
    e.records[0].proof = None;
    let c = check(&e);
    assert!(!c.ok() && c.pending == 1 && c.problems.is_empty());
}
