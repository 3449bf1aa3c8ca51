//! `verify` on PostgreSQL: one read-only snapshot of the database (REPEATABLE READ, so ingest
//! and the sequencer go on meanwhile) read through cursors in log order, with the same checks
//! as the embedded store's scan: each record's leaf hash, its log index, its stream's hash
//! chain and sequence, every checkpoint's signature and root, the signed head, and every stored
//! tree node against the nodes the stored leaf hashes make (so a changed record is reported
//! once, at its leaf, and a changed node at the node).
use std::collections::{BTreeMap, HashMap};

use recorder_record::hex;
use recorder_store::{
    integrity::{
        Hash,
        checkpoint::Checkpoint,
        merkle::{Frontier, NodeId, node_hash},
    },
    pruned::{self, PrunedSegment},
    segment::Entry,
};
use tokio_postgres::{IsolationLevel, Transaction};

use crate::{PgError, PgLog, read};

const FETCH: &str = "5000";

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Verified {
    pub records: u64,
    pub checkpoints: u64,
    /// Records stored but not yet placed (outside the checks: not yet in the log).
    pub waiting: u64,
    pub problems: Vec<String>,
    /// The segments retention deleted (their records' places and leaves checked).
    pub pruned: Vec<PrunedSegment>,
}

/// The stored tree nodes, read in the order appending completes them.
struct StoredNodes<'a> {
    tx: &'a Transaction<'a>,
    buffer: std::collections::VecDeque<(NodeId, Vec<u8>)>,
    done: bool,
}

impl StoredNodes<'_> {
    async fn next(&mut self) -> Result<Option<(NodeId, Vec<u8>)>, PgError> {
        if self.buffer.is_empty() && !self.done {
            let rows = self
                .tx
                .query(&format!("FETCH {FETCH} FROM verify_nodes"), &[])
                .await?;
            self.done = rows.is_empty();
            self.buffer.extend(rows.iter().map(|r| {
                (
                    NodeId {
                        level: r.get::<_, i16>(0) as u8,
                        index: r.get::<_, i64>(1) as u64,
                    },
                    r.get(2),
                )
            }));
        }
        Ok(self.buffer.pop_front())
    }
}

impl PgLog {
    pub async fn verify(&self) -> Result<Verified, PgError> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let key = self.public_key.clone();
        let mut out = Verified::default();
        let head = {
            let row = tx
                .query_one(
                    "SELECT tree_size, root, time, signature FROM log_head WHERE id = 1",
                    &[],
                )
                .await?;
            Checkpoint {
                tree_size: row.get::<_, i64>(0) as u64,
                root: row.get(1),
                time: row.get(2),
                signature: row.get(3),
            }
        };
        if !head.verify(&key) {
            out.problems.push(format!(
                "the signed head (tree size {}) has a bad signature: it was changed",
                head.tree_size
            ));
        }
        let checkpoints = checkpoints(&tx, &key, &mut out).await?;
        out.checkpoints = checkpoints.len() as u64;
        out.waiting = tx
            .query_one(crate::read::WAITING_RECORDS, &[])
            .await?
            .get::<_, i64>(0) as u64;
        orphans(&tx, &mut out).await?;
        let pruned = ledger(&tx, &key, &mut out).await?;
        // Placed records whose row retention deleted come with NULL content.
        tx.batch_execute(&format!(
            "DECLARE verify_records NO SCROLL CURSOR FOR
                 SELECT {} FROM placed p LEFT JOIN records r ON r.id = p.record_id ORDER BY p.log_index;
             DECLARE verify_nodes NO SCROLL CURSOR FOR
                 SELECT level, idx, hash FROM tree_nodes
                 ORDER BY (idx + 1) * (1::bigint << level), level",
            read::RECORD_COLUMNS,
        ))
        .await?;
        let mut nodes = StoredNodes {
            tx: &tx,
            buffer: std::collections::VecDeque::default(),
            done: false,
        };
        let mut walk = Walk {
            frontier: Frontier::default(),
            next_index: 0,
            streams: HashMap::new(),
            buf: Vec::new(),
            checkpoints: checkpoints.into_iter().peekable(),
            head_checked: false,
            pruned,
            current: None,
        };
        let mut node_check = NodeCheck {
            size: 0,
            peaks: Vec::new(),
            stopped: false,
        };
        loop {
            let rows = tx
                .query(&format!("FETCH {FETCH} FROM verify_records"), &[])
                .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let (stored_leaf, index) = walk.record(row, &head, &mut out);
                node_check
                    .push(stored_leaf, index, &mut nodes, &mut out)
                    .await?;
            }
        }
        while !node_check.stopped
            && let Some((id, _)) = nodes.next().await?
        {
            out.problems.push(format!(
                "tree node level {} index {}: stored, but the records do not make it (a node inserted)",
                id.level, id.index
            ));
        }
        walk.finish(&head, &mut out);
        tx.commit().await?;
        Ok(out)
    }
}

