//! Segments deleted by retention, and what stays of them (`pruned/`): a signed ledger entry per
//! segment (`pruned/ledger.jsonl`: the log indexes it held, its streams' ends, the rule that
//! let it go, where it was archived) and its records' leaf hashes (`pruned/NNNNNNNN.leaves`,
//! 32 bytes each). The leaves keep the tree whole: every checkpoint still verifies against the
//! records that remain plus these hashes, and proofs for the remaining records still hold. The
//! streams' ends let the hash chains go on across the gap.
use std::{
    fs::{self, File, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
};

use recorder_record::hex;
use ring::signature::{ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{
    SEGMENT_DIR, Store, StoreError,
    integrity::{
        Hash,
        checkpoint::Signer,
        merkle::{self, NodeId},
    },
    io, scan, segment, sync_dir,
};

pub const PRUNED_DIR: &str = "pruned";
pub const LEDGER_FILE: &str = "ledger.jsonl";

/// One pruned segment, as signed in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunedSegment {
    pub segment: u32,
    /// Log indexes `first_index..end_index` were in it.
    pub first_index: u64,
    pub end_index: u64,
    /// The oldest and newest record times in it.
    pub oldest: String,
    pub newest: String,
    /// Why it could go: the rules that applied to its records, the longest last.
    pub rule: String,
    /// When it was deleted.
    pub time: String,
    /// Where a copy was archived (`URL` of the archive), if one was.
    pub archive: Option<String>,
    /// SHA-256 of its `.leaves` file (hex).
    pub leaves_sha256: String,
    pub streams: Vec<PrunedStream>,
    /// The sessions with records in it, as (host, session): which segments a replay of a
    /// session brings back from the archive where no index of its records is kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<(String, String)>,
    /// Ed25519 signature (hex) of `signed_text()` by the collector's checkpoint key.
    #[serde(default)]
    pub signature: String,
}

/// A (host, boot) stream's part of a pruned segment: where its chain entered and left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunedStream {
    pub host: String,
    pub boot: String,
    pub first_sequence: u64,
    pub last_sequence: u64,
    /// Hex: the chain link of its first record in the segment, and its last record's leaf.
    pub first_prev: String,
    pub last_leaf: String,
    pub records: u64,
}

impl PrunedSegment {
    pub fn records(&self) -> u64 {
        self.end_index - self.first_index
    }

    /// One line for `verify`: which range went, when, why, and where its copy is.
    pub fn describe(&self) -> String {
        format!(
            "segment {}, log index {}..{} ({} records, {} .. {}), deleted {} under {}; {}",
            self.segment,
            self.first_index,
            self.end_index,
            self.records(),
            self.oldest,
            self.newest,
            self.time,
            self.rule,
            self.archive
                .as_deref()
                .map_or("not archived".to_string(), |a| format!("archived to {a}"))
        )
    }

    /// What the signature covers: every field but the signature, as canonical JSON.
    pub fn signed_text(&self) -> String {
        let mut unsigned = self.clone();
        unsigned.signature.clear();
        format!(
            "recorder pruned segment v1\n{}\n",
            serde_json::to_string(&unsigned).unwrap_or_default()
        )
    }

    pub fn sign(&mut self, signer: &Signer) {
        self.signature = hex::encode(&signer.sign_bytes(self.signed_text().as_bytes()));
    }

    pub fn verify(&self, public_key: &[u8]) -> bool {
        let Some(sig) = hex::decode(&self.signature) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(self.signed_text().as_bytes(), &sig)
            .is_ok()
    }
}

pub fn leaves_name(segment: u32) -> String {
    format!("{segment:08}.leaves")
}

pub fn leaves_path(data: &Path, segment: u32) -> PathBuf {
    data.join(PRUNED_DIR).join(leaves_name(segment))
}

/// Where a pruned segment brought back from its archive is kept for reading.
pub fn restored_path(data: &Path, segment: u32) -> PathBuf {
    data.join(PRUNED_DIR)
        .join(crate::segment::segment_name(segment))
}

pub fn leaves_bytes(leaves: &[Hash]) -> Vec<u8> {
    leaves.iter().flat_map(|h| h.iter().copied()).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes))
}

/// Splits a `.leaves` file into hashes; None if its length is not a whole number of them.
pub fn parse_leaves(bytes: &[u8]) -> Option<Vec<Hash>> {
    if !bytes.len().is_multiple_of(32) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap_or([0; 32]))
            .collect(),
    )
}

/// The ledger's entries with their line numbers; unreadable lines are returned as errors
/// for `verify` to report. A missing ledger is an empty one.
pub fn load_ledger(data: &Path) -> std::io::Result<Vec<(usize, Result<PrunedSegment, String>)>> {
    let path = data.join(PRUNED_DIR).join(LEDGER_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| (n + 1, serde_json::from_str(l).map_err(|e| e.to_string())))
        .collect())
}

/// Writes the leaves file and appends the entry to the ledger, both synced: after this the
/// segment file may go.
pub fn record(data: &Path, entry: &PrunedSegment, leaves: &[u8]) -> std::io::Result<()> {
    let dir = data.join(PRUNED_DIR);
    fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!("{}.tmp", leaves_name(entry.segment)));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(leaves)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, leaves_path(data, entry.segment))?;
    let mut ledger = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(LEDGER_FILE))?;
    let line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
    ledger.write_all(format!("{line}\n").as_bytes())?;
    ledger.sync_data()?;
    File::open(&dir)?.sync_all()
}

