//! `recorder alerts test`: alert rules run over a stored log, offline, printing what would have
//! fired, so a rule can be tried before it is turned on. Records before `--from` only feed the
//! rules' memory (windows, values seen), as a collector's history does.
use std::{path::Path, sync::Arc};

use recorder_record::Record;
use recorder_store::{StoredRecord, scan};
use recorder_store_postgres::PgLog;

use crate::{CollectorError, alerts::Engine, rules::Rules};

/// Where the log to try rules on is.
pub enum TrySource<'a> {
    /// An embedded store's data directory (read only).
    Data(&'a Path),
    /// A PostgreSQL log (read only), and the CA of its server certificate.
    Postgres { url: &'a str, ca: Option<&'a Path> },
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Tried {
    pub records: u64,
    pub alerts: u64,
}

/// Runs the rules of `rules` over the log; `out` gets each alert as the webhook body.
pub fn try_rules(
    rules: &Path,
    source: &TrySource<'_>,
    from: u64,
    mut out: impl FnMut(&serde_json::Value),
) -> Result<Tried, CollectorError> {
    let rules = Rules::load(rules)?;
    let engine = Engine::new(rules.rules, Vec::new());
    let mut tried = Tried::default();
    let mut visit = |rec: StoredRecord| {
        tried.records += 1;
        if rec.index < from {
            engine.learn(&rec);
            return;
        }
        for alert in engine.alerts(&Arc::new(rec)) {
            tried.alerts += 1;
            out(&alert.to_json());
        }
    };
    match source {
        TrySource::Data(dir) => {
            let mut bad = None;
            // Records of pruned segments are gone: the rules see what remains.
            scan::scan(dir, None, |v| {
                let Some(entry) = v.entry else { return };
                match Record::parse(entry.line) {
                    Ok(record) => visit(StoredRecord {
                        index: v.index,
                        host: entry.host.to_string(),
                        boot: entry.boot.to_string(),
                        sequence: entry.sequence,
                        prev: entry.prev,
                        record,
                        line: entry.line.to_vec(),
                    }),
                    Err(e) => {
                        bad.get_or_insert(format!("log index {}: not a record: {e}", v.index));
                    }
                }
            })
            .map_err(|e| CollectorError::ReadLog(e.to_string()))?;
            if let Some(why) = bad {
                tracing::warn!("{why}");
            }
        }
        TrySource::Postgres { url, ca } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| CollectorError::ReadLog(format!("starting the async runtime: {e}")))?;
            let pg_error = |error| CollectorError::Postgres {
                url: (*url).to_string(),
                error,
            };
            runtime.block_on(async {
                let (pg, _) = PgLog::open_to_read(url, *ca, None)
                    .await
                    .map_err(pg_error)?;
                let size = pg.placed().await.map_err(pg_error)?;
                let mut next = 0;
                while next < size {
                    let records = pg
                        .read_range(next, size.min(next + 10_000))
                        .await
                        .map_err(pg_error)?;
                    let Some(last) = records.last() else { break };
                    next = last.index + 1;
                    records.into_iter().for_each(&mut visit);
                }
                Ok::<_, CollectorError>(())
            })?;
        }
    }
    Ok(tried)
}
