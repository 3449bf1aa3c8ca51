//! The console's action log: every request of an operator, one JSON line each, in
//! `DATA/console/actions.jsonl` (and in the collector's log), so what operators looked at is
//! itself on record. A decision on an approval request adds a line that says which and how.
use std::{
    fs::{self, File, OpenOptions},
    io::Write as _,
    path::Path,
    sync::Mutex,
};

use recorder_record::Timestamp;
use serde::Serialize;

pub(crate) struct ActionLog {
    file: Mutex<File>,
}

#[derive(Serialize)]
struct Action<'a> {
    time: String,
    operator: &'a str,
    /// `certificate`, `cookie` or `token`.
    by: &'a str,
    method: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval: Option<Decided<'a>>,
}

/// What an operator decided on an approval request.
#[derive(Serialize)]
pub(crate) struct Decided<'a> {
    pub id: &'a str,
    /// `approved` or `denied`.
    pub state: &'a str,
    pub reason: &'a str,
}

impl ActionLog {
    pub(crate) fn open(data: &Path) -> std::io::Result<Self> {
        let dir = data.join("console");
        fs::create_dir_all(&dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("actions.jsonl"))?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    pub(crate) fn record(&self, operator: &str, by: &str, method: &str, path: &str) {
        tracing::info!(operator, by, method, path, "console: operator action");
        self.write(&Action {
            time: Timestamp::now().to_string(),
            operator,
            by,
            method,
            path,
            approval: None,
        });
    }

    /// A decision taken, after the request that took it.
    pub(crate) fn decided(&self, operator: &str, by: &str, path: &str, decided: Decided<'_>) {
        tracing::info!(
            operator,
            by,
            id = decided.id,
            state = decided.state,
            reason = decided.reason,
            "console: approval decided"
        );
        self.write(&Action {
            time: Timestamp::now().to_string(),
            operator,
            by,
            method: "POST",
            path,
            approval: Some(decided),
        });
    }

    fn write(&self, action: &Action<'_>) {
        let Ok(mut line) = serde_json::to_vec(action) else {
            return;
        };
        line.push(b'\n');
        let mut f = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = f.write_all(&line) {
            tracing::error!(error = %e, "cannot write the console's action log");
        }
    }
}
