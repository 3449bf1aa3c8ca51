//! What operators read: records by log index, sessions, checkpoints and proofs. Only placed
//! records are visible; records waiting for the sequencer are not yet in the log.
use std::collections::HashMap;

use recorder_record::{Record, Timestamp};
use recorder_store::{
    StoredRecord,
    index::{GAP_REPORT_DELAY_NS, SessionFilter, SessionSummary},
    integrity::{
        Hash,
        checkpoint::Checkpoint,
        merkle::{self, NodeId},
    },
};
use tokio_postgres::{Client, Row};

use crate::{PgError, PgLog};

/// The columns `stored` reads, in its order, from `placed p JOIN records r`.
pub(crate) const RECORD_COLUMNS: &str =
    "p.log_index, r.host, r.boot, r.seq, p.prev, r.line, p.leaf";
/// The placed records.
pub(crate) const PLACED: &str = "placed p JOIN records r ON r.id = p.record_id";

/// How many records wait for the sequencer (each `waiting` row is a batch's run of ids).
pub(crate) const WAITING_RECORDS: &str =
    "SELECT count(*) FROM waiting w JOIN records r ON r.id >= w.id AND r.id < w.id + w.count";

/// A placed record from a row of `RECORD_COLUMNS`.
pub(crate) fn stored(row: &Row) -> Result<StoredRecord, PgError> {
    let index = row.get::<_, i64>(0) as u64;
    let sequence = row.get::<_, i64>(3) as u64;
    let prev: &[u8] = row.get(4);
    let line: Vec<u8> = row.get(5);
    let record = Record::parse(&line).map_err(|e| PgError::BadRecord {
        sequence,
        why: format!("log index {index} is not a record line: {e}"),
    })?;
    Ok(StoredRecord {
        index,
        host: row.get(1),
        boot: row.get(2),
        sequence,
        prev: Hash::try_from(prev).unwrap_or_default(),
        record,
        line,
    })
}

/// The signed head: the log's size and root, signed by the sequencer that placed its last
/// record.
pub(crate) async fn head(client: &Client) -> Result<Checkpoint, PgError> {
    let row = client
        .query_one(
            "SELECT tree_size, root, time, signature FROM log_head WHERE id = 1",
            &[],
        )
        .await?;
    Ok(checkpoint(&row))
}

fn checkpoint(row: &Row) -> Checkpoint {
    Checkpoint {
        tree_size: row.get::<_, i64>(0) as u64,
        root: row.get(1),
        time: row.get(2),
        signature: row.get(3),
    }
}

impl PgLog {
    /// Records placed in the log (the size of its tree).
    pub async fn placed(&self) -> Result<u64, PgError> {
        Ok(head(&*self.client().await?).await?.tree_size)
    }

