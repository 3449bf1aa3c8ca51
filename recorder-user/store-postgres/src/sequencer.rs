//! The sequencer: the one collector of the group that gives waiting records their place in the
//! log. Each round is one transaction: lock the head, take the oldest waiting records, give
//! each its log index, the leaf hash of its stream's previous record (the chain link) and its
//! own leaf hash (the same entry encoding as the embedded store, so a migrated log keeps its
//! roots), store the tree nodes they complete, and sign the new head.
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use recorder_record::Timestamp;
use recorder_store::{
    integrity::{
        Hash,
        checkpoint::{Checkpoint, Signer},
        merkle::{self, Frontier},
    },
    segment::Entry,
};
use tokio::sync::watch;
use tokio_postgres::{Client, Transaction};

use crate::{
    PgError, PgLog,
    unplaced::{self, Pending, Unplaced},
};

/// How long a sequencer's lease lasts unless renewed: the longest the log goes unsequenced
/// when the sequencer dies without a word.
pub const LEASE: Duration = Duration::from_secs(3);
/// The holder renews this often.
const RENEW: Duration = Duration::from_secs(1);
/// A collector without the lease asks for it this often.
const SEEK: Duration = Duration::from_millis(500);
/// Records placed per round: whole batches, until this many.
const ROUND_MAX: i64 = 5_000;
/// Pause when nothing waits.
const IDLE: Duration = Duration::from_millis(20);

