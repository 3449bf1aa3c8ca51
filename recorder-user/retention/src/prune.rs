//! The pruning task: at each check, every closed segment is judged (`plan`); one that is due
//! is copied to the archive if there is one (its manifest written last), and only then
//! deleted, its signed ledger entry written first. An archive that cannot be written keeps the
//! segment: nothing is deleted that the configuration says to archive. Restores bring a pruned
//! segment back from the archive for reading, checked against the leaf hashes kept for it.
use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use recorder_api::metrics::{Counter, Gauge, Registry};
use recorder_record::{
    Timestamp,
    time::{now_unix_ns, rfc3339_nanos},
};
use recorder_store::{Store, pruned};
use tokio::sync::watch;

use crate::{
    archive::{self, Archive, Manifest},
    config::RetentionConfig,
    plan::{self, Verdict},
};

/// The lowest log index an exporter has not durably delivered yet, and its name.
pub type ExportFloor =
    Box<dyn Fn() -> futures::future::BoxFuture<'static, Option<(String, u64)>> + Send + Sync>;

/// The log retention prunes.
pub enum Target {
    /// The embedded store: segment files.
    Embedded(Arc<Mutex<Store>>),
    /// A group's PostgreSQL log: runs of `segment_records` log indexes, pruned by the collector
    /// that sequences (`leading`) only.
    Postgres {
        log: recorder_store_postgres::PgLog,
        leading: Arc<std::sync::atomic::AtomicBool>,
        /// Where runs brought back from the archive are kept for reading (`pruned/`).
        data: std::path::PathBuf,
    },
}

pub struct Pruner {
    pub(crate) config: RetentionConfig,
    pub(crate) archive: Option<Archive>,
    pub(crate) target: Target,
    pub(crate) export_floor: ExportFloor,
    pub(crate) metrics: Metrics,
    /// One restore at a time (two readers of one pruned segment fetch it once).
    restoring: tokio::sync::Mutex<()>,
    /// Restores that failed lately, not tried again for a minute (a reader of a long range
    /// would otherwise fetch a refused copy once per chunk).
    failed: Mutex<std::collections::HashMap<u32, (std::time::Instant, String)>>,
}

/// What one check did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub pruned_segments: u64,
    pub pruned_records: u64,
    pub kept: u64,
}

impl Pass {
    pub(crate) fn count(&mut self, facts: &plan::SegmentFacts, pruned: bool) {
        if pruned {
            self.pruned_segments += 1;
            self.pruned_records += facts.leaves.len() as u64;
        } else {
            self.kept += 1;
        }
    }
}

pub(crate) struct Metrics {
    pub(crate) segments: Counter,
    pub(crate) records: Counter,
    pub(crate) archive_failed: Counter,
    pub(crate) kept: Gauge,
}

fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pruner {
    /// Opens the archive (a bad URL or option stops the collector at start).
    pub fn new(
        config: RetentionConfig,
        target: Target,
        export_floor: ExportFloor,
    ) -> Result<Self, String> {
        let archive = config.archive.as_ref().map(Archive::open).transpose()?;
        let r = Registry::global();
        Ok(Self {
            config,
            archive,
            target,
            export_floor,
            metrics: Metrics {
                segments: r.counter(
                    "recorder_retention_pruned_segments_total",
                    "Segments deleted by retention (each one signed in pruned/ledger.jsonl).",
                    &[],
                ),
                records: r.counter(
                    "recorder_retention_pruned_records_total",
                    "Records in the segments deleted by retention.",
                    &[],
                ),
                archive_failed: r.counter(
                    "recorder_retention_archive_failed_total",
                    "Segments due for deletion kept because the archive could not be written.",
                    &[],
                ),
                kept: r.gauge(
                    "recorder_retention_kept_segments",
                    "Closed segments kept at the last check (too young, held, or not yet exported).",
                    &[],
                ),
            },
            restoring: tokio::sync::Mutex::new(()),
            failed: Mutex::default(),
        })
    }

    /// Checks now and then every `check_every_secs` until `stop`.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let every = self.config.every();
        let mut delay = Duration::from_secs(1).min(every);
        loop {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            delay = every;
            match self.pass().await {
                Ok(p) if p.pruned_segments > 0 => tracing::info!(
                    segments = p.pruned_segments,
                    records = p.pruned_records,
                    kept = p.kept,
                    "retention pruned segments"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "retention check failed; trying again at the next");
                }
            }
        }
    }

    /// One check over every closed segment.
    pub async fn pass(&self) -> Result<Pass, String> {
        self.forget_restored(RESTORED_FOR);
        let store = match &self.target {
            Target::Embedded(store) => store,
            Target::Postgres { log, leading, .. } => {
                if !leading.load(std::sync::atomic::Ordering::Relaxed) {
                    return Ok(Pass::default());
                }
                return self.pass_postgres(log).await;
            }
        };
        let closed = lock(store).closed_segments();
        let mut out = Pass::default();
        for (seg, path) in closed {
            let config = self.config.clone();
            let facts =
                tokio::task::spawn_blocking(move || plan::read_segment(&path, seg, &config))
                    .await
                    .map_err(|e| e.to_string())??;
            let pruned = self.is_due(&facts).await && self.prune(store, &facts).await?;
            out.count(&facts, pruned);
        }
        self.metrics.kept.set(out.kept);
        Ok(out)
    }

    /// Whether a judged segment may go now (why not is logged).
    pub(crate) async fn is_due(&self, facts: &plan::SegmentFacts) -> bool {
        let floor = (self.export_floor)().await;
        match facts.verdict(now_unix_ns(), floor.as_ref().map(|(n, i)| (n.as_str(), *i))) {
            Verdict::Keep(why) => {
                tracing::debug!(segment = facts.segment, why, "kept");
                false
            }
            Verdict::Due => true,
        }
    }

    /// Copies a due segment and its manifest to the archive; false (counted and logged) if
    /// that failed: the segment then stays.
    pub(crate) async fn archive_copy(
        &self,
        archive: &Archive,
        bytes: Vec<u8>,
        manifest: &Manifest,
    ) -> bool {
        match archive.put(bytes, manifest).await {
            Ok(()) => true,
            Err(e) => {
                self.metrics.archive_failed.inc();
                tracing::warn!(segment = manifest.entry.segment, error = %e, "segment kept: its archive could not be written");
                false
            }
        }
    }

    /// Counts and logs a pruned segment.
    pub(crate) fn pruned(&self, facts: &plan::SegmentFacts) {
        self.metrics.segments.inc();
        self.metrics.records.add(facts.leaves.len() as u64);
        tracing::info!(
            segment = facts.segment,
            first = facts.first_index,
            end = facts.end_index,
            oldest = %rfc3339_nanos(facts.oldest_ns),
            newest = %rfc3339_nanos(facts.newest_ns),
            rule = %facts.rule,
            archive = self.archive.as_ref().map(Archive::url),
            "segment pruned"
        );
    }

    /// Archives (if configured) and deletes one due segment; false if the archive failed.
    async fn prune(
        &self,
        store: &Arc<Mutex<Store>>,
        facts: &plan::SegmentFacts,
    ) -> Result<bool, String> {
        let seg = facts.segment;
        let mut entry = facts.entry(
            Timestamp::now().to_string(),
            self.archive.as_ref().map(|a| a.url().to_string()),
        );
        let manifest = {
            let mut store = lock(store);
            store
                .sign_pruned(&mut entry, &facts.leaves)
                .map_err(|e| e.to_string())?;
            // The archive proves the segment against a signed checkpoint that covers it.
            if store
                .latest_checkpoint()
                .is_none_or(|c| c.tree_size < facts.end_index)
            {
                store.checkpoint().map_err(|e| e.to_string())?;
            }
            let checkpoint = store
                .latest_checkpoint()
                .cloned()
                .ok_or("no checkpoint covers the segment")?;
            let proof = store
                .range_proof(facts.first_index, facts.end_index, checkpoint.tree_size)
                .map_err(|e| e.to_string())?
                .ok_or("no range proof for the segment")?;
            Manifest::new(entry.clone(), checkpoint, &proof, &store.public_key())
        };
        if let Some(archive) = &self.archive {
            let path = store_segment_path(store, seg);
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if !self.archive_copy(archive, bytes, &manifest).await {
                return Ok(false);
            }
        }
        lock(store)
            .prune(entry, &facts.leaves)
            .map_err(|e| e.to_string())?;
        self.pruned(facts);
        Ok(true)
    }

    /// Brings pruned segment `seg` back from the archive for reading (`pruned/NNNNNNNN.log`),
    /// checked record by record against the leaf hashes the store kept for it.
    pub async fn restore(&self, seg: u32) -> Result<(), String> {
        let _one = self.restoring.lock().await;
        if let Some((at, why)) = self.failed_lately(seg) {
            return Err(format!("{why} (at {at:?} ago; tried again after a minute)"));
        }
        let result = self.fetch(seg).await;
        if let Err(why) = &result {
            let mut failed = self
                .failed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            failed.insert(seg, (std::time::Instant::now(), why.clone()));
        }
        result
    }

    fn failed_lately(&self, seg: u32) -> Option<(Duration, String)> {
        let failed = self
            .failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (at, why) = failed.get(&seg)?;
        (at.elapsed() < Duration::from_mins(1)).then(|| (at.elapsed(), why.clone()))
    }

    async fn fetch(&self, seg: u32) -> Result<(), String> {
        let dir = self.restore_dir();
        let target = pruned::restored_path(&dir, seg);
        if target.exists() {
            return Ok(());
        }
        let archive = self
            .archive
            .as_ref()
            .ok_or_else(|| format!("segment {seg} was pruned and no archive is configured"))?;
        let bytes = archive.segment(seg).await?;
        let kept = self.kept_leaves(seg).await?;
        std::fs::create_dir_all(dir.join(pruned::PRUNED_DIR))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let got: Vec<_> = archive::segment_leaves(&bytes)
            .map_err(|e| format!("archived segment {seg}: {e}"))?
            .into_iter()
            .map(|(_, h)| h)
            .collect();
        if got != kept {
            return Err(format!(
                "archived segment {seg} in {} is not the one pruned (its records' hashes differ)",
                archive.url()
            ));
        }
        let tmp = target.with_extension("log.tmp");
        std::fs::write(&tmp, &bytes)
            .and_then(|()| std::fs::rename(&tmp, &target))
            .map_err(|e| format!("{}: {e}", target.display()))?;
        tracing::info!(
            segment = seg,
            archive = archive.url(),
            "pruned segment restored from the archive for reading"
        );
        Ok(())
    }
}

