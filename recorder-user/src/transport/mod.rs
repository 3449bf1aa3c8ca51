//! Between hosts: mTLS setup for the collector and its clients, the agent's sender, and the
//! conversions between stored records and their wire form.
pub mod sender;
pub mod tls;

use crate::{proto::v1, store::StoredRecord};

impl From<&StoredRecord> for v1::StoredRecord {
    fn from(r: &StoredRecord) -> Self {
        v1::StoredRecord {
            index: r.index,
            host: r.host.clone(),
            boot: r.boot.clone(),
            sequence: r.sequence,
            kind: r.fields.kind.clone(),
            identity: r.fields.identity.clone(),
            session: r.fields.session.clone(),
            time: r.fields.time.clone(),
            line: r.line.clone(),
            prev: r.prev.to_vec(),
        }
    }
}
