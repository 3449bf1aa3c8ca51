//! Retention on PostgreSQL: a segment is a fixed run of log indexes; pruning it deletes its
//! records' rows and keeps their places (`placed`: index, chain link, leaf hash), with the
//! signed ledger entry in `pruned`, in one transaction. The segment's archive copy is the
//! embedded store's segment format, made from the rows: its leaf hashes are the stored ones.
use recorder_store::{
    integrity::{Hash, merkle},
    pruned::{self, PrunedSegment},
    segment::{Entry, HEADER},
};

use crate::{PgError, PgLog};

impl PgLog {
    /// The ledger of pruned segments, by segment number; unreadable entries as errors.
    pub async fn pruned(&self) -> Result<Vec<Result<PrunedSegment, String>>, PgError> {
        let rows = self
            .client()
            .await?
            .query("SELECT segment, entry FROM pruned ORDER BY segment", &[])
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                serde_json::from_str(r.get(1)).map_err(|e| {
                    format!(
                        "pruned segment {}: unreadable entry ({e})",
                        r.get::<_, i64>(0)
                    )
                })
            })
            .collect())
    }

    /// Log indexes `first..end` as a segment file of the embedded store (header and frames),
    /// with their leaf hashes; an error if one is missing or does not hash to its stored leaf.
    pub async fn segment_image(
        &self,
        first: u64,
        end: u64,
    ) -> Result<(Vec<u8>, Vec<Hash>), PgError> {
        let records = self.read_range(first, end).await?;
        let stored = self.placed_leaves(first, end).await?;
        if records.len() as u64 != end - first || stored.len() != records.len() {
            return Err(PgError::Db(format!(
                "log index {first}..{end}: {} records stored, {} placed (some already pruned?)",
                records.len(),
                stored.len()
            )));
        }
        let mut bytes = HEADER.to_vec();
        let mut leaves = Vec::with_capacity(records.len());
        for (r, row) in records.iter().zip(&stored) {
            let leaf = Entry {
                index: r.index,
                host: &r.host,
                boot: &r.boot,
                sequence: r.sequence,
                prev: r.prev,
                line: &r.line,
            }
            .encode_frame(&mut bytes);
            if *row != leaf {
                return Err(PgError::Db(format!(
                    "log index {}: its row does not hash to its stored leaf; run `recorder verify`",
                    r.index
                )));
            }
            leaves.push(leaf);
        }
        Ok((bytes, leaves))
    }

    /// The stored leaf hashes of log indexes `first..end`.
    pub async fn placed_leaves(&self, first: u64, end: u64) -> Result<Vec<Hash>, PgError> {
        Ok(self
            .client()
            .await?
            .query(
                "SELECT leaf FROM placed WHERE log_index >= $1 AND log_index < $2 ORDER BY log_index",
                &[&(first as i64), &(end as i64)],
            )
            .await?
            .iter()
            .map(|r| Hash::try_from(r.get::<_, &[u8]>(0)).unwrap_or_default())
            .collect())
    }

    /// Signs a ledger entry for `leaves` with the group's key (the leaves' hash set first).
    pub fn sign_pruned(&self, entry: &mut PrunedSegment, leaves: &[Hash]) -> Result<(), PgError> {
        let signer = self.signer()?;
        entry.leaves_sha256 = pruned::sha256_hex(&pruned::leaves_bytes(leaves));
        entry.sign(&signer);
        Ok(())
    }

    /// The tree heads that, with the leaves `first..end`, make the head of the tree of `size`.
    pub async fn range_proof(
        &self,
        first: u64,
        end: u64,
        size: u64,
    ) -> Result<Option<Vec<Hash>>, PgError> {
        let Some(ranges) = merkle::range_ranges(first, end, size) else {
            return Ok(None);
        };
        let ids = merkle::nodes_for(&ranges);
        let Some(nodes) = self.nodes(&ids, size).await? else {
            return Ok(None);
        };
        Ok(merkle::assemble(&ranges, |id| nodes.get(&id).copied()))
    }

    /// Deletes the records of a signed entry's segment and records the entry, in one
    /// transaction; the stored leaves must be the ones the entry signed.
    pub async fn prune(&self, entry: &PrunedSegment) -> Result<(), PgError> {
        if !entry.verify(&self.public_key) {
            return Err(PgError::Db(
                "the pruned entry is not signed by the group's key".into(),
            ));
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let (first, end) = (entry.first_index as i64, entry.end_index as i64);
        let stored: Vec<u8> = tx
            .query(
                "SELECT leaf FROM placed WHERE log_index >= $1 AND log_index < $2 ORDER BY log_index",
                &[&first, &end],
            )
            .await?
            .iter()
            .flat_map(|r| r.get::<_, Vec<u8>>(0))
            .collect();
        if pruned::sha256_hex(&stored) != entry.leaves_sha256 {
            return Err(PgError::Db(format!(
                "log index {first}..{end}: the stored leaves are not those the entry signed"
            )));
        }
        let json = serde_json::to_string(entry).map_err(|e| PgError::Db(e.to_string()))?;
        tx.execute(
            "INSERT INTO pruned (segment, first_index, end_index, entry) VALUES ($1, $2, $3, $4)",
            &[&i64::from(entry.segment), &first, &end, &json],
        )
        .await?;
        tx.execute(
            "DELETE FROM host_gaps WHERE log_index >= $1 AND log_index < $2",
            &[&first, &end],
        )
        .await?;
        tx.execute(
            "DELETE FROM records r USING placed p
             WHERE r.id = p.record_id AND p.log_index >= $1 AND p.log_index < $2",
            &[&first, &end],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
