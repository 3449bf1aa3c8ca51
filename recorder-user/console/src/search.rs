//! The sessions list: the filters, the full-text search and the paging the page and its JSON
//! endpoint share.
//!
//! Search reads the log from its end backwards (commands, shell lines, SQL text, Kubernetes
//! calls and paths; case-insensitive), at most `SEARCH_BUDGET` records per request; when it
//! stops before the log's start it says where, and the next request can go on from there.
use std::collections::HashSet;

use recorder_record::completeness;
use serde::{Deserialize, Serialize};

use crate::{Filter, server::Console};

/// Records one search request reads at most.
const SEARCH_BUDGET: u64 = 250_000;
const SEARCH_CHUNK: u64 = 2_000;
pub(crate) const DEFAULT_PER_PAGE: usize = 50;
const MAX_PER_PAGE: usize = 500;

/// The list's query string (every field optional).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub(crate) struct ListQuery {
    pub identity: String,
    pub host: String,
    pub namespace: String,
    pub pod: String,
    /// Active at or after (RFC 3339, or a browser's `YYYY-MM-DDTHH:MM`, UTC).
    pub from: String,
    /// Active at or before.
    pub to: String,
    /// `1`: only sessions with a failed action.
    pub failed: String,
    /// `1`: only sessions with a gap.
    pub gaps: String,
    /// `1`: only sessions with an alert.
    pub alerts: String,
    /// Words to find in the session's commands, shell lines, SQL and Kubernetes calls.
    pub q: String,
    /// Search records before this log index (where the previous search stopped).
    pub before: Option<u64>,
    pub page: Option<usize>,
    pub per: Option<usize>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Listing {
    /// Sessions matching, over every page.
    pub total: usize,
    pub page: usize,
    pub pages: usize,
    pub per: usize,
    pub sessions: Vec<Row>,
    pub search: Option<Searched>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Row {
    pub host: String,
    pub session: String,
    pub identity: String,
    pub namespace: String,
    pub pod: String,
    pub first_time: String,
    pub last_time: String,
    pub commands: u64,
    pub records: u64,
    pub failed: u64,
    /// The session's own gaps and its host's while it ran.
    pub gaps: u64,
    pub verdict: String,
    pub alerts: usize,
}

/// How far a search read.
#[derive(Debug, Serialize)]
pub(crate) struct Searched {
    /// It read log indexes `from..to`.
    pub from: u64,
    pub to: u64,
    /// It reached the log's start.
    pub complete: bool,
}

fn time_bound(text: &str, what: &str) -> Result<i64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    // A browser's datetime-local has no seconds and no zone: UTC, as every time shown here.
    let full = match text.len() {
        16 => format!("{text}:00Z"),
        19 => format!("{text}Z"),
        _ => text.to_string(),
    };
    recorder_record::time::parse_rfc3339(&full)
        .map(|ns| ns as i64)
        .ok_or_else(|| format!("{what} {text:?} is not a time (2026-12-05T14:00 or RFC 3339, UTC)"))
}

pub(crate) async fn listing(console: &Console, q: &ListQuery) -> Result<Listing, String> {
    let filter = Filter {
        identity: q.identity.trim().to_string(),
        host: q.host.trim().to_string(),
        namespace: q.namespace.trim().to_string(),
        pod: q.pod.trim().to_string(),
        since_unix_ns: time_bound(&q.from, "from")?,
        until_unix_ns: time_bound(&q.to, "to")?,
        failed: q.failed == "1",
        gaps: q.gaps == "1",
    };
    let mut rows = console.source.sessions(&filter).await?;
    if q.alerts == "1" {
        rows.retain(|s| console.alerts.count(&s.host, &s.session) > 0);
    }
    let search = if q.q.trim().is_empty() {
        None
    } else {
        let (found, searched) = search(console, q.q.trim(), q.before).await?;
        rows.retain(|s| found.contains(&(s.host.clone(), s.session.clone())));
        Some(searched)
    };
    let per = q.per.unwrap_or(DEFAULT_PER_PAGE).clamp(1, MAX_PER_PAGE);
    let total = rows.len();
    let pages = total.div_ceil(per).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let sessions = rows
        .into_iter()
        .skip((page - 1) * per)
        .take(per)
        .map(|s| Row {
            verdict: completeness::label(s.gaps),
            alerts: console.alerts.count(&s.host, &s.session),
            host: s.host,
            session: s.session,
            identity: s.identity,
            namespace: s.namespace,
            pod: s.pod,
            first_time: s.first_time.to_string(),
            last_time: s.last_time.to_string(),
            commands: s.commands,
            records: s.records,
            failed: s.failed,
            gaps: s.gaps,
        })
        .collect();
    Ok(Listing {
        total,
        page,
        pages,
        per,
        sessions,
        search,
    })
}

/// The sessions with a record whose text holds `words`, reading back from `before`.
async fn search(
    console: &Console,
    words: &str,
    before: Option<u64>,
) -> Result<(HashSet<(String, String)>, Searched), String> {
    let needle = words.to_lowercase();
    let size = console.source.size().await?;
    let to = before.unwrap_or(size).min(size);
    let floor = to.saturating_sub(SEARCH_BUDGET);
    let mut found = HashSet::new();
    let mut end = to;
    while end > floor {
        let start = end.saturating_sub(SEARCH_CHUNK).max(floor);
        for r in console.source.records(start, end).await? {
            if r.record.session.is_empty() {
                continue;
            }
            let hit = completeness::search_text(&r.record)
                .iter()
                .any(|t| !t.is_empty() && t.to_lowercase().contains(&needle));
            if hit {
                found.insert((r.record.host.clone(), r.record.session.clone()));
            }
        }
        end = start;
    }
    Ok((
        found,
        Searched {
            from: floor,
            to,
            complete: floor == 0,
        },
    ))
}
