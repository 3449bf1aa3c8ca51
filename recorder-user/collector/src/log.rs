//! The log behind the service: the embedded store (one collector, one data directory) or the
//! PostgreSQL store (a group of collectors on one database). The service asks this one type;
//! the differences stay here.
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use recorder_record::Record;
use recorder_store::{
    Store, StoreError, StoredRecord,
    index::{SessionFilter, SessionSummary},
    integrity::{Hash, checkpoint::Checkpoint},
    scan, segment,
};
use recorder_store_postgres::{PgError, PgLog};
use tonic::Status;

#[derive(Clone)]
pub(crate) enum Log {
    Embedded(Arc<Mutex<Store>>, Restorer),
    Postgres(PgLog, Restorer),
}

/// With retention: brings pruned segments back from the archive when a reader asks for their
/// records (set once the pruner has started).
pub(crate) type Restorer = Arc<OnceLock<Arc<recorder_retention::Pruner>>>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum LogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error("{0}")]
    Task(String),
}

impl LogError {
    pub(crate) fn is_bad_record(&self) -> bool {
        matches!(
            self,
            LogError::Store(StoreError::BadRecord { .. }) | LogError::Pg(PgError::BadRecord { .. })
        )
    }
}

impl From<LogError> for Status {
    fn from(e: LogError) -> Self {
        if e.is_bad_record() {
            return Status::invalid_argument(e.to_string());
        }
        tracing::error!(error = %e, "store error");
        match e {
            // The database may come back: the agent keeps its records and retries (or fails
            // over to another collector).
            LogError::Pg(PgError::Db(_)) => Status::unavailable(e.to_string()),
            _ => Status::internal(e.to_string()),
        }
    }
}

/// What one batch did.
#[derive(Debug, Default)]
pub(crate) struct Ingested {
    pub stored: u64,
    pub duplicates: u64,
    /// The stream's highest stored sequence.
    pub acked: Option<u64>,
    /// The records placed in the log by this call (embedded store; on PostgreSQL records are
    /// placed later by the sequencer and reach watchers from the tail).
    pub placed: Vec<StoredRecord>,
}

/// What `verify` found.
pub(crate) struct Verified {
    pub records: u64,
    pub checkpoints: u64,
    pub problems: Vec<String>,
    /// The segments retention deleted, one line each.
    pub pruned: Vec<String>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LogError::Task(e.to_string()))?
}

