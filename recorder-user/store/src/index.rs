//! The session index: a summary per session for `recorder sessions`, kept in memory (one per
//! session, not per record) and saved with the store's state. A session's records are found
//! from its last one through the record index's links.
use std::collections::HashMap;

use recorder_record::{Record, Timestamp, completeness};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    pub host: String,
    pub session: String,
    pub identity: String,
    pub first_time: Timestamp,
    pub last_time: Timestamp,
    pub commands: u64,
    /// Records of the session.
    pub records: u64,
    /// The Kubernetes namespace and pod its processes ran in (empty off Kubernetes): taken
    /// from the first record that names them.
    pub namespace: String,
    pub pod: String,
    /// The log index of the session's last record (the embedded store follows the links back
    /// from it; a store that queries its database leaves it 0).
    pub last_index: u64,
    /// Records of actions that failed (`completeness::failed`).
    #[serde(default)]
    pub failed: u64,
    /// Records of the session that report a gap (`completeness::gap_of`); gaps reported for
    /// the whole host or identity are kept apart (`SessionIndex::context_gaps`).
    #[serde(default)]
    pub gaps: u64,
}

/// A `loss` or `notice` of no session: it may concern every session of its host (and identity,
/// when it names one) running at its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostGap {
    pub host: String,
    /// Empty when the record concerns the whole host (a full spool).
    pub identity: String,
    pub time: Timestamp,
    pub index: u64,
}

/// How long after a session's last record a host-wide gap still counts for it: a loss is
/// reported when the agent notices it, a little after the events it dropped.
pub const GAP_REPORT_DELAY_NS: i128 = 10_000_000_000;

/// Which sessions `recorder sessions` lists: an empty field matches every session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter<'a> {
    pub identity: &'a str,
    pub host: &'a str,
    /// Only sessions active at or after this time (Unix nanoseconds; 0 = no bound).
    pub since_unix_ns: i64,
    pub namespace: &'a str,
    pub pod: &'a str,
    /// Only sessions active at or before this time (Unix nanoseconds; 0 = no bound).
    pub until_unix_ns: i64,
    /// Only sessions with a failed action.
    pub failed: bool,
    /// Only sessions with a gap: their own, or their host's while they ran.
    pub gaps: bool,
    /// Only the session of this id.
    pub session: &'a str,
}

impl SessionFilter<'_> {
    fn matches(&self, s: &SessionSummary) -> bool {
        let field = |want: &str, have: &str| want.is_empty() || want == have;
        field(self.identity, &s.identity)
            && field(self.host, &s.host)
            && field(self.session, &s.session)
            && field(self.namespace, &s.namespace)
            && field(self.pod, &s.pod)
            && (self.since_unix_ns == 0 || s.last_time.unix_ns() >= i128::from(self.since_unix_ns))
            && (self.until_unix_ns == 0 || s.first_time.unix_ns() <= i128::from(self.until_unix_ns))
            && (!self.failed || s.failed > 0)
    }
}

#[derive(Debug, Default)]
pub struct SessionIndex {
    sessions: HashMap<(String, String), SessionSummary>,
    /// Host-wide gaps in log order (they are rare: a loss or notice of no session).
    host_gaps: Vec<HostGap>,
}

impl SessionIndex {
    pub fn from_summaries(list: Vec<SessionSummary>, host_gaps: Vec<HostGap>) -> Self {
        Self {
            sessions: list
                .into_iter()
                .map(|s| ((s.host.clone(), s.session.clone()), s))
                .collect(),
            host_gaps,
        }
    }

    pub fn host_gaps(&self) -> &[HostGap] {
        &self.host_gaps
    }

    /// The log indexes of the host-wide gaps that may concern `s`: of its host, of its identity
    /// or of none, reported while it ran (or shortly after its last record).
    pub fn context_gaps(&self, s: &SessionSummary) -> Vec<u64> {
        let (from, to) = (
            s.first_time.unix_ns(),
            s.last_time.unix_ns() + GAP_REPORT_DELAY_NS,
        );
        self.host_gaps
            .iter()
            .filter(|g| {
                g.host == s.host
                    && (g.identity.is_empty() || g.identity == s.identity)
                    && (from..=to).contains(&g.time.unix_ns())
            })
            .map(|g| g.index)
            .collect()
    }

    pub fn summaries(&self) -> impl Iterator<Item = &SessionSummary> {
        self.sessions.values()
    }

