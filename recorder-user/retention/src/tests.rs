//! A store pruned by the `Pruner` into a local-path archive: what is archived checks out, each
//! kind of change to an archived copy is caught, and a pruned record reads back only from an
//! intact copy.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use recorder_record::Record;
use recorder_store::{CheckpointPolicy, Store, StoreError};

use crate::{
    Pruner, RetentionConfig, Target,
    archive::{self, Archive},
    config,
};

fn line(seq: u64, year: u32) -> String {
    format!(
        r#"{{"kind":"exec","time":"{year}-01-01T00:00:00.000000000Z","host":"web-1","identity":"claude","session":"s{}","pid":{seq},"exec_id":"e{seq}","text":"echo {seq}"}}"#,
        seq / 10
    )
}

#[expect(
    clippy::unnecessary_wraps,
    reason = "passed as the record check of `Store::append`, whose type returns a Result"
)]
fn ok(_: &Record) -> Result<(), String> {
    Ok(())
}

/// 60 records from 2020 then 40 from far ahead, in 4 KiB segments.
fn store(dir: &std::path::Path) -> Arc<Mutex<Store>> {
    let mut store = Store::open(
        dir,
        4096,
        CheckpointPolicy {
            every_records: 1000,
            every: Duration::from_hours(1),
        },
    )
    .unwrap();
    for batch in 0..10u64 {
        let year = if batch < 6 { 2020 } else { 2999 };
        let lines: Vec<String> = (batch * 10 + 1..batch * 10 + 11)
            .map(|s| line(s, year))
            .collect();
        store
            .append("web-1", "b1", batch * 10 + 1, &lines, ok)
            .unwrap();
    }
    Arc::new(Mutex::new(store))
}

fn retention(archive: &std::path::Path) -> RetentionConfig {
    config::parse(&format!(
        "[retention]\ndefault_days = 30\n[retention.archive]\nurl = \"file://{}\"\n",
        archive.display()
    ))
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn pruned_segments_are_archived_checked_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let archive_dir = dir.path().join("archive");
    let store = store(&dir.path().join("data"));
    let config = retention(&archive_dir);
    let pruner = Pruner::new(
        config.clone(),
        Target::Embedded(store.clone()),
        Box::new(|| Box::pin(async { None })),
    )
    .unwrap();
    let pass = pruner.pass().await.unwrap();
    assert!(pass.pruned_segments >= 1, "{pass:?}");
    // Only segments of 2020 records went, and a second pass finds nothing more to do.
    let pruned: Vec<_> = store
        .lock()
        .unwrap()
        .pruned_segments()
        .values()
        .cloned()
        .collect();
    assert!(pruned.iter().all(|p| p.end_index <= 60), "{pruned:?}");
    assert_eq!(pruner.pass().await.unwrap().pruned_segments, 0);

    // Each archived copy checks out against its manifest, under the collector's key.
    let key = store.lock().unwrap().public_key();
    let archive = Archive::open(config.archive.as_ref().unwrap()).unwrap();
    let manifests = archive.manifests().await.unwrap();
    assert_eq!(manifests.len(), pruned.len());
    let (_, manifest) = &manifests[0];
    let manifest = manifest.as_ref().unwrap();
    let bytes = archive.segment(manifest.entry.segment).await.unwrap();
    assert_eq!(archive::check(&bytes, manifest, &key), Vec::<String>::new());

    // A changed byte; the same with the stored hash beside it made again; an edited entry; a
    // checkpoint of another tree; another key: each is caught.
    let first = recorder_store::segment::decode_frame(&bytes[8..]).unwrap();
    let line_at = 8 + first.len - 32 - 3;
    let mut changed = bytes.clone();
    changed[line_at] ^= 1;
    assert!(archive::check(&changed, manifest, &key)[0].contains("content changed"));
    let mut rehashed = changed.clone();
    let leaf = recorder_store::integrity::merkle::leaf_hash(&rehashed[12..8 + first.len - 32]);
    rehashed[8 + first.len - 32..8 + first.len].copy_from_slice(&leaf);
    let found = archive::check(&rehashed, manifest, &key);
    assert!(
        found
            .iter()
            .any(|p| p.contains("not those the entry signed")),
        "{found:?}"
    );
    let mut edited = manifest.clone();
    edited.entry.rule = "default_days = 1".into();
    assert!(archive::check(&bytes, &edited, &key)[0].contains("signature"));
    let mut other_tree = manifest.clone();
    other_tree.checkpoint.tree_size += 1;
    assert!(!archive::check(&bytes, &other_tree, &key).is_empty());
    assert!(!archive::check(&bytes, manifest, &[7; 32]).is_empty());

    // Read back: refused before the restore, read after it, exactly as stored.
    let index = manifest.entry.first_index + 3;
    assert!(matches!(
        store.lock().unwrap().read(index),
        Err(StoreError::Pruned { .. })
    ));
    pruner.restore(manifest.entry.segment).await.unwrap();
    let record = store.lock().unwrap().read(index).unwrap();
    assert_eq!(record.line, line(index + 1, 2020).into_bytes());
    // A restored copy is forgotten after a while, and fetched again when read again.
    pruner.forget_restored(Duration::ZERO);
    assert!(matches!(
        store.lock().unwrap().read(index),
        Err(StoreError::Pruned { .. })
    ));
    pruner.restore(manifest.entry.segment).await.unwrap();
    assert_eq!(store.lock().unwrap().read(index).unwrap().line, record.line);
}

#[tokio::test]
async fn a_changed_archive_is_not_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let archive_dir = dir.path().join("archive");
    let store = store(&dir.path().join("data"));
    let pruner = Pruner::new(
        retention(&archive_dir),
        Target::Embedded(store.clone()),
        Box::new(|| Box::pin(async { None })),
    )
    .unwrap();
    pruner.pass().await.unwrap();
    let path = archive_dir.join("segments").join("00000000.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let end = bytes.len() - 40;
    bytes[end] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = pruner.restore(0).await.unwrap_err();
    assert!(err.contains("archived segment 0"), "{err}");
    // Not fetched again right away: the failure is remembered.
    assert!(
        pruner
            .restore(0)
            .await
            .unwrap_err()
            .contains("tried again after a minute")
    );
}

#[tokio::test]
async fn an_exporter_behind_keeps_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir.path().join("data"));
    let pruner = Pruner::new(
        retention(&dir.path().join("archive")),
        Target::Embedded(store.clone()),
        Box::new(|| Box::pin(async { Some(("siem".to_string(), 5)) })),
    )
    .unwrap();
    let pass = pruner.pass().await.unwrap();
    assert_eq!(pass.pruned_segments, 0, "{pass:?}");
    assert!(pass.kept >= 1);
}