    /// Records stored but not yet placed by the sequencer.
    pub async fn waiting(&self) -> Result<u64, PgError> {
        let row = self.client().await?.query_one(WAITING_RECORDS, &[]).await?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// The placed records with log index `from..to`, in order.
    pub async fn read_range(&self, from: u64, to: u64) -> Result<Vec<StoredRecord>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM {PLACED} WHERE p.log_index >= $1 AND p.log_index < $2 ORDER BY p.log_index"
                ),
                &[&(from as i64), &(to as i64)],
            )
            .await?;
        rows.iter().map(stored).collect()
    }

    /// Where the group's exporter `name` has delivered up to (0 if it never delivered).
    pub async fn export_cursor(&self, name: &str) -> Result<u64, PgError> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT next FROM export_cursors WHERE name = $1", &[&name])
            .await?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    /// Moves the group's exporter `name` forward to `next` (never back).
    pub async fn save_export_cursor(&self, name: &str, next: u64) -> Result<(), PgError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO export_cursors (name, next) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET next = EXCLUDED.next
                 WHERE export_cursors.next < EXCLUDED.next",
                &[&name, &(next as i64)],
            )
            .await?;
        Ok(())
    }

    /// Sessions matching the filter, most recently active first. A session's `gaps` here are its
    /// own and those of its host while it ran (`host_gaps`), together.
    pub async fn sessions(
        &self,
        filter: &SessionFilter<'_>,
        limit: u32,
    ) -> Result<Vec<SessionSummary>, PgError> {
        let limit = if limit == 0 {
            i64::MAX
        } else {
            i64::from(limit)
        };
        let delay = GAP_REPORT_DELAY_NS as i64;
        let rows = self
            .client()
            .await?
            .query(
                "SELECT host, session, identity, first_ns, last_ns, commands, records, namespace, pod, failed, gaps,
                        (SELECT count(*) FROM host_gaps g
                         WHERE g.host = s.host AND (g.identity = '' OR g.identity = s.identity)
                           AND g.time_ns >= s.first_ns AND g.time_ns <= s.last_ns + $10) AS host_gaps
                 FROM sessions s
                 WHERE ($1 = '' OR identity = $1) AND ($2 = '' OR host = $2)
                   AND ($3 = '' OR namespace = $3) AND ($4 = '' OR pod = $4) AND last_ns >= $5
                   AND ($7::bigint = 0 OR first_ns <= $7) AND (NOT $8 OR failed > 0)
                   AND ($11 = '' OR session = $11)
                   AND (NOT $9 OR gaps > 0 OR EXISTS (SELECT 1 FROM host_gaps g
                         WHERE g.host = s.host AND (g.identity = '' OR g.identity = s.identity)
                           AND g.time_ns >= s.first_ns AND g.time_ns <= s.last_ns + $10))
                 ORDER BY last_ns DESC, session LIMIT $6",
                &[
                    &filter.identity,
                    &filter.host,
                    &filter.namespace,
                    &filter.pod,
                    &filter.since_unix_ns,
                    &limit,
                    &filter.until_unix_ns,
                    &filter.failed,
                    &filter.gaps,
                    &delay,
                    &filter.session,
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| SessionSummary {
                host: r.get(0),
                session: r.get(1),
                identity: r.get(2),
                first_time: Timestamp(i128::from(r.get::<_, i64>(3))),
                last_time: Timestamp(i128::from(r.get::<_, i64>(4))),
                commands: r.get::<_, i64>(5) as u64,
                records: r.get::<_, i64>(6) as u64,
                namespace: r.get(7),
                pod: r.get(8),
                last_index: 0,
                failed: r.get::<_, i64>(9) as u64,
                gaps: (r.get::<_, i64>(10) + r.get::<_, i64>(11)) as u64,
            })
            .collect())
    }

    /// The log indexes of the gaps of no session that may concern this session: of its host,
    /// of its identity or of none, reported while it ran (or shortly after).
    pub async fn context_gaps(&self, s: &SessionSummary) -> Result<Vec<u64>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT log_index FROM host_gaps
                 WHERE host = $1 AND (identity = '' OR identity = $2) AND time_ns >= $3 AND time_ns <= $4
                 ORDER BY log_index",
                &[
                    &s.host,
                    &s.identity,
                    &(s.first_time.unix_ns() as i64),
                    &((s.last_time.unix_ns() + GAP_REPORT_DELAY_NS) as i64),
                ],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
    }

    /// The hosts that have a session with this id (`host` narrows it).
    pub async fn session_hosts(&self, session: &str, host: &str) -> Result<Vec<String>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT host FROM sessions WHERE session = $1 AND ($2 = '' OR host = $2) ORDER BY host",
                &[&session, &host],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// A session's placed records in log order.
    pub async fn session_records(
        &self,
        host: &str,
        session: &str,
    ) -> Result<Vec<StoredRecord>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM {PLACED}
                     WHERE r.host = $1 AND r.session = $2 ORDER BY p.log_index"
                ),
                &[&host, &session],
            )
            .await?;
        rows.iter().map(stored).collect()
    }

    /// The latest published checkpoint.
    pub async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, PgError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT tree_size, root, time, signature FROM checkpoints ORDER BY tree_size DESC LIMIT 1",
                &[],
            )
            .await?;
        Ok(row.as_ref().map(checkpoint))
    }

    /// The leaf hash and audit path of record `index` in the tree of the first `tree_size`
    /// records; None if that tree does not hold it.
    pub async fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<Option<(Hash, Vec<Hash>)>, PgError> {
        let Some(ranges) = merkle::inclusion_ranges(index, tree_size) else {
            return Ok(None);
        };
        let mut ids = merkle::nodes_for(&ranges);
        let leaf_id = NodeId { level: 0, index };
        ids.push(leaf_id);
        let Some(nodes) = self.nodes(&ids, tree_size).await? else {
            return Ok(None);
        };
        let path = merkle::assemble(&ranges, |id| nodes.get(&id).copied());
        Ok(path.zip(nodes.get(&leaf_id).copied()).map(|(p, l)| (l, p)))
    }

    pub async fn consistency_proof(
        &self,
        old: u64,
        new: u64,
    ) -> Result<Option<Vec<Hash>>, PgError> {
        let Some(ranges) = merkle::consistency_ranges(old, new) else {
            return Ok(None);
        };
        let ids = merkle::nodes_for(&ranges);
        let Some(nodes) = self.nodes(&ids, new).await? else {
            return Ok(None);
        };
        Ok(merkle::assemble(&ranges, |id| nodes.get(&id).copied()))
    }

    /// Reads stored nodes: leaves from `placed`, the rest from `tree_nodes`. None if the
    /// log is smaller than `tree_size`.
    pub(crate) async fn nodes(
        &self,
        ids: &[NodeId],
        tree_size: u64,
    ) -> Result<Option<HashMap<NodeId, Hash>>, PgError> {
        let client = self.client().await?;
        if head(&client).await?.tree_size < tree_size {
            return Ok(None);
        }
        let leaves: Vec<i64> = ids
            .iter()
            .filter(|id| id.level == 0)
            .map(|id| id.index as i64)
            .collect();
        let (levels, indexes): (Vec<i16>, Vec<i64>) = ids
            .iter()
            .filter(|id| id.level > 0)
            .map(|id| (i16::from(id.level), id.index as i64))
            .unzip();
        let mut out = HashMap::new();
        let mut put = |level: i16, index: i64, hash: &[u8]| {
            if let Ok(h) = Hash::try_from(hash) {
                out.insert(
                    NodeId {
                        level: level as u8,
                        index: index as u64,
                    },
                    h,
                );
            }
        };
        for r in client
            .query(
                "SELECT log_index, leaf FROM placed WHERE log_index = ANY($1)",
                &[&leaves],
            )
            .await?
        {
            put(0, r.get(0), r.get(1));
        }
        for r in client
            .query(
                "SELECT t.level, t.idx, t.hash FROM tree_nodes t
                 JOIN unnest($1::smallint[], $2::bigint[]) AS q(level, idx) ON t.level = q.level AND t.idx = q.idx",
                &[&levels, &indexes],
            )
            .await?
        {
            put(r.get(0), r.get(1), r.get(2));
        }
        Ok(Some(out))
    }
}
