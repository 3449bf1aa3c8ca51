//! The console's action log: every request of an operator, one JSON line each, in
//! `DATA/console/actions.jsonl` (and in the collector's log), so what operators looked at is
//! itself on record.
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
        let action = Action {
            time: Timestamp::now().to_string(),
            operator,
            by,
            method,
            path,
        };
        let Ok(mut line) = serde_json::to_vec(&action) else {
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