pub(crate) fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads records of the embedded store by log index, the lock taken per record (readers never
/// hold ingest up for more than one record's read). A record of a pruned segment is read from
/// the archive's copy, brought back once; one that cannot be is skipped, and said so in the log.
pub(crate) async fn read_embedded(
    store: &Arc<Mutex<Store>>,
    restorer: &Restorer,
    indexes: Vec<u64>,
) -> Result<Vec<StoredRecord>, LogError> {
    let mut out = Vec::with_capacity(indexes.len());
    let mut at = 0;
    while at < indexes.len() {
        let (store_, todo) = (store.clone(), indexes[at..].to_vec());
        let (mut got, stopped) = blocking(move || {
            let mut got = Vec::new();
            for i in todo {
                match lock(&store_).read(i) {
                    Ok(r) => got.push(r),
                    Err(StoreError::Pruned {
                        segment, archive, ..
                    }) => {
                        return Ok((got, Some((i, segment, archive))));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok((got, None))
        })
        .await?;
        at += got.len();
        out.append(&mut got);
        let Some((index, segment, archive)) = stopped else {
            break;
        };
        let restored = match (restorer.get(), archive) {
            (Some(pruner), Some(_)) => pruner.restore(segment).await,
            (_, None) => Err(format!("segment {segment} was pruned without an archive")),
            (None, Some(url)) => Err(format!(
                "segment {segment} is archived to {url} and retention is not configured here"
            )),
        };
        if let Err(why) = restored {
            tracing::warn!(log_index = index, %why, "a pruned record cannot be read back; skipped");
            // Skip every asked record of that segment.
            let end = lock(store)
                .pruned_segment_of(index)
                .map_or(index + 1, |(_, end, _)| end);
            while at < indexes.len() && indexes[at] < end {
                at += 1;
            }
        }
    }
    Ok(out)
}

impl Log {
    pub(crate) async fn append(
        &self,
        host: String,
        boot: String,
        first_sequence: u64,
        lines: Vec<Vec<u8>>,
        check: impl Fn(&Record) -> Result<(), String> + Send + 'static,
    ) -> Result<Ingested, LogError> {
        match self {
            Log::Embedded(store, _) => {
                let store = store.clone();
                blocking(move || {
                    let mut store = lock(&store);
                    let out = store.append(&host, &boot, first_sequence, &lines, check)?;
                    Ok(Ingested {
                        stored: out.stored.len() as u64,
                        duplicates: out.duplicates,
                        acked: store.acked(&host, &boot),
                        placed: out.stored,
                    })
                })
                .await
            }
            Log::Postgres(pg, _) => {
                let out = pg
                    .append(&host, &boot, first_sequence, &lines, check)
                    .await?;
                Ok(Ingested {
                    stored: out.stored,
                    duplicates: out.duplicates,
                    acked: out.acked,
                    placed: Vec::new(),
                })
            }
        }
    }

    /// Sessions matching the filter, most recently active first (`limit` 0: all). A session's
    /// `gaps` are its own and its host's while it ran, on both stores.
    pub(crate) async fn sessions(
        &self,
        filter: &SessionFilter<'_>,
        limit: u32,
    ) -> Result<Vec<SessionSummary>, LogError> {
        match self {
            Log::Embedded(store, _) => {
                let store = lock(store);
                let index = store.sessions();
                let take = if limit == 0 {
                    usize::MAX
                } else {
                    limit as usize
                };
                Ok(index
                    .list(filter)
                    .into_iter()
                    .take(take)
                    .map(|s| SessionSummary {
                        gaps: s.gaps + index.context_gaps(s).len() as u64,
                        ..s.clone()
                    })
                    .collect())
            }
            Log::Postgres(pg, _) => Ok(pg.sessions(filter, limit).await?),
        }
    }

    /// A session's records in log order; the Status says what is wrong with the request.
    pub(crate) async fn session(
        &self,
        session: String,
        host: String,
    ) -> Result<Vec<StoredRecord>, Status> {
        let not_found = || Status::not_found(format!("no session {session:?}"));
        let ambiguous = |hosts: &[String]| {
            Status::failed_precondition(format!(
                "session {session:?} exists on several hosts ({}); name one with --host",
                hosts.join(", ")
            ))
        };
        match self {
            Log::Embedded(store, restorer) => {
                let store_ = store.clone();
                let (session_, host_) = (session.clone(), host.clone());
                let found = blocking(move || {
                    let store = lock(&store_);
                    let last = match store.sessions().find(&session_, &host_) {
                        Ok(Some(s)) => s.last_index,
                        Ok(None) => return Ok(Err(None)),
                        Err(hosts) => return Ok(Err(Some(hosts))),
                    };
                    Ok(Ok(store.session_indexes(last)?))
                })
                .await?;
                match found {
                    Ok(indexes) => Ok(read_embedded(store, restorer, indexes).await?),
                    Err(None) => Err(not_found()),
                    Err(Some(hosts)) => Err(ambiguous(&hosts)),
                }
            }
            Log::Postgres(pg, restorer) => {
                let hosts = pg
                    .session_hosts(&session, &host)
                    .await
                    .map_err(LogError::from)?;
                match hosts.as_slice() {
                    [] => Err(not_found()),
                    [one] => {
                        let records = pg
                            .session_records(one, &session)
                            .await
                            .map_err(LogError::from)?;
                        Ok(match restorer.get() {
                            Some(pruner) => pruner.fill_session(records, one, &session).await,
                            None => records,
                        })
                    }
                    more => Err(ambiguous(more)),
                }
            }
        }
    }

    /// Placed records `from..to` (fewer at the end of the log).
    pub(crate) async fn read_range(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<StoredRecord>, LogError> {
        match self {
            Log::Embedded(store, restorer) => {
                // Past the end of the log: nothing. Records of a pruned segment that cannot be
                // brought back are skipped, and the range then reaches further: only the end of
                // the log gives an empty answer.
                let len = lock(store).len();
                let span = to.saturating_sub(from).max(1);
                let mut start = from;
                loop {
                    let mut indexes = Vec::new();
                    let mut i = start;
                    let mut end = (start + span).min(len);
                    while i < end {
                        let pruned = lock(store).pruned_segment_of(i);
                        match pruned {
                            Some((_, seg_end, archive))
                                if archive.is_none() || restorer.get().is_none() =>
                            {
                                if indexes.is_empty() {
                                    end = (seg_end + span).min(len);
                                }
                                i = seg_end;
                            }
                            _ => {
                                indexes.push(i);
                                i += 1;
                            }
                        }
                    }
                    let out = read_embedded(store, restorer, indexes).await?;
                    if !out.is_empty() || end >= len {
                        return Ok(out);
                    }
                    start = end;
                }
            }
            Log::Postgres(pg, restorer) => {
                // Runs pruned by retention have no rows: their records come from the archive
                // if there is one; else go past them, so that only the end of the log gives an
                // empty answer.
                let span = to.saturating_sub(from).max(1);
                let mut start = from;
                loop {
                    let mut out = pg.read_range(start, start + span).await?;
                    if let Some(pruner) = restorer.get() {
                        out = pruner.fill_range(out, start, start + span).await;
                    }
                    if !out.is_empty() || start + span >= pg.placed().await? {
                        return Ok(out);
                    }
                    start += span;
                }
            }
        }
    }

    pub(crate) async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, LogError> {
        match self {
            Log::Embedded(store, _) => Ok(lock(store).latest_checkpoint().cloned()),
            Log::Postgres(pg, _) => Ok(pg.latest_checkpoint().await?),
        }
    }

    pub(crate) fn public_key(&self) -> Vec<u8> {
        match self {
            Log::Embedded(store, _) => lock(store).public_key(),
            Log::Postgres(pg, _) => pg.public_key(),
        }
    }

    pub(crate) async fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<Option<(Hash, Vec<Hash>)>, LogError> {
        match self {
            Log::Embedded(store, _) => Ok(lock(store).inclusion_proof(index, tree_size)?),
            Log::Postgres(pg, _) => Ok(pg.inclusion_proof(index, tree_size).await?),
        }
    }

    pub(crate) async fn consistency_proof(
        &self,
        old: u64,
        new: u64,
    ) -> Result<Option<Vec<Hash>>, LogError> {
        match self {
            Log::Embedded(store, _) => Ok(lock(store).consistency_proof(old, new)?),
            Log::Postgres(pg, _) => Ok(pg.consistency_proof(old, new).await?),
        }
    }

    pub(crate) async fn verify(&self) -> Result<Verified, LogError> {
        match self {
            Log::Embedded(store, _) => {
                // The log as it is now, read without holding the store: segments are only
                // appended to, so what lies before this end stays still while ingest goes on.
                let (dir, key, until, size) = {
                    let store = lock(store);
                    (
                        store.dir().to_path_buf(),
                        store.public_key(),
                        store.end(),
                        store.len(),
                    )
                };
                blocking(move || {
                    let scan = scan::scan_part(&dir, Some(&key), None, Some(until), |_| {})
                        .map_err(StoreError::from)?;
                    let mut problems: Vec<String> =
                        scan.problems.iter().map(ToString::to_string).collect();
                    if let Some((seg, off)) = scan.torn_tail {
                        problems.push(format!(
                            "segments/{} byte offset {off}: incomplete record at the end",
                            segment::segment_name(seg)
                        ));
                    }
                    if scan.records != size {
                        problems.push(format!(
                            "the log on disk holds {} records but the collector stored {size}",
                            scan.records
                        ));
                    }
                    Ok(Verified {
                        records: scan.records,
                        checkpoints: scan.checkpoints.len() as u64,
                        problems,
                        pruned: scan
                            .pruned
                            .iter()
                            .map(recorder_store::pruned::PrunedSegment::describe)
                            .collect(),
                    })
                })
                .await
            }
            Log::Postgres(pg, _) => {
                let v = pg.verify().await?;
                Ok(Verified {
                    records: v.records,
                    checkpoints: v.checkpoints,
                    problems: v.problems,
                    pruned: v
                        .pruned
                        .iter()
                        .map(recorder_store::pruned::PrunedSegment::describe)
                        .collect(),
                })
            }
        }
    }
}