/// The signed ledger of pruned segments, by first log index.
async fn ledger(
    tx: &Transaction<'_>,
    key: &[u8],
    out: &mut Verified,
) -> Result<BTreeMap<u64, PrunedSegment>, PgError> {
    let mut found = BTreeMap::new();
    for r in &tx
        .query(
            "SELECT segment, entry FROM pruned ORDER BY first_index",
            &[],
        )
        .await?
    {
        let segment: i64 = r.get(0);
        match serde_json::from_str::<PrunedSegment>(r.get(1)) {
            Ok(e) => {
                if !e.verify(key) || i64::from(e.segment) != segment {
                    out.problems.push(format!(
                        "pruned segment {segment} (log index {}..{}): bad signature: the record of this deletion was altered",
                        e.first_index, e.end_index
                    ));
                }
                found.insert(e.first_index, e);
            }
            Err(e) => out
                .problems
                .push(format!("pruned segment {segment}: unreadable entry ({e})")),
        }
    }
    Ok(found)
}

/// Records neither in the log nor waiting for it: their place was deleted.
async fn orphans(tx: &Transaction<'_>, out: &mut Verified) -> Result<(), PgError> {
    let rows = tx
        .query(
            "SELECT r.id, r.host, r.boot, r.seq FROM records r
             WHERE NOT EXISTS (SELECT 1 FROM placed p WHERE p.record_id = r.id)
               AND NOT EXISTS (SELECT 1 FROM waiting w WHERE r.id >= w.id AND r.id < w.id + w.count)
             ORDER BY r.id LIMIT 100",
            &[],
        )
        .await?;
    for r in &rows {
        out.problems.push(format!(
            "record of host {}, stream {}, sequence {} (row id {}): stored, but neither in the log nor waiting for it (its place was deleted)",
            r.get::<_, String>(1),
            r.get::<_, String>(2),
            r.get::<_, i64>(3),
            r.get::<_, i64>(0)
        ));
    }
    Ok(())
}

/// The checkpoints, in size order, with bad signatures and backwards steps noted.
async fn checkpoints(
    tx: &Transaction<'_>,
    key: &[u8],
    out: &mut Verified,
) -> Result<Vec<Checkpoint>, PgError> {
    let rows = tx
        .query(
            "SELECT tree_size, root, time, signature FROM checkpoints ORDER BY tree_size",
            &[],
        )
        .await?;
    let mut list: Vec<Checkpoint> = Vec::new();
    for r in &rows {
        let cp = Checkpoint {
            tree_size: r.get::<_, i64>(0) as u64,
            root: r.get(1),
            time: r.get(2),
            signature: r.get(3),
        };
        if !cp.verify(key) {
            out.problems.push(format!(
                "checkpoint at tree size {} ({}): bad signature: it was changed",
                cp.tree_size, cp.time
            ));
        }
        if let Some(p) = list.last()
            && cp.time < p.time
        {
            out.problems.push(format!(
                "checkpoint at tree size {}: its time goes back from the checkpoint at tree size {}",
                cp.tree_size, p.tree_size
            ));
        }
        list.push(cp);
    }
    Ok(list)
}

/// The check of the stored tree nodes: each node, as appending completes it, against the hash
/// of its two *stored* children, so one changed node (or leaf hash) is reported once, not on
/// its way up to the root. Stops at the first missing record: past it every position is off.
struct NodeCheck {
    size: u64,
    /// The stored hashes of the perfect subtrees so far (as `Frontier` keeps computed ones).
    peaks: Vec<Hash>,
    stopped: bool,
}

impl NodeCheck {
    async fn push(
        &mut self,
        leaf: Hash,
        index: u64,
        nodes: &mut StoredNodes<'_>,
        out: &mut Verified,
    ) -> Result<(), PgError> {
        if self.stopped {
            return Ok(());
        }
        if index != self.size {
            self.stopped = true;
            out.problems.push(format!(
                "tree nodes above log index {} not checked: records are missing below them",
                self.size
            ));
            return Ok(());
        }
        let mut node = leaf;
        let mut size = self.size;
        let mut level = 0u8;
        while size & 1 == 1 {
            let left = self.peaks.pop().unwrap_or(node);
            let made = node_hash(&left, &node);
            size >>= 1;
            level += 1;
            let id = NodeId {
                level,
                index: self.size >> level,
            };
            node = check_node(nodes, id, made, out).await?;
        }
        self.peaks.push(node);
        self.size += 1;
        Ok(())
    }
}

