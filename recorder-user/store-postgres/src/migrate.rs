//! `recorder migrate`: an embedded store copied into an empty PostgreSQL log with its proofs
//! intact. Every record keeps its log index, chain link and leaf hash, the tree nodes are
//! computed as the sequencer would, every checkpoint is copied with its signature, and the head
//! is signed with the same key, so the copy verifies with the same roots and the group's
//! collectors go on from it. One transaction: the database holds the whole log or nothing.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use recorder_record::{Record, Timestamp};
use recorder_store::{
    index::SessionIndex,
    integrity::{Hash, merkle::Frontier},
    scan,
};
use tokio::sync::mpsc;
use tokio_postgres::Transaction;

use crate::{PgError, PgLog, columns::RecordColumns, sequencer::Placed};

/// Records per statement.
const CHUNK: usize = 5000;

/// What a migration copied.
#[derive(Debug)]
pub struct Migrated {
    pub records: u64,
    pub checkpoints: u64,
    /// The root of the whole log, as the new signed head says.
    pub root: String,
}

/// One record as read from the segments.
struct Row {
    host: String,
    boot: String,
    seq: i64,
    prev: Hash,
    leaf: Hash,
    line: Vec<u8>,
}

impl PgLog {
    /// Copies the embedded store in `dir` (checked while it is read) into this database, which
    /// must hold no record. `progress` learns the records copied so far.
    pub async fn import(
        &self,
        dir: &Path,
        mut progress: impl FnMut(u64),
    ) -> Result<Migrated, PgError> {
        let signer = self.signer()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // PostgreSQL-only: no collector ingests into the log while it is copied.
        tx.batch_execute("LOCK TABLE records, waiting, placed IN EXCLUSIVE MODE")
            .await?;
        let held: i64 = tx
            .query_one("SELECT count(*) FROM records", &[])
            .await?
            .get(0);
        if held > 0 {
            return Err(PgError::Migrate(format!(
                "the database already holds {held} records: migrate into a new, empty database"
            )));
        }
        let (chunks, mut incoming) = mpsc::channel::<Vec<Row>>(4);
        let reading = read_log(dir.to_path_buf(), self.public_key.clone(), chunks);
        let mut copy = Copy::default();
        while let Some(chunk) = incoming.recv().await {
            copy.write(&tx, chunk).await?;
            progress(copy.frontier.size());
        }
        let scan = reading
            .await
            .map_err(|e| PgError::Migrate(e.to_string()))??;
        if let Some(first) = scan.problems.first() {
            return Err(PgError::Migrate(format!(
                "{} fails verification, nothing was copied (run `recorder verify --data {}`): {first}",
                dir.display(),
                dir.display()
            )));
        }
        copy.finish(&tx).await?;
        for cp in &scan.checkpoints {
            tx.execute(
                "INSERT INTO checkpoints (tree_size, root, time, signature) VALUES ($1, $2, $3, $4)",
                &[&(cp.tree_size as i64), &cp.root, &cp.time, &cp.signature],
            )
            .await?;
        }
        let last_time = scan
            .checkpoints
            .last()
            .map(|c| c.time.clone())
            .unwrap_or_default();
        let head = signer.sign(
            copy.frontier.size(),
            &copy.frontier.root(),
            Timestamp::now().to_string().max(last_time),
        );
        tx.execute(
            "UPDATE log_head SET tree_size = $1, peaks = $2, root = $3, time = $4, signature = $5 WHERE id = 1",
            &[
                &(head.tree_size as i64),
                &copy.frontier.peaks().concat(),
                &head.root,
                &head.time,
                &head.signature,
            ],
        )
        .await?;
        // PostgreSQL-only: new records get ids after the copied ones (rows inserted by hand
        // from records' own sequence, batches from record_batches).
        let copied = copy.frontier.size().max(1) as i64;
        tx.execute(
            "SELECT setval(pg_get_serial_sequence('records', 'id'), $1), setval('record_batches', $1 / $2 + 1)",
            &[&copied, &crate::ingest::BATCH_IDS],
        )
        .await?;
        tx.commit().await?;
        Ok(Migrated {
            records: copy.frontier.size(),
            checkpoints: scan.checkpoints.len() as u64,
            root: head.root,
        })
    }
}

