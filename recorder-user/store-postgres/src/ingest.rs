//! Ingest: a batch of one stream inserted in one statement (the records, under a run of ids of
//! their own, and that run in `waiting`), committed before it is acknowledged. The sequencer
//! places them later.
use recorder_record::{MAX_LINE, Record};

use std::sync::Arc;

use tokio_postgres::error::SqlState;

use crate::{
    PgError, PgLog,
    columns::RecordColumns,
    unplaced::{Pending, is_command},
};

/// The ids one batch may take: a batch of more lines is stored as several (the migration that
/// made `record_batches` says the same number).
pub(crate) const BATCH_IDS: i64 = 65_536;

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Records newly stored.
    pub stored: u64,
    /// Records some collector of the group had stored already (a batch sent again).
    pub duplicates: u64,
    /// The stream's highest stored sequence.
    pub acked: Option<u64>,
}

/// The columns of a batch, one vector per column, for `unnest`.
#[derive(Default)]
struct Columns {
    seq: Vec<i64>,
    line: Vec<Vec<u8>>,
    derived: RecordColumns,
    /// How many lines (the length of the batch's run of ids).
    count: i64,
}

impl Columns {
    /// The records of the batch whose ids start at `first_id` that the insert stored (`ids`:
    /// which, when it skipped some), for the sequencer's cache; their lines and columns are
    /// moved out.
    fn pending(
        &mut self,
        host: &str,
        boot: &str,
        first_id: i64,
        ids: Option<&[i64]>,
    ) -> Vec<Pending> {
        let (host, boot): (Arc<str>, Arc<str>) = (host.into(), boot.into());
        let all: Vec<i64>;
        let ids = if let Some(ids) = ids {
            ids
        } else {
            all = (first_id..first_id + self.count).collect();
            &all
        };
        ids.iter()
            .filter_map(|&id| {
                let at = usize::try_from(id - first_id)
                    .ok()
                    .filter(|&at| at < self.seq.len())?;
                let d = &mut self.derived;
                Some(Pending {
                    id,
                    host: host.clone(),
                    boot: boot.clone(),
                    seq: self.seq[at],
                    line: std::mem::take(&mut self.line[at]),
                    session: std::mem::take(&mut d.session[at]),
                    identity: std::mem::take(&mut d.identity[at]),
                    is_command: is_command(d.kind[at]),
                    time_ns: d.time_ns[at],
                    namespace: std::mem::take(&mut d.namespace[at]),
                    pod: std::mem::take(&mut d.pod[at]),
                    outcome: d.outcome[at],
                })
            })
            .collect()
    }
}

impl PgLog {
    /// Stores a batch of the stream (host, boot) whose first line has `first_sequence`. Lines
    /// at or below the stream's highest stored sequence are duplicates. `check` vets each
    /// record (the service checks its host there). The records are committed when this returns.
    pub async fn append(
        &self,
        host: &str,
        boot: &str,
        first_sequence: u64,
        lines: &[impl AsRef<[u8]>],
        check: impl Fn(&Record) -> Result<(), String>,
    ) -> Result<Appended, PgError> {
        if lines.is_empty() {
            return self
                .append_run(host, boot, first_sequence, lines, &check)
                .await;
        }
        let mut out = Appended::default();
        let mut first = first_sequence;
        for run in lines.chunks(BATCH_IDS as usize) {
            let part = self.append_run(host, boot, first, run, &check).await?;
            out.stored += part.stored;
            out.duplicates += part.duplicates;
            out.acked = part.acked.or(out.acked);
            first += run.len() as u64;
        }
        Ok(out)
    }

    /// [`Self::append`] of at most [`BATCH_IDS`] lines.
    async fn append_run(
        &self,
        host: &str,
        boot: &str,
        first_sequence: u64,
        lines: &[impl AsRef<[u8]>],
        check: &impl Fn(&Record) -> Result<(), String>,
    ) -> Result<Appended, PgError> {
        let client = self.client().await?;
        let stored_max = stream_max(&client, host, boot).await?;
        let mut cols = Columns::default();
        let mut out = Appended::default();
        for (i, line) in lines.iter().enumerate() {
            let line = line.as_ref();
            let sequence = first_sequence + i as u64;
            if stored_max.is_some_and(|max| sequence <= max) {
                out.duplicates += 1;
                continue;
            }
            let bad = |why: String| PgError::BadRecord { sequence, why };
            if line.len() > MAX_LINE {
                return Err(bad(format!(
                    "{} bytes is above the {MAX_LINE} byte bound of a record",
                    line.len()
                )));
            }
            let record = Record::parse(line).map_err(|e| bad(format!("not a record line: {e}")))?;
            check(&record).map_err(bad)?;
            cols.seq.push(sequence as i64);
            cols.line.push(line.to_vec());
            cols.derived.push(&record);
        }
        cols.count = cols.seq.len() as i64;
        if cols.seq.is_empty() {
            out.acked = stored_max;
            return Ok(out);
        }
        let (first_id, ids) = match insert(&client, host, boot, &cols, false).await {
            Ok(first_id) => (first_id, None),
            // Another collector stored some of these lines meanwhile (an agent that failed
            // over sent them again): store the others.
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                let ids = insert_missing(&client, host, boot, &cols).await?;
                (ids.first_id, Some(ids.stored))
            }
            Err(e) => return Err(e.into()),
        };
        let batch = cols.seq.len() as u64;
        out.stored = ids.as_ref().map_or(batch, |ids| ids.len() as u64);
        out.duplicates += batch - out.stored;
        if self.unplaced.is_enabled() {
            let pending = cols.pending(host, boot, first_id, ids.as_deref());
            self.unplaced.add(first_id, pending);
        }
        out.acked = if out.stored == batch {
            cols.seq.last().map(|&s| s as u64)
        } else {
            stream_max(&client, host, boot).await?
        };
        Ok(out)
    }

    /// The highest stored sequence of a stream, by any collector of the group.
    pub async fn acked(&self, host: &str, boot: &str) -> Result<Option<u64>, PgError> {
        stream_max(&*self.client().await?, host, boot).await
    }
}