/// Writes the empty log's signed head if the database has none.
pub(crate) async fn init_head(client: &Client, signer: &Signer) -> Result<(), PgError> {
    let cp = signer.sign(0, &merkle::empty_root(), Timestamp::now().to_string());
    client
        .execute(
            "INSERT INTO log_head (id, tree_size, peaks, root, time, signature)
             VALUES (1, 0, ''::bytea, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
            &[&cp.root, &cp.time, &cp.signature],
        )
        .await?;
    Ok(())
}

/// One collector's part in sequencing: seeks the lease, and while it holds it, places records
/// and publishes checkpoints as the policy says.
pub struct Sequencer {
    log: PgLog,
    signer: Arc<Signer>,
    /// This collector, as the lease names it.
    name: String,
    renewed: Option<Instant>,
    /// Whether this collector holds the lease, for the rest of the collector to read.
    leading: Arc<AtomicBool>,
    /// The size and time of the last published checkpoint this sequencer knows of.
    last_checkpoint: Option<(u64, Instant)>,
}

impl Sequencer {
    /// Fails on a log opened to read only.
    pub fn new(log: PgLog, name: String, leading: Arc<AtomicBool>) -> Result<Self, PgError> {
        Ok(Self {
            signer: log.signer()?,
            log,
            name,
            renewed: None,
            leading,
            last_checkpoint: None,
        })
    }

    pub fn is_leader(&self) -> bool {
        self.renewed.is_some_and(|at| at.elapsed() < LEASE)
    }

    /// Runs until `stop` turns true. A failing database is logged and retried: the records
    /// wait in their table, nothing is lost.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut failing = false;
        loop {
            if *stop.borrow() {
                break;
            }
            let pause = match self.step().await {
                Ok(more) => {
                    if failing {
                        tracing::info!("the database answers again; sequencing goes on");
                        failing = false;
                    }
                    if more {
                        Duration::ZERO
                    } else if self.is_leader() {
                        IDLE
                    } else {
                        SEEK
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "sequencing failed; retrying");
                        failing = true;
                    }
                    self.renewed = None;
                    self.leading.store(false, Ordering::Relaxed);
                    self.log.unplaced.set_enabled(false);
                    Duration::from_millis(500)
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => {}
                }
            }
        }
        if self.is_leader() {
            match self.publish(true).await {
                Ok(Some(cp)) => {
                    tracing::info!(tree_size = cp.tree_size, root = %cp.root, "final checkpoint written");
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "cannot write the final checkpoint"),
            }
            // Hand over at once rather than after the lease runs out.
            if let Ok(client) = self.log.client().await {
                let _ = client
                    .execute(
                        "DELETE FROM sequencer_lease WHERE id = 1 AND holder = $1",
                        &[&self.name],
                    )
                    .await;
            }
        }
    }

    /// One turn: keep or seek the lease; if held, place one round and publish a checkpoint if
    /// due. True when more records wait.
    pub async fn step(&mut self) -> Result<bool, PgError> {
        let due = self.renewed.is_none_or(|at| at.elapsed() >= RENEW);
        if due {
            let was = self.is_leader();
            let held = self.claim_lease().await?;
            self.renewed = held.then(Instant::now);
            self.leading.store(held, Ordering::Relaxed);
            self.log.unplaced.set_enabled(held);
            if held && !was {
                tracing::info!(collector = %self.name, "this collector sequences the log now");
                self.last_checkpoint = None;
            } else if was && !held {
                tracing::warn!(collector = %self.name, "lost the sequencer lease");
            }
        }
        if !self.is_leader() {
            return Ok(false);
        }
        let placed = {
            let mut client = self.log.client().await?;
            place(&mut client, &self.signer, &self.log.unplaced).await?
        };
        self.publish(false).await?;
        Ok(placed as i64 >= ROUND_MAX)
    }

    async fn claim_lease(&self) -> Result<bool, PgError> {
        let client = self.log.client().await?;
        let ms = LEASE.as_millis() as i64;
        let rows = client
            .query(
                "INSERT INTO sequencer_lease AS l (id, holder, expires)
                 VALUES (1, $1, now() + $2::bigint * interval '1 millisecond')
                 ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, expires = EXCLUDED.expires
                 WHERE l.holder = EXCLUDED.holder OR l.expires < now()
                 RETURNING holder",
                &[&self.name, &ms],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Publishes the signed head as a checkpoint when the policy says (or `now`).
    async fn publish(&mut self, now: bool) -> Result<Option<Checkpoint>, PgError> {
        let client = self.log.client().await?;
        let (last_size, last_at) = if let Some(c) = self.last_checkpoint {
            c
        } else {
            let row = client
                .query_one("SELECT max(tree_size) FROM checkpoints", &[])
                .await?;
            let size = row.get::<_, Option<i64>>(0).unwrap_or(0) as u64;
            *self.last_checkpoint.insert((size, Instant::now()))
        };
        let head = crate::read::head(&client).await?;
        let policy = self.log.policy;
        let grown = head.tree_size > last_size;
        let due = now
            || head.tree_size - last_size.min(head.tree_size) >= policy.every_records
            || last_at.elapsed() >= policy.every;
        if !grown || !due {
            if !grown {
                self.last_checkpoint = Some((last_size, Instant::now()));
            }
            return Ok(None);
        }
        let written = client
            .execute(
                "INSERT INTO checkpoints (tree_size, root, time, signature)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tree_size) DO NOTHING",
                &[
                    &(head.tree_size as i64),
                    &head.root,
                    &head.time,
                    &head.signature,
                ],
            )
            .await?;
        self.last_checkpoint = Some((head.tree_size, Instant::now()));
        // Another sequencer may have published this head already.
        Ok((written == 1).then_some(head))
    }
}

/// The running sums of one session over a round.
struct SessionSums {
    identity: String,
    first_ns: i64,
    last_ns: i64,
    commands: i64,
    records: i64,
    namespace: String,
    pod: String,
    failed: i64,
    gaps: i64,
}

/// Records given their place and the tree nodes they complete, one vector per column, for
/// `unnest`: what a round writes, and what `recorder migrate` writes for the records it copies.
#[derive(Default)]
pub(crate) struct Placed {
    pub(crate) ids: Vec<i64>,
    pub(crate) indexes: Vec<i64>,
    pub(crate) prevs: Vec<Vec<u8>>,
    pub(crate) leaves: Vec<Vec<u8>>,
    pub(crate) node_levels: Vec<i16>,
    pub(crate) node_indexes: Vec<i64>,
    pub(crate) node_hashes: Vec<Vec<u8>>,
}

impl Placed {
    /// Writes the placements and the tree nodes.
    pub(crate) async fn insert(&self, tx: &Transaction<'_>) -> Result<(), PgError> {
        tx.execute(
            "INSERT INTO placed (log_index, record_id, prev, leaf)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[])",
            &[&self.indexes, &self.ids, &self.prevs, &self.leaves],
        )
        .await?;
        if !self.node_levels.is_empty() {
            tx.execute(
                "INSERT INTO tree_nodes (level, idx, hash)
                 SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])",
                &[&self.node_levels, &self.node_indexes, &self.node_hashes],
            )
            .await?;
        }
        Ok(())
    }
}

