//! Checking evidence with nothing but itself: the checkpoint's signature under the public key,
//! every record's leaf hash recomputed from its parts and its inclusion proof against the
//! checkpoint's root, the hash chain between consecutive records of a stream, and that every
//! record belongs to the session. Each problem names the record it is about.
use std::collections::HashMap;

use recorder_record::{Record, hex};
use recorder_store::integrity::{Hash, merkle};

use crate::{Evidence, EvidenceRecord, FORMAT, Verdict};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The record's log index, when the problem is about one record.
    pub index: Option<u64>,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "record {i}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// What `check` found.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// Records (of the session and of its context) whose proof checked.
    pub proven: u64,
    /// Records no checkpoint covers yet (they are not evidence until one does).
    pub pending: u64,
    pub problems: Vec<Problem>,
    /// The verdict recomputed from the records.
    pub verdict: Verdict,
}

impl Checked {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.pending == 0
    }
}

pub fn check(e: &Evidence) -> Checked {
    let mut c = Checker {
        problems: Vec::new(),
        proven: 0,
        pending: 0,
        last: HashMap::new(),
    };
    if e.format != FORMAT {
        c.problem(
            None,
            format!(
                "format {:?} is not {FORMAT:?}: not evidence this version reads",
                e.format
            ),
        );
    }
    let signed = c.signed_root(e);
    let mut parsed: Vec<(u64, Record, bool)> = Vec::new();
    let mut previous_index = None;
    for r in &e.records {
        if previous_index.is_some_and(|p| p >= r.index) {
            c.problem(Some(r.index), "records are not in log order".into());
        }
        previous_index = Some(r.index);
        if let Some(record) = c.record(r, signed) {
            if record.session != e.session.session || record.host != e.session.host {
                c.problem(
                    Some(r.index),
                    format!(
                        "belongs to session {:?} on {:?}, not this one",
                        record.session, record.host
                    ),
                );
            }
            parsed.push((r.index, record, true));
        }
    }
    for r in &e.context {
        if let Some(record) = c.record(r, signed) {
            parsed.push((r.index, record, false));
        }
    }
    let verdict = Verdict::of(
        parsed.iter().filter(|p| p.2).map(|(i, r, _)| (*i, r)),
        parsed.iter().filter(|p| !p.2).map(|(i, r, _)| (*i, r)),
    );
    Checked {
        proven: c.proven,
        pending: c.pending,
        problems: c.problems,
        verdict,
    }
}

struct Checker {
    problems: Vec<Problem>,
    proven: u64,
    pending: u64,
    /// The last leaf seen of each stream (host, boot), to check the next record's chain link.
    last: HashMap<(String, String), (u64, Hash)>,
}

impl Checker {
    fn problem(&mut self, index: Option<u64>, what: String) {
        self.problems.push(Problem { index, what });
    }

    /// The signed tree size and root, if the checkpoint's signature holds.
    fn signed_root(&mut self, e: &Evidence) -> Option<(u64, Hash)> {
        let key = hex::decode(&e.public_key).unwrap_or_default();
        match &e.checkpoint {
            None => {
                self.problem(None, "no signed checkpoint: nothing can be proven".into());
                None
            }
            Some(cp) if !cp.checkpoint().verify(&key) => {
                self.problem(
                    None,
                    format!(
                        "the checkpoint of tree size {} is not signed by the public key {}",
                        cp.tree_size, e.public_key
                    ),
                );
                None
            }
            Some(cp) => cp.checkpoint().root_hash().map(|root| (cp.tree_size, root)),
        }
    }

    /// Checks one record: its parts, its chain link, its proof. Returns the record read from
    /// its line, if it is one.
    fn record(&mut self, r: &EvidenceRecord, signed: Option<(u64, Hash)>) -> Option<Record> {
        let index = Some(r.index);
        let stored = match r.stored() {
            Ok(s) => s,
            Err(why) => {
                self.problem(index, why);
                return None;
            }
        };
        if stored.record.host != r.host {
            self.problem(
                index,
                format!(
                    "its line names host {:?}, its entry {:?}",
                    stored.record.host, r.host
                ),
            );
        }
        let leaf = stored.leaf_hash();
        let stream = (r.host.clone(), r.boot.clone());
        if let Some((seq, prev_leaf)) = self.last.get(&stream)
            && *seq + 1 == r.sequence
            && *prev_leaf != stored.prev
        {
            self.problem(
                index,
                "its chain link does not match the stream's previous record".into(),
            );
        }
        self.last.insert(stream, (r.sequence, leaf));
        match (&r.proof, signed) {
            (None, _) => self.pending += 1,
            (Some(_), None) => {}
            (Some(path), Some((size, root))) => {
                let path: Option<Vec<Hash>> = path
                    .iter()
                    .map(|h| hex::decode(h).and_then(|b| b.try_into().ok()))
                    .collect();
                match path {
                    Some(path) if merkle::verify_inclusion(&leaf, r.index, size, &path, &root) => {
                        self.proven += 1;
                    }
                    Some(_) => self.problem(
                        index,
                        format!(
                            "not included in the signed checkpoint of tree size {size}: the \
                             record differs from the one that was signed (leaf {})",
                            hex::encode(&leaf)
                        ),
                    ),
                    None => self.problem(index, "its proof holds a malformed hash".into()),
                }
            }
        }
        Some(stored.record)
    }
}
