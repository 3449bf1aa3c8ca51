//! The records waiting for the sequencer, as it reads them: from this collector's memory when
//! this collector ingested them while it sequences (the common case: one collector, or the
//! sequencer's own agents), else from `records`. Reading back every record's line the moment
//! after it was inserted cost the database about a fifth of its work in the ingest benchmark.
//!
//! The memory is a cache, never the truth: an entry is added only after its insert committed,
//! only while this collector holds the sequencer's lease, within a fixed budget; whatever it
//! lacks is read from the database. So it does not grow with the log, and a collector that
//! loses the lease drops it.
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use recorder_record::Kind;
use tokio_postgres::Transaction;

use crate::PgError;

/// The most bytes of lines and columns kept: about 70,000 typical records, more than the
/// sequencer places in a round.
const BUDGET: usize = 32 << 20;
/// What one entry costs beyond its strings and line (the struct, the map's node).
const OVERHEAD: usize = 160;

/// A stored record not yet placed in the log, with what the sequencer writes from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) id: i64,
    pub(crate) host: Arc<str>,
    pub(crate) boot: Arc<str>,
    pub(crate) seq: i64,
    pub(crate) line: Vec<u8>,
    pub(crate) session: String,
    pub(crate) identity: String,
    pub(crate) is_command: bool,
    pub(crate) time_ns: i64,
    pub(crate) namespace: String,
    pub(crate) pod: String,
    pub(crate) outcome: i16,
}

impl Pending {
    fn cost(&self) -> usize {
        OVERHEAD
            + self.line.len()
            + self.session.len()
            + self.identity.len()
            + self.namespace.len()
            + self.pod.len()
    }
}

/// Whether a `records.kind` names a command (an unknown name is none).
pub(crate) fn is_command(kind: &str) -> bool {
    kind.parse::<Kind>().is_ok_and(Kind::is_command)
}

#[derive(Default)]
struct State {
    /// Whether this collector sequences (entries are kept only then).
    enabled: bool,
    /// The stored records of each batch, by the batch's first id.
    batches: BTreeMap<i64, Vec<Pending>>,
    bytes: usize,
}

fn cost(batch: &[Pending]) -> usize {
    batch.iter().map(Pending::cost).sum()
}

/// This collector's committed, not yet placed batches.
#[derive(Default)]
pub(crate) struct Unplaced {
    state: Mutex<State>,
}

impl Unplaced {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps batches from now on (this collector took the lease), or drops them all and keeps
    /// none (it lost it: another collector places them).
    pub(crate) fn set_enabled(&self, enabled: bool) {
        let mut s = self.lock();
        if s.enabled != enabled {
            s.enabled = enabled;
            s.batches.clear();
            s.bytes = 0;
        }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.lock().enabled
    }

    /// Adds the stored records of the batch whose ids start at `first_id`, once its insert
    /// committed, if the budget allows.
    pub(crate) fn add(&self, first_id: i64, records: Vec<Pending>) {
        let mut s = self.lock();
        let cost = cost(&records);
        if !s.enabled || records.is_empty() || s.bytes + cost > BUDGET {
            return;
        }
        s.bytes += cost;
        if let Some(old) = s.batches.insert(first_id, records) {
            s.bytes -= self::cost(&old);
        }
    }

    /// Takes the batches starting at `firsts` (sorted), `None` for those it lacks; forgets
    /// those below the first of them: a round takes the lowest waiting batches, so those were
    /// placed already, by another sequencer that had the lease meanwhile.
    fn take(&self, firsts: &[i64]) -> Vec<Option<Vec<Pending>>> {
        let mut s = self.lock();
        if let Some(&first) = firsts.first() {
            let keep = s.batches.split_off(&first);
            let forgotten: usize = s.batches.values().map(|b| cost(b)).sum();
            s.batches = keep;
            s.bytes -= forgotten;
        }
        firsts
            .iter()
            .map(|first| {
                let batch = s.batches.remove(first)?;
                s.bytes -= cost(&batch);
                Some(batch)
            })
            .collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().batches.len()
    }
}