/// Compares the node its children make with the next stored one; returns the stored hash when
/// there is one (what its parent is made of), else the made one.
async fn check_node(
    nodes: &mut StoredNodes<'_>,
    id: NodeId,
    made: Hash,
    out: &mut Verified,
) -> Result<Hash, PgError> {
    Ok(match nodes.next().await? {
        Some((stored, h)) if stored == id => {
            if h.as_slice() != made {
                out.problems.push(format!(
                    "tree node level {} index {}: differs from the hashes of its children (proofs through it would fail)",
                    id.level, id.index
                ));
            }
            Hash::try_from(h.as_slice()).unwrap_or(made)
        }
        Some((stored, _)) => {
            out.problems.push(format!(
                "tree node level {} index {}: missing or out of place (found level {} index {} instead)",
                id.level, id.index, stored.level, stored.index
            ));
            made
        }
        None => {
            out.problems.push(format!(
                "tree node level {} index {}: missing",
                id.level, id.index
            ));
            made
        }
    })
}

/// The walk through the records in log order.
struct Walk<I: Iterator<Item = Checkpoint>> {
    /// The tree of the leaves recomputed from the records: checked against the signatures.
    frontier: Frontier,
    /// The log index the next record should have.
    next_index: u64,
    /// Each stream's last (sequence, computed leaf).
    streams: HashMap<(String, String), (u64, Hash)>,
    buf: Vec<u8>,
    checkpoints: std::iter::Peekable<I>,
    head_checked: bool,
    /// The signed ledger entries not reached yet, by first log index.
    pruned: BTreeMap<u64, PrunedSegment>,
    /// The pruned segment being walked, and its stored leaves so far.
    current: Option<(PrunedSegment, Vec<u8>)>,
}

impl<I: Iterator<Item = Checkpoint>> Walk<I> {
    /// Checks one record; returns its stored leaf hash and log index, for the node check.
    fn record(
        &mut self,
        row: &tokio_postgres::Row,
        head: &Checkpoint,
        out: &mut Verified,
    ) -> (Hash, u64) {
        let expected = self.next_index;
        let index = row.get::<_, i64>(0) as u64;
        self.next_index = index + 1;
        let Some(host) = row.get::<_, Option<&str>>(1) else {
            return self.pruned_record(row, expected, head, out);
        };
        let boot: &str = row.get(2);
        let sequence = row.get::<_, i64>(3) as u64;
        let prev = Hash::try_from(row.get::<_, &[u8]>(4)).unwrap_or_default();
        let line: &[u8] = row.get(5);
        let stored_leaf: Option<&[u8]> = Some(row.get(6));
        let name = format!("log index {index} (host {host}, stream {boot}, sequence {sequence})");
        if index > expected {
            out.problems.push(format!(
                "log index {expected}{}: missing (rows deleted)",
                if index - 1 > expected {
                    format!("..{}", index - 1)
                } else {
                    String::new()
                }
            ));
        }
        if index >= head.tree_size {
            out.problems.push(format!(
                "{name}: beyond the signed head (tree size {}): not placed by a sequencer (a row inserted)",
                head.tree_size
            ));
        }
        self.buf.clear();
        let leaf = Entry {
            index,
            host,
            boot,
            sequence,
            prev,
            line,
        }
        .encode_frame(&mut self.buf);
        if stored_leaf != Some(leaf.as_slice()) {
            out.problems.push(format!(
                "{name}: its content or place changed (it no longer hashes to its stored leaf)"
            ));
        }
        let key = (host.to_string(), boot.to_string());
        let end = self.streams.get(&key).copied();
        let chain_end = end.map_or([0; 32], |e| e.1);
        if prev != chain_end {
            out.problems.push(format!(
                "{name}: hash chain broken: it links to {}, but its stream's previous record hashes to {} (records deleted, changed or reordered)",
                short(&prev),
                short(&chain_end)
            ));
        }
        if let Some((last, _)) = end
            && sequence <= last
        {
            out.problems.push(format!(
                "{name}: sequence not after its stream's previous one ({last})"
            ));
        }
        self.streams.insert(key, (sequence, leaf));
        out.records += 1;
        self.frontier.push(leaf);
        self.check_roots(head, out);
        let stored_leaf = stored_leaf
            .and_then(|l| Hash::try_from(l).ok())
            .unwrap_or(leaf);
        (stored_leaf, index)
    }

