//! `?watch=true`: the changes after the client's `resourceVersion` from the log, then live ones
//! as they happen, one JSON event per line, as kube-apiserver's watch cache serves them.
use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::{
    http::{Body, Call, Reply},
    present::table,
    select::Filter,
    store::{Change, ChangeType, Kind, Store},
};

/// How often a watch that allows bookmarks gets one. kube-apiserver sends them about once a
/// minute; a few seconds keep a client's resume point fresh within a test's time.
const BOOKMARK_EVERY: Duration = Duration::from_secs(2);

/// What one watch needs once its request is answered: it outlives the store's lock.
struct Watch {
    kind: &'static Kind,
    filter: Filter,
    /// `Some(includeObject)` when kubectl asked for tables (`kubectl get -w`).
    table: Option<String>,
    bookmarks: bool,
    /// The version of the last change this watch has seen (sent or filtered out): a bookmark
    /// says everything up to it has been delivered.
    seen: u64,
}

pub(super) fn watch(call: &Call, store: &Store, kind: &'static Kind, ns: Option<&str>) -> Reply {
    let filter = match Filter::new(ns, call.param("fieldSelector"), call.param("labelSelector")) {
        Ok(filter) => filter,
        Err(message) => return Reply::bad_request(message),
    };
    let w = Watch {
        kind,
        filter,
        table: call.wants_table().then(|| {
            call.param("includeObject")
                .unwrap_or("Metadata")
                .to_string()
        }),
        bookmarks: call.param("allowWatchBookmarks") == Some("true"),
        seen: store.resource_version,
    };
    let initial_events = call.param("sendInitialEvents") == Some("true");
    let mut backlog = Vec::new();
    match call.param("resourceVersion").unwrap_or("") {
        // No version, "0", or a streaming list: the current state as synthetic ADDED events.
        rv if rv.is_empty() || rv == "0" || initial_events => {
            for obj in store.list(kind, ns) {
                if w.filter.matches(&obj) {
                    backlog.push(w.event("ADDED", obj));
                }
            }
            if initial_events {
                // The streaming list's end, which its client waits for.
                backlog.push(json!({"type": "BOOKMARK", "object": {
                    "kind": kind.kind, "apiVersion": "v1",
                    "metadata": {"resourceVersion": w.seen.to_string(),
                                 "annotations": {"k8s.io/initial-events-end": "true"}},
                }}));
            }
        }
        rv => {
            let Ok(from) = rv.parse::<u64>() else {
                return Reply::bad_request(format!("invalid resource version: {rv}"));
            };
            match store.since(kind, from) {
                Ok(changes) => backlog.extend(changes.iter().filter_map(|c| w.convert(c))),
                // The watch starts (200) and its one event says why it ends: that is where
                // clients look for 410 to know they must list again.
                Err(expired) => {
                    let status = json!({"type": "ERROR", "object": {
                        "kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "reason": "Expired", "code": 410,
                        "message": format!("too old resource version: {from} ({})", expired.oldest),
                    }});
                    return Reply {
                        status: StatusCode::OK,
                        body: Body::Full(Some(line(&status))),
                        content_type: "application/json",
                    };
                }
            }
        }
    }
    // Subscribed under the store's lock, like the log read above: no change is missed or doubled.
    let changes = store.subscribe();
    let timeout = call
        .param("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(Duration::from_secs);
    let (out, lines) = mpsc::channel(64);
    tokio::spawn(w.run(out, backlog, changes, timeout));
    Reply {
        status: StatusCode::OK,
        body: Body::Stream(lines),
        content_type: "application/json",
    }
}

fn line(event: &Value) -> Bytes {
    let mut line = serde_json::to_vec(event).unwrap();
    line.push(b'\n');
    Bytes::from(line)
}

impl Watch {
    fn event(&self, ty: &str, obj: Value) -> Value {
        let object = match &self.table {
            Some(include) => {
                let rv = obj["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(self.seen);
                table(include, rv, self.kind, &[obj])
            }
            None => obj,
        };
        json!({"type": ty, "object": object})
    }

    /// What this watch is told of a change, as kube-apiserver's cacheWatcher decides it: an
    /// object that starts matching is ADDED, one that stops is DELETED (its previous state at
    /// the change's version), one that matches before and after is MODIFIED.
    fn convert(&self, change: &Change) -> Option<Value> {
        if change.resource != self.kind.resource {
            return None;
        }
        let now = change.ty != ChangeType::Deleted && self.filter.matches(&change.object);
        let before = change.prev.as_ref().is_some_and(|p| self.filter.matches(p));
        match (now, before) {
            (true, false) => Some(self.event("ADDED", change.object.clone())),
            (true, true) => Some(self.event("MODIFIED", change.object.clone())),
            (false, true) => {
                let mut last = change.prev.clone().unwrap_or_default();
                last["metadata"]["resourceVersion"] = json!(change.rv.to_string());
                Some(self.event("DELETED", last))
            }
            (false, false) => None,
        }
    }

    /// Sends the backlog, then each live change that concerns this watch, with bookmarks in
    /// between, until the timeout, a lag behind the live changes (the client resumes from its
    /// last version), or the client going away.
    async fn run(
        mut self,
        out: mpsc::Sender<Bytes>,
        backlog: Vec<Value>,
        mut changes: broadcast::Receiver<Arc<Change>>,
        timeout: Option<Duration>,
    ) {
        for event in &backlog {
            if out.send(line(event)).await.is_err() {
                return;
            }
        }
        // A day stands for "no timeout": the client or the server's stop ends it first.
        let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(86_400)));
        tokio::pin!(deadline);
        let mut bookmark = tokio::time::interval(BOOKMARK_EVERY);
        bookmark.reset();
        loop {
            let event = tokio::select! {
                () = &mut deadline => return,
                () = out.closed() => return,
                _ = bookmark.tick(), if self.bookmarks => json!({"type": "BOOKMARK", "object": {
                    "kind": self.kind.kind, "apiVersion": "v1",
                    "metadata": {"resourceVersion": self.seen.to_string()},
                }}),
                change = changes.recv() => {
                    let Ok(change) = change else { return };
                    self.seen = change.rv;
                    match self.convert(&change) {
                        Some(event) => event,
                        None => continue,
                    }
                }
            };
            if out.send(line(&event)).await.is_err() {
                return;
            }
        }
    }
}
