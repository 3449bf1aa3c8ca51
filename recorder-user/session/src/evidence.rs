//! The evidence of one session: the JSON the console's session page reads and an evidence
//! bundle embeds. Records are kept as stored (the line byte for byte, with the fields its leaf
//! hash covers) so that anyone can recompute each leaf and check it against the checkpoint.
use recorder_record::{Record, hex};
use recorder_store::{StoredRecord, index::SessionSummary, integrity::checkpoint::Checkpoint};
use serde::{Deserialize, Serialize};

use crate::Verdict;

/// The format tag; a reader refuses others.
pub const FORMAT: &str = "recorder-evidence/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub format: String,
    /// When the evidence was assembled (RFC 3339).
    pub made: String,
    pub session: SessionView,
    /// As the collector judged it; `check` recomputes it from the records.
    pub verdict: Verdict,
    /// The session's records in log order.
    pub records: Vec<EvidenceRecord>,
    /// Host-wide `loss`/`notice` records of the session's time (gaps that may concern it).
    pub context: Vec<EvidenceRecord>,
    /// The signed checkpoint every proof leads to (none while nothing is signed yet).
    pub checkpoint: Option<CheckpointView>,
    /// The collector's Ed25519 public key, hex.
    pub public_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    pub host: String,
    pub session: String,
    pub identity: String,
    pub first_time: String,
    pub last_time: String,
    pub namespace: String,
    pub pod: String,
}

impl From<&SessionSummary> for SessionView {
    fn from(s: &SessionSummary) -> Self {
        Self {
            host: s.host.clone(),
            session: s.session.clone(),
            identity: s.identity.clone(),
            first_time: s.first_time.to_string(),
            last_time: s.last_time.to_string(),
            namespace: s.namespace.clone(),
            pod: s.pod.clone(),
        }
    }
}

/// One stored record and its place in the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    pub index: u64,
    pub host: String,
    pub boot: String,
    pub sequence: u64,
    /// The stream's previous leaf hash (hex): the hash chain link.
    pub prev: String,
    /// The record's JSON line exactly as stored.
    pub line: String,
    /// The inclusion proof against `checkpoint` (hex hashes); none for a record the checkpoint
    /// does not cover yet.
    pub proof: Option<Vec<String>>,
}

impl EvidenceRecord {
    /// Lines are JSON, so UTF-8; a line that is not is kept lossily (and then fails its check,
    /// as it should: its leaf hash no longer matches).
    pub fn new(r: &StoredRecord, proof: Option<Vec<[u8; 32]>>) -> Self {
        Self {
            index: r.index,
            host: r.host.clone(),
            boot: r.boot.clone(),
            sequence: r.sequence,
            prev: hex::encode(&r.prev),
            line: String::from_utf8_lossy(&r.line).into_owned(),
            proof: proof.map(|p| p.iter().map(|h| hex::encode(h)).collect()),
        }
    }

    /// The stored record it describes, if its parts are well formed.
    pub fn stored(&self) -> Result<StoredRecord, String> {
        let prev = hex::decode(&self.prev)
            .and_then(|p| p.try_into().ok())
            .ok_or("its chain link (prev) is not a 32-byte hex hash")?;
        let record = Record::parse(self.line.as_bytes())
            .map_err(|e| format!("its line is not a record: {e}"))?;
        Ok(StoredRecord {
            index: self.index,
            host: self.host.clone(),
            boot: self.boot.clone(),
            sequence: self.sequence,
            prev,
            record,
            line: self.line.as_bytes().to_vec(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointView {
    pub tree_size: u64,
    /// Hex SHA-256 tree head.
    pub root: String,
    pub time: String,
    /// Hex Ed25519 signature of the checkpoint's signed text (`Checkpoint::signed_text`).
    pub signature: String,
}

impl From<&Checkpoint> for CheckpointView {
    fn from(c: &Checkpoint) -> Self {
        Self {
            tree_size: c.tree_size,
            root: c.root.clone(),
            time: c.time.clone(),
            signature: c.signature.clone(),
        }
    }
}

impl CheckpointView {
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            tree_size: self.tree_size,
            root: self.root.clone(),
            time: self.time.clone(),
            signature: self.signature.clone(),
        }
    }
}