/// What retention asks of the store.
impl Store {
    /// The segments retention may look at: complete (not the one being written), not pruned.
    pub fn closed_segments(&self) -> Vec<(u32, PathBuf)> {
        scan::list_segments(&self.dir)
            .unwrap_or_default()
            .into_iter()
            .filter(|s| *s < self.current_seg && !self.pruned.contains_key(s))
            .map(|s| (s, self.segment_path(s)))
            .collect()
    }

    /// The pruned segment that held log index `index`: its index range and archive.
    pub fn pruned_segment_of(&self, index: u64) -> Option<(u64, u64, Option<String>)> {
        let (_, seg) = self.pruned_starts.range(..=index).next_back()?;
        let entry = self.pruned.get(seg)?;
        (index < entry.end_index)
            .then(|| (entry.first_index, entry.end_index, entry.archive.clone()))
    }

    pub fn pruned_segments(&self) -> &std::collections::BTreeMap<u32, PrunedSegment> {
        &self.pruned
    }

    /// Checks that `entry` and `leaves` describe closed segment `entry.segment` as the tree
    /// holds it, and signs the entry (with its leaves' hash): what an archive keeps beside the
    /// segment, and what `prune` then records.
    pub fn sign_pruned(
        &self,
        entry: &mut PrunedSegment,
        leaves: &[Hash],
    ) -> Result<(), StoreError> {
        let seg = entry.segment;
        let refuse = |why: String| StoreError::CannotPrune { segment: seg, why };
        if seg >= self.current_seg {
            return Err(refuse("it is the segment being written".into()));
        }
        if self.pruned.contains_key(&seg) {
            return Err(refuse("already pruned".into()));
        }
        if leaves.len() as u64 != entry.records() || entry.end_index > self.len() {
            return Err(refuse("the records described are not the segment's".into()));
        }
        for (i, leaf) in leaves.iter().enumerate() {
            let index = entry.first_index + i as u64;
            let place = self.records.get(index).map_err(io(self.records.path()))?;
            if place.map(|p| p.segment) != Some(seg)
                || self.tree.node(NodeId { level: 0, index })? != *leaf
            {
                return Err(refuse(format!(
                    "log index {index} is not as the tree holds it; not pruned"
                )));
            }
        }
        entry.leaves_sha256 = sha256_hex(&leaves_bytes(leaves));
        entry.sign(&self.signer);
        Ok(())
    }

    /// Deletes a closed segment whose records retention let go, as `sign_pruned` described it:
    /// the signed ledger entry and the leaf hashes are written (and synced) first, then the
    /// file goes.
    pub fn prune(&mut self, entry: PrunedSegment, leaves: &[Hash]) -> Result<(), StoreError> {
        let seg = entry.segment;
        let bytes = leaves_bytes(leaves);
        if self.pruned.contains_key(&seg)
            || !entry.verify(&self.public_key())
            || entry.leaves_sha256 != sha256_hex(&bytes)
        {
            return Err(StoreError::CannotPrune {
                segment: seg,
                why: "the entry is not one sign_pruned made for these leaves".into(),
            });
        }
        record(&self.dir, &entry, &bytes).map_err(io(&self.dir.join(PRUNED_DIR)))?;
        self.readers.remove(&seg);
        let path = self.segment_path(seg);
        fs::remove_file(&path).map_err(io(&path))?;
        sync_dir(&self.dir.join(SEGMENT_DIR))?;
        self.pruned_starts.insert(entry.first_index, seg);
        self.pruned.insert(seg, entry);
        Ok(())
    }

    /// The tree heads that, with the leaves `first..end`, make the head of the tree of `size`
    /// records (see `merkle::range_ranges`).
    pub fn range_proof(
        &self,
        first: u64,
        end: u64,
        size: u64,
    ) -> Result<Option<Vec<Hash>>, StoreError> {
        if size > self.len() {
            return Ok(None);
        }
        let Some(ranges) = merkle::range_ranges(first, end, size) else {
            return Ok(None);
        };
        Ok(Some(self.prove(&ranges)?))
    }

    /// Forgets the open copy of a restored segment (its file is being replaced or removed).
    pub fn drop_reader(&mut self, segment: u32) {
        self.readers.remove(&segment);
    }
}

/// The ledger's valid entries; a segment file still present for one of them (a crash between
/// the ledger's write and the file's removal) is removed now.
pub(crate) fn finish_pruning(
    dir: &Path,
) -> Result<std::collections::BTreeMap<u32, PrunedSegment>, StoreError> {
    let ledger = load_ledger(dir).map_err(io(&dir.join(PRUNED_DIR)))?;
    let mut out = std::collections::BTreeMap::new();
    for (_, entry) in ledger {
        let Ok(entry) = entry else { continue };
        let path = dir
            .join(SEGMENT_DIR)
            .join(segment::segment_name(entry.segment));
        if path.exists() {
            tracing::warn!(
                segment = entry.segment,
                "finishing a deletion a stop interrupted"
            );
            fs::remove_file(&path).map_err(io(&path))?;
        }
        out.insert(entry.segment, entry);
    }
    Ok(out)
}
