use super::*;

fn rec(i: u64) -> Vec<u8> {
    format!(r#"{{"kind":"exec","time":"t","host":"h","identity":"a","session":"s","pid":{i},"exec_id":"e{i}"}}"#).into_bytes()
}

fn read_all(r: &SpoolReader) -> Vec<(u64, Vec<u8>)> {
    let mut c = r.cursor();
    let mut out = Vec::new();
    while let Some((first, lines)) = r.read(&mut c, 7, 1 << 20).unwrap() {
        for (i, l) in lines.into_iter().enumerate() {
            out.push((first + i as u64, l));
        }
    }
    out
}

#[test]
fn sequences_persist_and_only_acknowledged_segments_go() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, problems) = Spool::open_with(dir.path(), "h", 1 << 30, 512).unwrap();
    assert!(problems.is_empty());
    let r = spool.reader();
    for i in 1..=20 {
        assert!(spool.append(&rec(i)).unwrap());
        if i == 2 {
            assert!(read_all(&r).is_empty(), "nothing is visible before flush");
        }
    }
    spool.flush().unwrap();
    let all = read_all(&r);
    assert_eq!(all.len(), 20);
    assert_eq!(all[0], (1, rec(1)));
    assert_eq!(all[19], (20, rec(20)));
    let boot = spool.boot().to_string();
    r.ack(10).unwrap();
    assert_eq!(r.depth(), 10);
    drop(spool);

    // Restart: exactly the unacknowledged records are sent again, the sequence goes on.
    let (mut spool, problems) = Spool::open_with(dir.path(), "h", 1 << 30, 512).unwrap();
    assert!(problems.is_empty());
    assert_eq!(spool.boot(), boot);
    assert_eq!(spool.next_sequence(), 21);
    let r = spool.reader();
    let again = read_all(&r);
    assert_eq!(again.first().unwrap().0, 11);
    assert_eq!(again.last().unwrap().0, 20);
    spool.append(&rec(21)).unwrap();
    spool.flush().unwrap();
    r.ack(21).unwrap();
    assert_eq!(r.depth(), 0);
    let wal: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "wal")
        })
        .collect();
    assert_eq!(wal.len(), 1, "acknowledged segments are deleted");
}

#[test]
fn a_full_spool_drops_and_then_reports_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let line = rec(0);
    let room = 8 + 3 * (frame::OVERHEAD + line.len()) as u64;
    let (mut spool, _) = Spool::open_with(dir.path(), "web-1", room + 200, 1 << 20).unwrap();
    let mut kept = 0;
    for _ in 0..10 {
        if spool.append(&line).unwrap() {
            kept += 1;
        }
    }
    spool.flush().unwrap();
    assert_eq!(kept, 4);
    let r = spool.reader();
    let all = read_all(&r);
    assert_eq!(all.len(), 4);
    r.ack(4).unwrap();
    // Acknowledging frees nothing while the one segment is still being written, so roll.
    spool.rotate().unwrap();
    r.ack(4).unwrap();
    spool.append(&line).unwrap();
    spool.flush().unwrap();
    let rest = read_all(&r);
    let loss = Record::parse(&rest[0].1).unwrap();
    assert_eq!(loss.host, "web-1");
    assert_eq!(
        loss.body,
        Body::Loss(Loss {
            count: 6,
            lost_kind: None,
            reason: "spool_full".into()
        })
    );
    assert_eq!(rest[1].1, line);
}

#[test]
fn a_record_too_large_to_ship_becomes_a_loss_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open_with(dir.path(), "web-1", 1 << 30, 1 << 20).unwrap();
    assert!(!spool.append(&vec![b'x'; MAX_LINE + 1]).unwrap());
    spool.append(&rec(1)).unwrap();
    spool.flush().unwrap();
    let all = read_all(&spool.reader());
    assert_eq!(all.len(), 2);
    let loss = Record::parse(&all[0].1).unwrap();
    assert_eq!(
        loss.body,
        Body::Loss(Loss {
            count: 1,
            lost_kind: None,
            reason: "record_too_large".into()
        })
    );
    assert_eq!(all[1].1, rec(1));
}

#[test]
fn a_damaged_segment_is_recovered_up_to_its_last_valid_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open_with(dir.path(), "web-1", 1 << 30, 1 << 20).unwrap();
    for i in 1..=5 {
        spool.append(&rec(i)).unwrap();
    }
    spool.flush().unwrap();
    drop(spool);
    let seg = dir.path().join(format!("{:020}.wal", 1));
    let mut data = fs::read(&seg).unwrap();
    // Record 4 gets a flipped byte, and the file is cut inside record 5.
    let frame_len = frame::OVERHEAD + rec(1).len();
    data[8 + 3 * frame_len + 20] ^= 0xff;
    data.truncate(data.len() - 3);
    fs::write(&seg, &data).unwrap();

    let (spool, problems) = Spool::open_with(dir.path(), "web-1", 1 << 30, 1 << 20).unwrap();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].contains("record after sequence 3"),
        "{problems:?}"
    );
    assert!(problems[0].contains("checksum mismatch"), "{problems:?}");
    assert!(problems[0].contains("3 records recovered"), "{problems:?}");
    let all = read_all(&spool.reader());
    assert_eq!(
        all.iter().map(|x| x.0).take(3).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(all.len(), 4);
    assert!(
        all[3].0 > 5,
        "sequence numbers that may have been sent are never reused: {}",
        all[3].0
    );
    let notice = Record::parse(&all[3].1).unwrap();
    assert_eq!(
        notice.body,
        Body::Notice(Notice {
            cgroup: None,
            detail: problems[0].clone(),
            reason: "spool_corrupt".into()
        })
    );
    assert!(dir.path().join(format!("{:020}.wal.corrupt", 1)).exists());
    // Garbage instead of a segment: no panic, a notice.
    fs::write(dir.path().join(format!("{:020}.wal", 100)), b"garbage!!").unwrap();
    drop(spool);
    let (_, problems) = Spool::open_with(dir.path(), "web-1", 1 << 30, 1 << 20).unwrap();
    assert!(
        problems.iter().any(|p| p.contains("bad header")),
        "{problems:?}"
    );
}
