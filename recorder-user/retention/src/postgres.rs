//! Retention on a group's PostgreSQL log, run by the collector that sequences: segment `k` is
//! log indexes `k·N .. (k+1)·N` (`segment_records`), closed once the log is past it. Each is
//! read as a segment image (the embedded format, from its rows), judged as a segment file is,
//! archived, and pruned in one transaction: its records' rows go, their places stay.
use recorder_record::Timestamp;
use recorder_store::StoredRecord;
use recorder_store_postgres::PgLog;

use crate::{Manifest, Pruner, Target, plan, prune::Pass};

impl Pruner {
    pub(crate) async fn pass_postgres(&self, log: &PgLog) -> Result<Pass, String> {
        let size = log.placed().await.map_err(|e| e.to_string())?;
        let done: std::collections::HashSet<u32> = log
            .pruned()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(Result::ok)
            .map(|p| p.segment)
            .collect();
        let n = self.config.segment_records;
        let mut out = Pass::default();
        for seg in 0..size / n {
            let seg = u32::try_from(seg).map_err(|_| "too many segments")?;
            if done.contains(&seg) {
                continue;
            }
            let (first, end) = (u64::from(seg) * n, (u64::from(seg) + 1) * n);
            let (bytes, leaves) = log
                .segment_image(first, end)
                .await
                .map_err(|e| e.to_string())?;
            let facts = plan::judge_image(&bytes, seg, &self.config)?;
            if facts.leaves != leaves {
                return Err(format!("segment {seg}: its image does not match its rows"));
            }
            let pruned =
                self.is_due(&facts).await && self.prune_postgres(log, &facts, bytes).await?;
            out.count(&facts, pruned);
        }
        self.metrics.kept.set(out.kept);
        Ok(out)
    }

    /// Archives (if configured) and prunes one due segment; false if it must wait (no
    /// checkpoint covers it yet, or the archive failed).
    async fn prune_postgres(
        &self,
        log: &PgLog,
        facts: &plan::SegmentFacts,
        bytes: Vec<u8>,
    ) -> Result<bool, String> {
        let mut entry = facts.entry(
            Timestamp::now().to_string(),
            self.archive.as_ref().map(|a| a.url().to_string()),
        );
        log.sign_pruned(&mut entry, &facts.leaves)
            .map_err(|e| e.to_string())?;
        let Some(checkpoint) = log
            .latest_checkpoint()
            .await
            .map_err(|e| e.to_string())?
            .filter(|c| c.tree_size >= facts.end_index)
        else {
            return Ok(false);
        };
        if let Some(archive) = &self.archive {
            let proof = log
                .range_proof(facts.first_index, facts.end_index, checkpoint.tree_size)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("no range proof for the segment")?;
            let manifest = Manifest::new(entry.clone(), checkpoint, &proof, &log.public_key());
            if !self.archive_copy(archive, bytes, &manifest).await {
                return Ok(false);
            }
        }
        log.prune(&entry).await.map_err(|e| e.to_string())?;
        self.pruned(facts);
        Ok(true)
    }
}

/// Reading pruned runs back, from copies brought back from the archive.
impl Pruner {
    pub(crate) async fn pg_pruned(
        &self,
        log: &PgLog,
    ) -> Result<Vec<recorder_store::pruned::PrunedSegment>, String> {
        Ok(log
            .pruned()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(Result::ok)
            .collect())
    }

    /// `records` (what the database holds of log indexes `from..to`) with the records of the
    /// pruned runs in that range added from the archive, in log order. Runs that cannot be
    /// brought back are left out, and said so in the log.
    pub async fn fill_range(
        &self,
        mut records: Vec<StoredRecord>,
        from: u64,
        to: u64,
    ) -> Vec<StoredRecord> {
        let Target::Postgres { log, .. } = &self.target else {
            return records;
        };
        if self.archive.is_none() {
            return records;
        }
        let runs = match self.pg_pruned(log).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the ledger of pruned runs");
                return records;
            }
        };
        for run in runs
            .iter()
            .filter(|r| r.first_index < to && r.end_index > from)
        {
            records.extend(
                self.read_back(run.segment, |r| (from..to).contains(&r.index))
                    .await,
            );
        }
        records.sort_by_key(|r| r.index);
        records
    }

    /// `records` (what the database holds of a session) with the session's records in pruned
    /// runs added from the archive, in log order.
    pub async fn fill_session(
        &self,
        mut records: Vec<StoredRecord>,
        host: &str,
        session: &str,
    ) -> Vec<StoredRecord> {
        let Target::Postgres { log, .. } = &self.target else {
            return records;
        };
        if self.archive.is_none() {
            return records;
        }
        let Ok(runs) = self.pg_pruned(log).await else {
            return records;
        };
        let key = (host.to_string(), session.to_string());
        for run in runs.iter().filter(|r| r.sessions.contains(&key)) {
            records.extend(
                self.read_back(run.segment, |r| {
                    r.host == host && r.record.session == session
                })
                .await,
            );
        }
        records.sort_by_key(|r| r.index);
        records
    }

    /// The records of pruned run `seg` that `keep` wants, from its copy brought back from the
    /// archive (checked against the stored leaves when fetched).
    async fn read_back(&self, seg: u32, keep: impl Fn(&StoredRecord) -> bool) -> Vec<StoredRecord> {
        if let Err(why) = self.restore(seg).await {
            tracing::warn!(segment = seg, %why, "pruned records cannot be read back; skipped");
            return Vec::new();
        }
        let Target::Postgres { data, .. } = &self.target else {
            return Vec::new();
        };
        let path = recorder_store::pruned::restored_path(data, seg);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read a restored run");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        let mut offset = recorder_store::segment::HEADER.len();
        while let Ok(frame) = recorder_store::segment::decode_frame(&bytes[offset..]) {
            offset += frame.len;
            let Ok(stored) = StoredRecord::from_entry(&frame.entry) else {
                continue;
            };
            if keep(&stored) {
                out.push(stored);
            }
        }
        out
    }
}