    /// A placed record whose row retention deleted: a signed ledger entry must cover it; its
    /// stored leaf stands in the tree, and the entry's stream ends carry the chains over.
    fn pruned_record(
        &mut self,
        row: &tokio_postgres::Row,
        expected: u64,
        head: &Checkpoint,
        out: &mut Verified,
    ) -> (Hash, u64) {
        let index = row.get::<_, i64>(0) as u64;
        let leaf = Hash::try_from(row.get::<_, &[u8]>(6)).unwrap_or_default();
        if index != expected {
            out.problems.push(format!(
                "log index {expected}..{}: missing (rows deleted)",
                index.saturating_sub(1)
            ));
        }
        if self.current.is_none() {
            match self.pruned.remove(&index) {
                Some(entry) => {
                    self.enter_pruned(&entry, out);
                    self.current = Some((entry, Vec::new()));
                }
                None => out.problems.push(format!(
                    "log index {index}: its record's row was deleted, and no signed entry of retention covers it"
                )),
            }
        }
        if let Some((entry, leaves)) = &mut self.current {
            leaves.extend_from_slice(&leaf);
            if index + 1 >= entry.end_index {
                if pruned::sha256_hex(leaves) != entry.leaves_sha256 {
                    out.problems.push(format!(
                        "pruned segment {} (log index {}..{}): its stored leaf hashes are not those the entry signed",
                        entry.segment, entry.first_index, entry.end_index
                    ));
                }
                if let Some((entry, _)) = self.current.take() {
                    out.pruned.push(entry);
                }
            }
        }
        out.records += 1;
        self.frontier.push(leaf);
        self.check_roots(head, out);
        (leaf, index)
    }

    /// Each stream of a pruned segment: its chain must enter where the stream stood, and
    /// goes on from where the entry says it left.
    fn enter_pruned(&mut self, entry: &PrunedSegment, out: &mut Verified) {
        for s in &entry.streams {
            let key = (s.host.clone(), s.boot.clone());
            let (last_seq, last_leaf) = self.streams.get(&key).copied().unwrap_or((0, [0; 32]));
            if hex::encode(&last_leaf) != s.first_prev
                || (last_seq > 0 && s.first_sequence <= last_seq)
            {
                out.problems.push(format!(
                    "pruned segment {}, host {} stream {}: its chain does not continue from the stream's previous record",
                    entry.segment, s.host, s.boot
                ));
            }
            let leaf = hex::decode(&s.last_leaf)
                .and_then(|h| h.try_into().ok())
                .unwrap_or_default();
            self.streams.insert(key, (s.last_sequence, leaf));
        }
    }

    /// Compares the tree head at each checkpoint's size (and the signed head's).
    fn check_roots(&mut self, head: &Checkpoint, out: &mut Verified) {
        let size = self.frontier.size();
        while let Some(cp) = self.checkpoints.next_if(|cp| cp.tree_size <= size) {
            if cp.tree_size == size && Some(self.frontier.root()) != cp.root_hash() {
                out.problems.push(format!(
                    "checkpoint at tree size {} ({}): the Merkle root differs from the records stored now: a record below log index {} was changed, removed or moved",
                    cp.tree_size, cp.time, cp.tree_size
                ));
            }
        }
        if size == head.tree_size && !self.head_checked {
            self.head_checked = true;
            if Some(self.frontier.root()) != head.root_hash() {
                out.problems.push(format!(
                    "the signed head (tree size {}): its root differs from the records stored now",
                    head.tree_size
                ));
            }
        }
    }

    fn finish(mut self, head: &Checkpoint, out: &mut Verified) {
        let size = self.frontier.size();
        for cp in self.checkpoints.by_ref() {
            out.problems.push(format!(
                "checkpoint at tree size {}: signed, but the log holds {size} records (records removed from the end)",
                cp.tree_size
            ));
        }
        if size < head.tree_size {
            out.problems.push(format!(
                "the signed head says {} records, but the log holds {size} (records removed from the end)",
                head.tree_size
            ));
        }
        if size == 0 && head.tree_size == 0 && !self.head_checked {
            self.head_checked = true;
        }
    }
}

fn short(h: &Hash) -> String {
    format!("{}…", hex::encode(&h[..8]))
}
