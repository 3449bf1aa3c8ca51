//! The collector's Prometheus metrics. Rates (records/s) are `rate()` of the counters.
use recorder_api::metrics::{Counter, Gauge, Registry};

#[derive(Clone)]
pub(crate) struct CollectorMetrics {
    stored: Counter,
    duplicates: Counter,
    batches: Counter,
    pub records: Gauge,
    /// Certificates the revocation list in force names.
    pub revoked: Gauge,
    /// Revocation lists that changed on disk but could not be taken.
    pub revocation_errors: Counter,
}

impl CollectorMetrics {
    pub(crate) fn new() -> Self {
        let r = Registry::global();
        Self {
            stored: r.counter(
                "recorder_collector_records_stored_total",
                "Records newly stored (ingest rate: rate() of this).",
                &[],
            ),
            duplicates: r.counter(
                "recorder_collector_duplicates_total",
                "Records received again (retries) and stored once.",
                &[],
            ),
            batches: r.counter(
                "recorder_collector_batches_total",
                "Batches received from agents.",
                &[],
            ),
            records: r.gauge("recorder_collector_log_records", "Records in the log.", &[]),
            revoked: r.gauge(
                "recorder_collector_revoked_certificates",
                "Certificates the revocation list in force names (--tls-crl).",
                &[],
            ),
            revocation_errors: r.counter(
                "recorder_collector_revocation_list_errors_total",
                "Revocation lists that changed on disk but were refused (the list in force stays).",
                &[],
            ),
        }
    }

    /// A batch: `placed` of its records are in the log already (the embedded store places at
    /// once; on PostgreSQL the tail counts them as the sequencer places them).
    pub(crate) fn batch(&self, stored: u64, duplicates: u64, placed: u64) {
        self.batches.inc();
        self.stored.add(stored);
        self.duplicates.add(duplicates);
        self.records.set(self.records.get() + placed);
    }

    /// Counts a refusal. The counter of each reason is registered the first time it happens.
    pub(crate) fn rejected(reason: &str) {
        Registry::global()
            .counter(
                "recorder_collector_rejected_total",
                "Connections and calls refused, by reason.",
                &[("reason", reason)],
            )
            .inc();
    }
}

impl Default for CollectorMetrics {
    fn default() -> Self {
        Self::new()
    }
}
