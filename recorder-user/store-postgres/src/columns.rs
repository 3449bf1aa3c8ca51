//! What every row of `records` derives from its record (the columns sessions, replays and
//! filters query), one vector per column for `unnest`: written by ingest and by `migrate`.
use recorder_record::{Record, completeness};

/// `records.outcome`: the record reports a failed action.
pub(crate) const FAILED: i16 = 1;
/// `records.outcome`: the record reports a gap.
pub(crate) const GAP: i16 = 2;

#[derive(Default)]
pub(crate) struct RecordColumns {
    pub(crate) session: Vec<String>,
    pub(crate) identity: Vec<String>,
    pub(crate) kind: Vec<&'static str>,
    pub(crate) time_ns: Vec<i64>,
    pub(crate) namespace: Vec<String>,
    pub(crate) pod: Vec<String>,
    pub(crate) outcome: Vec<i16>,
}

impl RecordColumns {
    pub(crate) fn push(&mut self, record: &Record) {
        let workload = record.workload.as_deref();
        self.session.push(record.session.clone());
        self.identity.push(record.identity.clone());
        self.kind.push(record.kind().as_str());
        self.time_ns.push(record.time.unix_ns() as i64);
        self.namespace
            .push(workload.map(|w| w.namespace.clone()).unwrap_or_default());
        self.pod
            .push(workload.map(|w| w.pod_name.clone()).unwrap_or_default());
        self.outcome.push(
            if completeness::failed(record) {
                FAILED
            } else {
                0
            } | if completeness::gap_of(record).is_some() {
                GAP
            } else {
                0
            },
        );
    }
}
