//! `recorder verify --archive URL`: every segment in an archive of pruned segments checked on
//! its own: its records against their hashes, its signed deletion entry, and its place in the
//! tree of the signed checkpoint kept beside it.
use std::collections::BTreeMap;

use anyhow::bail;
use recorder_record::hex;
use recorder_retention::{Archive, ArchiveConfig, archive};

use crate::client::block_on;

pub(crate) fn verify(url: &str, options: &[String], pinned: Option<&[u8]>) -> anyhow::Result<()> {
    let mut opts = BTreeMap::new();
    for o in options {
        let Some((k, v)) = o.split_once('=') else {
            bail!("--archive-option {o:?}: give KEY=VALUE");
        };
        opts.insert(k.to_string(), v.to_string());
    }
    let archive = Archive::open(&ArchiveConfig {
        url: url.to_string(),
        options: opts,
    })
    .map_err(anyhow::Error::msg)?;
    let (problems, segments, records) = block_on(async {
        let mut problems = Vec::new();
        let (mut segments, mut records) = (0u64, 0u64);
        let mut unpinned = false;
        for (place, manifest) in archive.manifests().await.map_err(anyhow::Error::msg)? {
            let manifest = match manifest {
                Ok(m) => m,
                Err(e) => {
                    problems.push(format!("{place}: {e}"));
                    continue;
                }
            };
            let seg = manifest.entry.segment;
            let key = if let Some(k) = pinned {
                k.to_vec()
            } else {
                unpinned = true;
                hex::decode(&manifest.public_key).unwrap_or_default()
            };
            let bytes = match archive.segment(seg).await {
                Ok(b) => b,
                Err(e) => {
                    problems.push(format!("segment {seg}: {e}"));
                    continue;
                }
            };
            let found = archive::check(&bytes, &manifest, &key);
            if found.is_empty() {
                println!(
                    "archived: segment {seg}, log index {}..{} ({} records, {} .. {}), in the signed tree of size {}; pruned {} under {}",
                    manifest.entry.first_index,
                    manifest.entry.end_index,
                    manifest.entry.records(),
                    manifest.entry.oldest,
                    manifest.entry.newest,
                    manifest.checkpoint.tree_size,
                    manifest.entry.time,
                    manifest.entry.rule
                );
                segments += 1;
                records += manifest.entry.records();
            }
            problems.extend(
                found
                    .into_iter()
                    .map(|p| format!("archived segment {seg}: {p}")),
            );
        }
        if unpinned {
            eprintln!(
                "recorder: signatures checked against the key the archive names; pin the key with --public-key to rule out a changed key"
            );
        }
        Ok::<_, anyhow::Error>((problems, segments, records))
    })??;
    for p in &problems {
        println!("TAMPERED: {p}");
    }
    if !problems.is_empty() {
        bail!(
            "the archive fails verification: {} problem(s)",
            problems.len()
        );
    }
    if segments == 0 {
        bail!("{url}: no archived segment found");
    }
    println!("ok: {segments} archived segment(s), {records} records intact");
    Ok(())
}