impl Pruner {
    /// The directory whose `pruned/` holds copies brought back from the archive.
    fn restore_dir(&self) -> std::path::PathBuf {
        match &self.target {
            Target::Embedded(store) => lock(store).dir().to_path_buf(),
            Target::Postgres { data, .. } => data.clone(),
        }
    }

    /// The leaf hashes kept for pruned segment `seg`: what a copy must hash to.
    async fn kept_leaves(&self, seg: u32) -> Result<Vec<recorder_store::integrity::Hash>, String> {
        match &self.target {
            Target::Embedded(store) => {
                let dir = lock(store).dir().to_path_buf();
                std::fs::read(pruned::leaves_path(&dir, seg))
                    .ok()
                    .and_then(|b| pruned::parse_leaves(&b))
                    .ok_or_else(|| format!("segment {seg}: its kept leaf hashes cannot be read"))
            }
            Target::Postgres { log, .. } => {
                let entry = self
                    .pg_pruned(log)
                    .await?
                    .into_iter()
                    .find(|p| p.segment == seg)
                    .ok_or_else(|| format!("segment {seg} is not pruned"))?;
                log.placed_leaves(entry.first_index, entry.end_index)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// How long a segment brought back from the archive stays on disk after its last fetch.
const RESTORED_FOR: Duration = Duration::from_hours(1);

impl Pruner {
    /// Removes copies brought back from the archive more than `ttl` ago (fetched again when
    /// read again). The store's lock is held, so no read sees a half-removed copy.
    pub(crate) fn forget_restored(&self, ttl: Duration) {
        let dir = self.restore_dir();
        let mut store = match &self.target {
            Target::Embedded(store) => Some(lock(store)),
            Target::Postgres { .. } => None,
        };
        let Ok(files) = std::fs::read_dir(dir.join(pruned::PRUNED_DIR)) else {
            return;
        };
        for file in files.flatten() {
            let path = file.path();
            let Some(seg) = path
                .file_name()
                .and_then(|n| n.to_str()?.strip_suffix(".log")?.parse::<u32>().ok())
            else {
                continue;
            };
            let old = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > ttl);
            if old {
                if let Some(store) = store.as_mut() {
                    store.drop_reader(seg);
                }
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a restored copy");
                }
            }
        }
    }
}

fn store_segment_path(store: &Mutex<Store>, seg: u32) -> std::path::PathBuf {
    lock(store)
        .dir()
        .join(recorder_store::scan::SEGMENT_DIR)
        .join(recorder_store::segment::segment_name(seg))
}