/// One round: places the oldest waiting batches, about `ROUND_MAX` records. Returns how many.
async fn place(client: &mut Client, signer: &Signer, cache: &Unplaced) -> Result<usize, PgError> {
    let tx = client.transaction().await?;
    let head = tx
        .query_one(
            "SELECT tree_size, peaks, time FROM log_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await?;
    let size = head.get::<_, i64>(0) as u64;
    let peaks: Vec<u8> = head.get(1);
    let head_time: String = head.get(2);
    let mut frontier = Frontier::from_peaks(
        size,
        peaks
            .chunks_exact(32)
            .filter_map(|c| Hash::try_from(c).ok())
            .collect(),
    )
    .ok_or_else(|| {
        PgError::Db(format!(
            "log_head: its peaks do not fit a tree of {size} records (the row was changed)"
        ))
    })?;
    let (rows, batches) = unplaced::oldest(&tx, cache, ROUND_MAX).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut streams = stream_ends(&tx, &rows).await?;
    let mut sessions: HashMap<(Arc<str>, String), SessionSums> = HashMap::new();
    let mut host_gaps = HostGaps::default();
    let mut placed = Placed::default();
    let mut buf = Vec::new();
    for row in rows {
        let index = frontier.size();
        let end = streams
            .entry((row.host.clone(), row.boot.clone()))
            .or_insert((0, [0; 32]));
        buf.clear();
        let leaf = Entry {
            index,
            host: &row.host,
            boot: &row.boot,
            sequence: row.seq as u64,
            prev: end.1,
            line: &row.line,
        }
        .encode_frame(&mut buf);
        placed.ids.push(row.id);
        placed.indexes.push(index as i64);
        placed.prevs.push(end.1.to_vec());
        placed.leaves.push(leaf.to_vec());
        *end = (row.seq, leaf);
        frontier.push_with(leaf, |id, hash| {
            placed.node_levels.push(i16::from(id.level));
            placed.node_indexes.push(id.index as i64);
            placed.node_hashes.push(hash.to_vec());
        });
        add_to_session(&mut sessions, &mut host_gaps, index, row);
    }
    tx.execute("DELETE FROM waiting WHERE id = ANY($1)", &[&batches])
        .await?;
    write_round(&tx, &placed, &streams, &sessions).await?;
    host_gaps.insert(&tx).await?;
    // A head's time never goes back, whichever collector's clock signs it.
    let time = Timestamp::now().to_string().max(head_time);
    let cp = signer.sign(frontier.size(), &frontier.root(), time);
    let peaks: Vec<u8> = frontier.peaks().concat();
    tx.execute(
        "UPDATE log_head SET tree_size = $1, peaks = $2, root = $3, time = $4, signature = $5 WHERE id = 1",
        &[&(cp.tree_size as i64), &peaks, &cp.root, &cp.time, &cp.signature],
    )
    .await?;
    tx.commit().await?;
    Ok(placed.ids.len())
}

/// Each (host, boot) stream's last placed sequence and leaf hash.
type StreamEnds = HashMap<(Arc<str>, Arc<str>), (i64, Hash)>;

/// The hash-chain ends of the streams that have records in this round.
async fn stream_ends(tx: &Transaction<'_>, rows: &[Pending]) -> Result<StreamEnds, PgError> {
    let mut keys: Vec<(&str, &str)> = rows.iter().map(|r| (&*r.host, &*r.boot)).collect();
    keys.sort_unstable();
    keys.dedup();
    let (hosts, boots): (Vec<&str>, Vec<&str>) = keys.into_iter().unzip();
    let found = tx
        .query(
            "SELECT s.host, s.boot, s.last_seq, s.last_leaf FROM streams s
             JOIN unnest($1::text[], $2::text[]) AS k(host, boot) ON s.host = k.host AND s.boot = k.boot",
            &[&hosts, &boots],
        )
        .await?;
    Ok(found
        .iter()
        .map(|r| {
            let leaf: &[u8] = r.get(3);
            (
                (r.get::<_, &str>(0).into(), r.get::<_, &str>(1).into()),
                (r.get(2), Hash::try_from(leaf).unwrap_or_default()),
            )
        })
        .collect())
}

/// The gaps of no session a round places, for `host_gaps`.
#[derive(Default)]
struct HostGaps {
    index: Vec<i64>,
    host: Vec<String>,
    identity: Vec<String>,
    time_ns: Vec<i64>,
}

impl HostGaps {
    async fn insert(&self, tx: &Transaction<'_>) -> Result<(), PgError> {
        if self.index.is_empty() {
            return Ok(());
        }
        tx.execute(
            "INSERT INTO host_gaps (log_index, host, identity, time_ns)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])",
            &[&self.index, &self.host, &self.identity, &self.time_ns],
        )
        .await?;
        Ok(())
    }
}

fn add_to_session(
    sessions: &mut HashMap<(Arc<str>, String), SessionSums>,
    host_gaps: &mut HostGaps,
    index: u64,
    row: Pending,
) {
    if row.session.is_empty() {
        if row.outcome & crate::columns::GAP != 0 {
            host_gaps.index.push(index as i64);
            host_gaps.host.push(row.host.to_string());
            host_gaps.identity.push(row.identity);
            host_gaps.time_ns.push(row.time_ns);
        }
        return;
    }
    let time_ns = row.time_ns;
    let s = sessions
        .entry((row.host, row.session))
        .or_insert_with(|| SessionSums {
            identity: row.identity,
            first_ns: time_ns,
            last_ns: time_ns,
            commands: 0,
            records: 0,
            namespace: String::new(),
            pod: String::new(),
            failed: 0,
            gaps: 0,
        });
    s.failed += i64::from(row.outcome & crate::columns::FAILED != 0);
    s.gaps += i64::from(row.outcome & crate::columns::GAP != 0);
    s.first_ns = s.first_ns.min(time_ns);
    s.last_ns = s.last_ns.max(time_ns);
    s.commands += i64::from(row.is_command);
    s.records += 1;
    if s.pod.is_empty() && !row.pod.is_empty() {
        s.namespace = row.namespace;
        s.pod = row.pod;
    }
}

/// The session sums of a round, one vector per column, for `unnest`.
#[derive(Default)]
struct SessionColumns<'a> {
    host: Vec<&'a str>,
    session: Vec<&'a str>,
    identity: Vec<&'a str>,
    first_ns: Vec<i64>,
    last_ns: Vec<i64>,
    commands: Vec<i64>,
    records: Vec<i64>,
    namespace: Vec<&'a str>,
    pod: Vec<&'a str>,
    failed: Vec<i64>,
    gaps: Vec<i64>,
}

