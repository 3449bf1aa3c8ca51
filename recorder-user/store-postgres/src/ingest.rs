//! Ingest: a batch of one stream inserted in one statement (the records, and their ids in
//! `waiting`), committed before it is acknowledged. The sequencer places them later.
use recorder_record::{MAX_LINE, Record};

use crate::{PgError, PgLog, columns::RecordColumns};

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
        if cols.seq.is_empty() {
            out.acked = stored_max;
            return Ok(out);
        }
        let inserted = client
            .query(
                "WITH stored AS (
                     INSERT INTO records (host, boot, seq, line, session, identity, kind, time_ns, namespace, pod, outcome)
                     SELECT $1, $2, u.seq, u.line, u.session, u.identity, u.kind, u.time_ns, u.namespace, u.pod, u.outcome
                     FROM unnest($3::bigint[], $4::bytea[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[], $10::text[], $11::smallint[])
                          AS u(seq, line, session, identity, kind, time_ns, namespace, pod, outcome)
                     ON CONFLICT (host, boot, seq) DO NOTHING
                     RETURNING id, seq),
                 queued AS (INSERT INTO waiting (id) SELECT id FROM stored)
                 SELECT seq FROM stored",
                &[
                    &host,
                    &boot,
                    &cols.seq,
                    &cols.line,
                    &cols.derived.session,
                    &cols.derived.identity,
                    &cols.derived.kind,
                    &cols.derived.time_ns,
                    &cols.derived.namespace,
                    &cols.derived.pod,
                    &cols.derived.outcome,
                ],
            )
            .await?;
        out.stored = inserted.len() as u64;
        out.duplicates += cols.seq.len() as u64 - out.stored;
        out.acked = if out.stored == cols.seq.len() as u64 {
            cols.seq.last().map(|&s| s as u64)
        } else {
            // Another collector stored some of them meanwhile: ask what the stream has now.
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
