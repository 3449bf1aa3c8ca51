//! Stored records in their wire form.
use recorder_api::proto::v1;
use recorder_store::StoredRecord;

/// A stored record as the API sends it: the line as the agent sent it, with its place in the
/// log and the fields operators filter on.
pub(crate) fn stored_record(r: &StoredRecord) -> v1::StoredRecord {
    v1::StoredRecord {
        index: r.index,
        host: r.host.clone(),
        boot: r.boot.clone(),
        sequence: r.sequence,
        kind: r.record.kind().as_str().to_string(),
        identity: r.record.identity.clone(),
        session: r.record.session.clone(),
        time: r.record.time.to_string(),
        line: r.line.clone(),
        prev: r.prev.to_vec(),
    }
}