async fn write_round(
    tx: &Transaction<'_>,
    placed: &Placed,
    streams: &StreamEnds,
    sessions: &HashMap<(Arc<str>, String), SessionSums>,
) -> Result<(), PgError> {
    placed.insert(tx).await?;
    let (mut hosts, mut boots, mut seqs, mut leaves) = (vec![], vec![], vec![], vec![]);
    for ((host, boot), (seq, leaf)) in streams {
        hosts.push(&**host);
        boots.push(&**boot);
        seqs.push(*seq);
        leaves.push(leaf.to_vec());
    }
    tx.execute(
        "INSERT INTO streams (host, boot, last_seq, last_leaf)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bytea[])
         ON CONFLICT (host, boot) DO UPDATE SET last_seq = EXCLUDED.last_seq, last_leaf = EXCLUDED.last_leaf",
        &[&hosts, &boots, &seqs, &leaves],
    )
    .await?;
    if sessions.is_empty() {
        return Ok(());
    }
    let mut c = SessionColumns::default();
    for ((host, session), s) in sessions {
        c.host.push(&**host);
        c.session.push(session);
        c.identity.push(&s.identity);
        c.first_ns.push(s.first_ns);
        c.last_ns.push(s.last_ns);
        c.commands.push(s.commands);
        c.records.push(s.records);
        c.namespace.push(&s.namespace);
        c.pod.push(&s.pod);
        c.failed.push(s.failed);
        c.gaps.push(s.gaps);
    }
    tx.execute(
        "INSERT INTO sessions AS s (host, session, identity, first_ns, last_ns, commands, records, namespace, pod, failed, gaps)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::bigint[], $11::bigint[])
         ON CONFLICT (host, session) DO UPDATE SET
             first_ns = LEAST(s.first_ns, EXCLUDED.first_ns),
             last_ns = GREATEST(s.last_ns, EXCLUDED.last_ns),
             commands = s.commands + EXCLUDED.commands,
             records = s.records + EXCLUDED.records,
             failed = s.failed + EXCLUDED.failed,
             gaps = s.gaps + EXCLUDED.gaps,
             namespace = CASE WHEN s.pod = '' THEN EXCLUDED.namespace ELSE s.namespace END,
             pod = CASE WHEN s.pod = '' THEN EXCLUDED.pod ELSE s.pod END",
        &[
            &c.host,
            &c.session,
            &c.identity,
            &c.first_ns,
            &c.last_ns,
            &c.commands,
            &c.records,
            &c.namespace,
            &c.pod,
            &c.failed,
            &c.gaps,
        ],
    )
    .await?;
    Ok(())
}
