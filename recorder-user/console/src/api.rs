//! The JSON endpoints (operators only): the sessions list, one session's evidence with the
//! collector's own check of it, and any record by its log index.
use axum::{
    Json,
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
};
use http::StatusCode;
use recorder_record::{Timestamp, hex};
use recorder_session::{Evidence, EvidenceRecord, FORMAT, SessionView, Verdict, check};
use serde::{Deserialize, Serialize};

use crate::{
    AlertView, Source,
    search::{ListQuery, listing},
    server::{Shared, refuse},
};

pub(crate) async fn sessions(
    State(console): State<Shared>,
    Query(q): Query<ListQuery>,
) -> Response {
    match listing(&console, &q).await {
        Ok(l) => Json(l).into_response(),
        Err(why) => refuse(StatusCode::BAD_REQUEST, &why),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SessionQuery {
    pub host: String,
    pub session: String,
}

/// A session's evidence, what the collector's check of it found, and its alerts.
#[derive(Serialize)]
struct SessionPage {
    evidence: Evidence,
    checked: CheckedView,
    alerts: Vec<AlertView>,
}

#[derive(Serialize)]
struct CheckedView {
    ok: bool,
    proven: u64,
    pending: u64,
    problems: Vec<ProblemView>,
}

#[derive(Serialize)]
struct ProblemView {
    index: Option<u64>,
    what: String,
}

pub(crate) async fn evidence(
    State(console): State<Shared>,
    Query(q): Query<SessionQuery>,
) -> Response {
    let evidence = match assemble(console.source.as_ref(), &q.host, &q.session).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            return refuse(
                StatusCode::NOT_FOUND,
                &format!("no session {:?} on host {:?}", q.session, q.host),
            );
        }
        Err(why) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &why),
    };
    let checked = check(&evidence);
    let page = SessionPage {
        checked: CheckedView {
            ok: checked.problems.is_empty(),
            proven: checked.proven,
            pending: checked.pending,
            problems: checked
                .problems
                .into_iter()
                .map(|p| ProblemView {
                    index: p.index,
                    what: p.what,
                })
                .collect(),
        },
        alerts: console
            .alerts
            .of(&q.host, &q.session)
            .iter()
            .map(|a| (**a).clone())
            .collect(),
        evidence,
    };
    Json(page).into_response()
}

/// One session's evidence: its records and the host-wide gaps of its time, each with its
/// inclusion proof against the latest signed checkpoint (none for records it does not cover
/// yet). None if there is no such session.
pub async fn assemble(
    source: &dyn Source,
    host: &str,
    session: &str,
) -> Result<Option<Evidence>, String> {
    let Some(s) = source.session(host, session).await? else {
        return Ok(None);
    };
    let checkpoint = source.checkpoint().await?;
    let size = checkpoint.as_ref().map_or(0, |c| c.tree_size);
    let covered: Vec<u64> = s
        .records
        .iter()
        .chain(&s.context)
        .map(|r| r.index)
        .filter(|i| *i < size)
        .collect();
    let mut proofs: std::collections::HashMap<u64, Vec<[u8; 32]>> = covered
        .iter()
        .copied()
        .zip(source.proofs(covered.clone(), size).await?)
        .filter_map(|(i, p)| Some((i, p?)))
        .collect();
    let mut view =
        |r: &recorder_store::StoredRecord| EvidenceRecord::new(r, proofs.remove(&r.index));
    let records: Vec<EvidenceRecord> = s.records.iter().map(&mut view).collect();
    let context: Vec<EvidenceRecord> = s.context.iter().map(&mut view).collect();
    let verdict = Verdict::of(
        s.records.iter().map(|r| (r.index, &r.record)),
        s.context.iter().map(|r| (r.index, &r.record)),
    );
    Ok(Some(Evidence {
        format: FORMAT.to_string(),
        made: Timestamp::now().to_string(),
        session: SessionView::from(&s.summary),
        verdict,
        records,
        context,
        checkpoint: checkpoint.as_ref().map(Into::into),
        public_key: hex::encode(&source.public_key()),
    }))
}

/// One record as JSON: where it is in the log, its chain link and leaf hash, and its fields.
pub(crate) async fn record(State(console): State<Shared>, Path(index): Path<String>) -> Response {
    let Ok(index) = index.parse::<u64>() else {
        return refuse(
            StatusCode::NOT_FOUND,
            &format!("{index:?} is not a log index"),
        );
    };
    let size = match console.source.size().await {
        Ok(s) => s,
        Err(why) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &why),
    };
    if index >= size {
        return refuse(
            StatusCode::NOT_FOUND,
            &format!("no record {index}: the log holds {size} records"),
        );
    }
    match console.source.records(index, index + 1).await {
        Ok(found) => match found.into_iter().next() {
            Some(r) => {
                let fields: serde_json::Value =
                    serde_json::from_slice(&r.line).unwrap_or(serde_json::Value::Null);
                Json(serde_json::json!({
                    "index": r.index,
                    "host": r.host,
                    "boot": r.boot,
                    "sequence": r.sequence,
                    "prev": hex::encode(&r.prev),
                    "leaf": hex::encode(&r.leaf_hash()),
                    "record": fields,
                }))
                .into_response()
            }
            None => refuse(
                StatusCode::GONE,
                &format!("record {index} was pruned and cannot be read back"),
            ),
        },
        Err(why) => refuse(StatusCode::INTERNAL_SERVER_ERROR, &why),
    }
}