    /// Counts the record in its session; returns the log index of the session's previous
    /// record (None for its first, or for a record of no session).
    pub fn add(&mut self, index: u64, record: &Record) -> Option<u64> {
        if record.session.is_empty() {
            if completeness::gap_of(record).is_some() {
                self.host_gaps.push(HostGap {
                    host: record.host.clone(),
                    identity: record.identity.clone(),
                    time: record.time,
                    index,
                });
            }
            return None;
        }
        let key = (record.host.clone(), record.session.clone());
        let s = self.sessions.entry(key).or_insert_with(|| SessionSummary {
            host: record.host.clone(),
            session: record.session.clone(),
            identity: record.identity.clone(),
            first_time: record.time,
            last_time: record.time,
            commands: 0,
            records: 0,
            namespace: String::new(),
            pod: String::new(),
            last_index: index,
            failed: 0,
            gaps: 0,
        });
        let previous = (s.records > 0).then_some(s.last_index);
        if s.pod.is_empty()
            && let Some(workload) = &record.workload
        {
            s.namespace.clone_from(&workload.namespace);
            s.pod.clone_from(&workload.pod_name);
        }
        s.first_time = s.first_time.min(record.time);
        s.last_time = s.last_time.max(record.time);
        if record.kind().is_command() {
            s.commands += 1;
        }
        s.records += 1;
        s.failed += u64::from(completeness::failed(record));
        s.gaps += u64::from(completeness::gap_of(record).is_some());
        s.last_index = index;
        previous
    }

    /// Sessions matching the filters, most recently active first.
    pub fn list(&self, filter: &SessionFilter<'_>) -> Vec<&SessionSummary> {
        let mut out: Vec<&SessionSummary> = self
            .sessions
            .values()
            .filter(|s| filter.matches(s))
            .filter(|s| !filter.gaps || s.gaps > 0 || !self.context_gaps(s).is_empty())
            .collect();
        out.sort_by(|a, b| {
            b.last_time
                .cmp(&a.last_time)
                .then_with(|| a.session.cmp(&b.session))
        });
        out
    }

    /// The session `session` (on `host`, if given). Err lists the hosts when the id is ambiguous.
    pub fn find(&self, session: &str, host: &str) -> Result<Option<&SessionSummary>, Vec<String>> {
        if !host.is_empty() {
            return Ok(self.sessions.get(&(host.to_string(), session.to_string())));
        }
        let matches: Vec<&SessionSummary> = self
            .sessions
            .values()
            .filter(|s| s.session == session)
            .collect();
        match matches.len() {
            0 => Ok(None),
            1 => Ok(Some(matches[0])),
            _ => Err(matches.iter().map(|s| s.host.clone()).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: &str, time: &str, session: &str) -> Vec<u8> {
        format!(r#"{{"kind":"{kind}","time":"{time}","host":"h","identity":"claude","session":"{session}","pid":1,"exec_id":"e"}}"#)
            .into_bytes()
    }

    #[test]
    fn summarises_sessions_and_filters() {
        let mut idx = SessionIndex::default();
        let lines = [
            line("exec", "2026-11-28T10:00:00.000000000Z", "s1"),
            line("exit", "2026-11-28T10:00:01.000000000Z", "s1"),
            line("exec", "2026-11-28T11:00:00.000000000Z", "s2"),
            line("loss", "2026-11-28T11:00:00.000000000Z", ""),
        ];
        for (i, l) in lines.iter().enumerate() {
            idx.add(i as u64, &Record::parse(l).unwrap());
        }
        let all = idx.list(&SessionFilter::default());
        assert_eq!(
            all.iter().map(|s| s.session.as_str()).collect::<Vec<_>>(),
            ["s2", "s1"]
        );
        let s1 = idx.find("s1", "").unwrap().unwrap();
        assert_eq!((s1.commands, s1.records, s1.last_index), (1, 2, 1));
        assert_eq!(s1.last_time.to_string(), "2026-11-28T10:00:01.000000000Z");
        let since = recorder_record::time::parse_rfc3339("2026-11-28T10:30:00Z").unwrap() as i64;
        let since = SessionFilter {
            since_unix_ns: since,
            ..SessionFilter::default()
        };
        assert_eq!(idx.list(&since).len(), 1);
        let other = SessionFilter {
            identity: "other",
            ..SessionFilter::default()
        };
        assert!(idx.list(&other).is_empty());
    }

    #[test]
    fn sessions_of_a_pod() {
        let mut idx = SessionIndex::default();
        let in_pod = |session: &str, pod: &str| {
            let mut l = line("exec", "2026-11-28T10:00:00.000000000Z", session);
            l.pop();
            let l = format!(
                r#"{},"k8s.namespace.name":"agents","k8s.pod.name":"{pod}"}}"#,
                String::from_utf8(l).unwrap()
            );
            Record::parse(l.as_bytes()).unwrap()
        };
        idx.add(
            0,
            &Record::parse(&line("exec", "2026-11-28T10:00:00.000000000Z", "host")).unwrap(),
        );
        idx.add(1, &in_pod("a", "claude-1"));
        idx.add(2, &in_pod("b", "claude-2"));
        let pod = SessionFilter {
            namespace: "agents",
            pod: "claude-2",
            ..SessionFilter::default()
        };
        let found = idx.list(&pod);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].session.as_str(), found[0].namespace.as_str()),
            ("b", "agents")
        );
        let namespace = SessionFilter {
            namespace: "agents",
            ..SessionFilter::default()
        };
        assert_eq!(idx.list(&namespace).len(), 2);
    }
}