/// The oldest waiting batches, about `limit` records (whole batches, at least one), in the
/// order of their ids, and the batches' first ids: from `cache`, and from `records` for the
/// batches it lacks.
pub(crate) async fn oldest(
    tx: &Transaction<'_>,
    cache: &Unplaced,
    limit: i64,
) -> Result<(Vec<Pending>, Vec<i64>), PgError> {
    let mut firsts = Vec::new();
    let mut counts = Vec::new();
    let mut total = 0;
    for row in tx
        .query(
            "SELECT id, count FROM waiting ORDER BY id LIMIT $1",
            &[&limit],
        )
        .await?
    {
        if total >= limit {
            break;
        }
        let count: i64 = row.get(1);
        firsts.push(row.get::<_, i64>(0));
        counts.push(count);
        total += count;
    }
    let found = cache.take(&firsts);
    let (missing_firsts, missing_counts): (Vec<i64>, Vec<i64>) = firsts
        .iter()
        .zip(&counts)
        .zip(&found)
        .filter(|(_, batch)| batch.is_none())
        .map(|((first, count), _)| (*first, *count))
        .unzip();
    let mut read = if missing_firsts.is_empty() {
        Vec::new()
    } else {
        tx.query(
            "SELECT r.id, r.host, r.boot, r.seq, r.line, r.session, r.identity, r.kind, r.time_ns, r.namespace, r.pod, r.outcome
             FROM unnest($1::bigint[], $2::bigint[]) AS b(first, n)
             JOIN records r ON r.id >= b.first AND r.id < b.first + b.n
             ORDER BY r.id",
            &[&missing_firsts, &missing_counts],
        )
        .await?
        .iter()
        .map(|r| Pending {
            id: r.get(0),
            host: r.get::<_, &str>(1).into(),
            boot: r.get::<_, &str>(2).into(),
            seq: r.get(3),
            line: r.get(4),
            session: r.get(5),
            identity: r.get(6),
            is_command: is_command(r.get(7)),
            time_ns: r.get(8),
            namespace: r.get(9),
            pod: r.get(10),
            outcome: r.get(11),
        })
        .collect()
    }
    .into_iter()
    .peekable();
    // The batches' runs are disjoint and in order, and so are the rows read.
    let mut out = Vec::with_capacity(total as usize);
    for ((first, count), batch) in firsts.iter().zip(&counts).zip(found) {
        if let Some(batch) = batch {
            out.extend(batch);
            continue;
        }
        let before = out.len();
        while let Some(p) = read.next_if(|p| p.id < first + count) {
            out.push(p);
        }
        // A batch waits only once one of its records was stored (one statement writes both):
        // a run without any is a database changed by hand, and the round stops rather than
        // skip it or place nothing forever.
        if out.len() == before {
            return Err(PgError::Db(format!(
                "waiting batch of ids {first}..{} has no row in records (were they deleted?)",
                first + count
            )));
        }
    }
    Ok((out, firsts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(id: i64) -> Pending {
        Pending {
            id,
            host: "h".into(),
            boot: "b".into(),
            seq: id,
            line: vec![b'x'; 300],
            session: "s".into(),
            identity: "claude".into(),
            is_command: true,
            time_ns: id,
            namespace: String::new(),
            pod: String::new(),
            outcome: 0,
        }
    }

    fn batch(first: i64) -> Vec<Pending> {
        (first..first + 100).map(pending).collect()
    }

    #[test]
    fn keeps_batches_only_while_enabled_and_within_its_budget() {
        let cache = Unplaced::default();
        cache.add(0, batch(0));
        assert_eq!(cache.len(), 0, "kept while not sequencing");
        cache.set_enabled(true);
        for b in 0..2_000 {
            cache.add(b * 100, batch(b * 100));
        }
        let kept = cache.len();
        assert!(kept > 100 && kept < 2_000, "{kept}");
        assert!(cache.lock().bytes <= BUDGET);
        cache.set_enabled(false);
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.lock().bytes, 0);
    }

    #[test]
    fn takes_what_it_has_and_forgets_what_was_placed_elsewhere() {
        let cache = Unplaced::default();
        cache.set_enabled(true);
        for first in [100, 200, 300, 500, 600] {
            cache.add(first, batch(first));
        }
        let got = cache.take(&[300, 400, 500]);
        assert_eq!(got[0].as_ref().map(|b| b[0].id), Some(300));
        assert!(got[1].is_none());
        assert_eq!(got[2].as_ref().map(Vec::len), Some(100));
        // 100 and 200 are below the round's first batch: placed already, forgotten.
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.lock().bytes, cost(&batch(600)));
    }
}