/// Reads and checks the log on a thread of its own, handing records over in chunks.
fn read_log(
    dir: PathBuf,
    key: Vec<u8>,
    chunks: mpsc::Sender<Vec<Row>>,
) -> tokio::task::JoinHandle<Result<scan::Scan, PgError>> {
    tokio::task::spawn_blocking(move || {
        // The database has no place for a run of leaves without their records.
        if !recorder_store::pruned::load_ledger(&dir)
            .map_err(|e| PgError::Migrate(e.to_string()))?
            .is_empty()
        {
            return Err(PgError::Migrate(format!(
                "{}: retention pruned segments of this log; a pruned log cannot be copied to PostgreSQL",
                dir.display()
            )));
        }
        let mut chunk = Vec::with_capacity(CHUNK);
        let scan = scan::scan(&dir, Some(&key), |v| {
            let Some(entry) = v.entry else { return };
            chunk.push(Row {
                host: entry.host.to_string(),
                boot: entry.boot.to_string(),
                seq: entry.sequence as i64,
                prev: entry.prev,
                leaf: v.leaf,
                line: entry.line.to_vec(),
            });
            if chunk.len() == CHUNK {
                let _ =
                    chunks.blocking_send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)));
            }
        })
        .map_err(|e| PgError::Migrate(e.to_string()))?;
        if !chunk.is_empty() {
            let _ = chunks.blocking_send(chunk);
        }
        Ok(scan)
    })
}

/// The copy so far: the tree, each stream's end, the sessions.
#[derive(Default)]
struct Copy {
    frontier: Frontier,
    streams: HashMap<(String, String), (i64, Hash)>,
    sessions: SessionIndex,
}

impl Copy {
    async fn write(&mut self, tx: &Transaction<'_>, rows: Vec<Row>) -> Result<(), PgError> {
        let mut c = Columns::default();
        let mut placed = Placed::default();
        for row in rows {
            let index = self.frontier.size();
            let record = Record::parse(&row.line).map_err(|e| {
                PgError::Migrate(format!("log index {index} is not a record line: {e}"))
            })?;
            self.sessions.add(index, &record);
            c.derived.push(&record);
            c.id.push(index as i64 + 1);
            placed.ids.push(index as i64 + 1);
            placed.indexes.push(index as i64);
            c.seq.push(row.seq);
            placed.prevs.push(row.prev.to_vec());
            placed.leaves.push(row.leaf.to_vec());
            self.frontier.push_with(row.leaf, |id, hash| {
                placed.node_levels.push(i16::from(id.level));
                placed.node_indexes.push(id.index as i64);
                placed.node_hashes.push(hash.to_vec());
            });
            self.streams
                .insert((row.host.clone(), row.boot.clone()), (row.seq, row.leaf));
            c.host.push(row.host);
            c.boot.push(row.boot);
            c.line.push(row.line);
        }
        tx.execute(
            "INSERT INTO records (id, host, boot, seq, line, session, identity, kind, time_ns, namespace, pod, outcome)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bytea[], $6::text[], $7::text[], $8::text[], $9::bigint[], $10::text[], $11::text[], $12::smallint[])",
            &[
                &c.id,
                &c.host,
                &c.boot,
                &c.seq,
                &c.line,
                &c.derived.session,
                &c.derived.identity,
                &c.derived.kind,
                &c.derived.time_ns,
                &c.derived.namespace,
                &c.derived.pod,
                &c.derived.outcome,
            ],
        )
        .await?;
        placed.insert(tx).await?;
        Ok(())
    }

    /// The streams' ends and the sessions, once every record is in.
    async fn finish(&self, tx: &Transaction<'_>) -> Result<(), PgError> {
        for ((host, boot), (seq, leaf)) in &self.streams {
            tx.execute(
                "INSERT INTO streams (host, boot, last_seq, last_leaf) VALUES ($1, $2, $3, $4)",
                &[host, boot, seq, &leaf.to_vec()],
            )
            .await?;
        }
        for s in self.sessions.summaries() {
            tx.execute(
                "INSERT INTO sessions (host, session, identity, first_ns, last_ns, commands, records, namespace, pod, failed, gaps)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &s.host,
                    &s.session,
                    &s.identity,
                    &(s.first_time.unix_ns() as i64),
                    &(s.last_time.unix_ns() as i64),
                    &(s.commands as i64),
                    &(s.records as i64),
                    &s.namespace,
                    &s.pod,
                    &(s.failed as i64),
                    &(s.gaps as i64),
                ],
            )
            .await?;
        }
        for g in self.sessions.host_gaps() {
            tx.execute(
                "INSERT INTO host_gaps (log_index, host, identity, time_ns) VALUES ($1, $2, $3, $4)",
                &[
                    &(g.index as i64),
                    &g.host,
                    &g.identity,
                    &(g.time.unix_ns() as i64),
                ],
            )
            .await?;
        }
        Ok(())
    }
}

/// A chunk's record columns, for `unnest` (their placements are a `Placed`).
#[derive(Default)]
struct Columns {
    id: Vec<i64>,
    host: Vec<String>,
    boot: Vec<String>,
    seq: Vec<i64>,
    line: Vec<Vec<u8>>,
    derived: RecordColumns,
}