async fn stream_max(
    client: &tokio_postgres::Client,
    host: &str,
    boot: &str,
) -> Result<Option<u64>, PgError> {
    let row = client
        .query_one(
            "SELECT max(seq) FROM records WHERE host = $1 AND boot = $2",
            &[&host, &boot],
        )
        .await?;
    Ok(row.get::<_, Option<i64>>(0).map(|s| s as u64))
}

/// The record ids of a batch stored with duplicates skipped.
struct StoredIds {
    first_id: i64,
    stored: Vec<i64>,
}

/// Inserts the batch's records under ids `first + 0..n` (`first` a new batch number times
/// [`BATCH_IDS`]) and its `waiting` row, in one statement; returns `first`. Without
/// `skip_duplicates` a line some collector stored already fails the whole statement
/// (`unique_violation`): checking each row for a conflict cost more than the rare retry.
async fn insert(
    client: &tokio_postgres::Client,
    host: &str,
    boot: &str,
    cols: &Columns,
    skip_duplicates: bool,
) -> Result<i64, tokio_postgres::Error> {
    let rows = client
        .query(
            &insert_sql(skip_duplicates, "SELECT first FROM batch"),
            &params(&host, &boot, cols),
        )
        .await?;
    Ok(rows.first().map_or(0, |r| r.get(0)))
}

/// [`insert`], skipping the lines already stored; returns the ids of those it stored.
async fn insert_missing(
    client: &tokio_postgres::Client,
    host: &str,
    boot: &str,
    cols: &Columns,
) -> Result<StoredIds, tokio_postgres::Error> {
    let rows = client
        .query(
            &insert_sql(
                true,
                "SELECT batch.first, stored.id FROM batch LEFT JOIN stored ON true ORDER BY stored.id",
            ),
            &params(&host, &boot, cols),
        )
        .await?;
    Ok(StoredIds {
        first_id: rows.first().map_or(0, |r| r.get(0)),
        stored: rows.iter().filter_map(|r| r.get(1)).collect(),
    })
}

fn insert_sql(skip_duplicates: bool, select: &str) -> String {
    let conflict = if skip_duplicates {
        "ON CONFLICT (host, boot, seq) DO NOTHING"
    } else {
        ""
    };
    format!(
        "WITH batch AS (SELECT nextval('record_batches') * {BATCH_IDS} AS first),
              stored AS (
                 INSERT INTO records (id, host, boot, seq, line, session, identity, kind, time_ns, namespace, pod, outcome)
                 SELECT batch.first + u.n - 1, $1, $2, u.seq, u.line, u.session, u.identity, u.kind, u.time_ns, u.namespace, u.pod, u.outcome
                 FROM batch, unnest($3::bigint[], $4::bytea[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[], $10::text[], $11::smallint[])
                      WITH ORDINALITY AS u(seq, line, session, identity, kind, time_ns, namespace, pod, outcome, n)
                 {conflict}
                 RETURNING id),
              queued AS (
                 INSERT INTO waiting (id, count) SELECT first, $12 FROM batch WHERE EXISTS (SELECT 1 FROM stored))
         {select}"
    )
}

fn params<'a>(
    host: &'a &'a str,
    boot: &'a &'a str,
    cols: &'a Columns,
) -> [&'a (dyn tokio_postgres::types::ToSql + Sync); 12] {
    [
        host,
        boot,
        &cols.seq,
        &cols.line,
        &cols.derived.session,
        &cols.derived.identity,
        &cols.derived.kind,
        &cols.derived.time_ns,
        &cols.derived.namespace,
        &cols.derived.pod,
        &cols.derived.outcome,
        &cols.count,
    ]
}
