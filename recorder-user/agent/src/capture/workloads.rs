//! Which Kubernetes workload each session runs in. A session's workload is the container its
//! first process was seen in (the cgroup of its root exec); every record of the session carries
//! it, wherever the session's processes later go, as records carry the session's identity.
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use recorder_common::ProcKey;
use recorder_record::Workload;

/// How long a session of a container that is gone keeps its workload: its last processes may
/// still be exiting, and their records must still say where they ran.
const KEEP_AFTER_CONTAINER: Duration = Duration::from_mins(5);

#[derive(Default)]
pub(crate) struct SessionWorkloads {
    by_session: HashMap<ProcKey, Entry>,
}

struct Entry {
    workload: Arc<Workload>,
    /// When the session's container was last seen gone.
    gone_since: Option<Instant>,
}

impl SessionWorkloads {
    pub(crate) fn get(&self, session: &ProcKey) -> Option<Arc<Workload>> {
        if self.by_session.is_empty() {
            return None;
        }
        self.by_session.get(session).map(|e| e.workload.clone())
    }

    pub(crate) fn knows(&self, session: &ProcKey) -> bool {
        self.by_session.contains_key(session)
    }

    pub(crate) fn insert(&mut self, session: ProcKey, workload: Arc<Workload>) {
        self.by_session.insert(
            session,
            Entry {
                workload,
                gone_since: None,
            },
        );
    }

    /// Forgets the sessions of containers gone for a while; `live` holds the container ids
    /// watched now.
    pub(crate) fn sweep(&mut self, live: &HashSet<&str>, now: Instant) {
        self.by_session.retain(|_, entry| {
            if live.contains(entry.workload.container_id.as_str()) {
                entry.gone_since = None;
                return true;
            }
            let since = *entry.gone_since.get_or_insert(now);
            now.duration_since(since) < KEEP_AFTER_CONTAINER
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_session.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_of_a_gone_container_are_forgotten_later() {
        let mut w = SessionWorkloads::default();
        let key = |pid| ProcKey {
            ktime: 1,
            pid,
            _pad: 0,
        };
        let workload = |id: &str| {
            Arc::new(Workload {
                container_id: id.into(),
                ..Workload::default()
            })
        };
        w.insert(key(1), workload("aaa"));
        w.insert(key(2), workload("bbb"));
        let t0 = Instant::now();
        w.sweep(&HashSet::from(["aaa"]), t0);
        assert_eq!(w.len(), 2, "bbb's session is kept a while");
        w.sweep(&HashSet::from(["aaa"]), t0 + KEEP_AFTER_CONTAINER);
        assert_eq!(w.len(), 1);
        assert_eq!(w.get(&key(1)).unwrap().container_id, "aaa");
        assert!(w.get(&key(2)).is_none());
    }
}
