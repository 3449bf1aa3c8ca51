//! `replay --prove`: shows that the records printed are the ones in the signed log. For every
//! record the client recomputes its Merkle leaf from the line and its position, fetches an
//! inclusion proof for the latest signed checkpoint, and checks the proof against the
//! checkpoint's root and the checkpoint's Ed25519 signature, so it trusts neither the replayed
//! bytes nor the collector's word.
use std::fmt::Write as _;

use anyhow::{Context as _, bail};
use tonic::transport::Channel;

use crate::client::status;
use recorder_api::proto::v1::{
    GetCheckpointRequest, InclusionProofRequest, StoredRecord, collector_client::CollectorClient,
};
use recorder_record::hex;
use recorder_store::{
    integrity::{Hash, checkpoint::Checkpoint, merkle},
    segment::Entry,
};

/// The record's Merkle leaf, from what the collector returned for it.
fn leaf_of(r: &StoredRecord) -> anyhow::Result<Hash> {
    let prev: Hash = r.prev.as_slice().try_into().with_context(|| {
        format!(
            "record at log index {}: the collector sent no chain link",
            r.index
        )
    })?;
    let entry = Entry {
        index: r.index,
        host: &r.host,
        boot: &r.boot,
        sequence: r.sequence,
        prev,
        line: &r.line,
    };
    Ok(entry.encode_frame(&mut Vec::with_capacity(r.line.len() + 128)))
}

/// Proves every record against the latest signed checkpoint; returns a one-line summary.
pub(crate) async fn prove(
    client: &mut CollectorClient<Channel>,
    records: &[StoredRecord],
    pinned_key: Option<&[u8]>,
) -> anyhow::Result<String> {
    let cp = client
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .map_err(status)?
        .into_inner();
    let key = pinned_key.map_or_else(|| cp.public_key.clone(), <[u8]>::to_vec);
    let signed = Checkpoint {
        tree_size: cp.tree_size,
        root: hex::encode(&cp.root),
        time: cp.time.clone(),
        signature: hex::encode(&cp.signature),
    };
    if !signed.verify(&key) {
        bail!(
            "the latest checkpoint (tree size {}) is not signed by key {}",
            cp.tree_size,
            hex::encode(&key)
        );
    }
    let root: Hash = cp
        .root
        .as_slice()
        .try_into()
        .context("malformed checkpoint root")?;
    let (mut proved, mut newer) = (0u64, 0u64);
    for r in records {
        if r.index >= cp.tree_size {
            newer += 1;
            continue;
        }
        let leaf = leaf_of(r)?;
        let proof = client
            .get_inclusion_proof(InclusionProofRequest {
                index: r.index,
                tree_size: cp.tree_size,
            })
            .await
            .map_err(status)?
            .into_inner();
        let path: Vec<Hash> = proof
            .path
            .iter()
            .map(|h| h.as_slice().try_into())
            .collect::<Result<_, _>>()
            .context("malformed proof")?;
        if !merkle::verify_inclusion(&leaf, r.index, cp.tree_size, &path, &root) {
            bail!(
                "record at log index {} (host {} sequence {}) is NOT in the signed log: its content or position differs from what was recorded",
                r.index,
                r.host,
                r.sequence
            );
        }
        proved += 1;
    }
    let mut summary = format!(
        "proved: {proved} record(s) are in the log signed at tree size {} (root {}, {}, key {})",
        cp.tree_size,
        hex::encode(&root),
        cp.time,
        hex::encode(&key)
    );
    if newer > 0 {
        let _ = write!(
            summary,
            "; {newer} newer record(s) are not covered by a checkpoint yet"
        );
    }
    Ok(summary)
}
