//! The record: one JSON object per event, the contract of `--jsonl` output, of the spool and of
//! the collector's store (docs/records.md).
//!
//! A [`Record`] is the common fields every line has (`kind`, `time`, `host`, `identity`,
//! `session`, `pid`, `exec_id`) and a [`Body`], one struct per kind. It is written as one JSON
//! object: the common fields in that order, then the kind's fields in alphabetical order (the
//! order the first agents wrote them in, kept byte for byte; a golden test in the agent holds
//! it). Records about no process (`loss`, some `notice`) have `pid` 0 and empty `session` and
//! `exec_id`.
//!
//! Reading is lenient where it can be: a kind's field that is missing takes its empty value and
//! unknown fields are ignored, so a collector reads records of older and newer agents alike.
//! A line without the common fields, with an unknown kind or with a malformed time is refused.
mod body;
pub mod completeness;
pub mod hex;
pub mod ids;
pub mod shell;
pub mod time;
mod workload;

use std::{fmt, sync::Arc};

pub use body::{
    Approval, DbSystem, Exec, Exit, K8s, K8sSource, Loss, Notice, Shell, Sql, SqlStatus,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
pub use time::Timestamp;
pub use workload::{LABEL_PREFIX, Workload};

/// The longest record line anything accepts: longer lines are damage, not data (records are a
/// few KiB; a 1 MiB SQL statement with its parameters may reach a few MiB). The agent reports a
/// longer record as lost instead of sending it; the spool and the store refuse one.
pub const MAX_LINE: usize = 8 * 1024 * 1024;

/// What a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Exec,
    Exit,
    Shell,
    Sql,
    K8s,
    Loss,
    Notice,
    Approval,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Exec,
        Kind::Exit,
        Kind::Shell,
        Kind::Sql,
        Kind::K8s,
        Kind::Loss,
        Kind::Notice,
        Kind::Approval,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::Exit => "exit",
            Kind::Shell => "shell",
            Kind::Sql => "sql",
            Kind::K8s => "k8s",
            Kind::Loss => "loss",
            Kind::Notice => "notice",
            Kind::Approval => "approval",
        }
    }

    /// Records that are an action of the watched agent (a command, a line, a statement, an API
    /// call), as opposed to what ended or what the recording says about itself.
    pub fn is_command(self) -> bool {
        matches!(self, Kind::Exec | Kind::Shell | Kind::Sql | Kind::K8s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown record kind {s:?} (expected one of exec, exit, shell, sql, k8s, loss, notice)"))
    }
}

/// A kind's own fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Body {
    Exec(Exec),
    Exit(Exit),
    Shell(Shell),
    Sql(Sql),
    K8s(K8s),
    Loss(Loss),
    Notice(Notice),
    Approval(Approval),
}

impl Body {
    pub fn kind(&self) -> Kind {
        match self {
            Body::Exec(_) => Kind::Exec,
            Body::Exit(_) => Kind::Exit,
            Body::Shell(_) => Kind::Shell,
            Body::Sql(_) => Kind::Sql,
            Body::K8s(_) => Kind::K8s,
            Body::Loss(_) => Kind::Loss,
            Body::Notice(_) => Kind::Notice,
            Body::Approval(_) => Kind::Approval,
        }
    }

    /// The body of a `kind` record from its fields (every field of the line but the common ones).
    pub fn from_fields(kind: Kind, fields: Map<String, Value>) -> Result<Self, serde_json::Error> {
        Self::read(kind, Value::Object(fields))
    }

    /// The body of a `kind` record read from `d` (fields it does not have are skipped).
    fn read<'de, D: Deserializer<'de>>(kind: Kind, d: D) -> Result<Self, D::Error> {
        Ok(match kind {
            Kind::Exec => Body::Exec(Deserialize::deserialize(d)?),
            Kind::Exit => Body::Exit(Deserialize::deserialize(d)?),
            Kind::Shell => Body::Shell(Deserialize::deserialize(d)?),
            Kind::Sql => Body::Sql(Deserialize::deserialize(d)?),
            Kind::K8s => Body::K8s(Deserialize::deserialize(d)?),
            Kind::Loss => Body::Loss(Deserialize::deserialize(d)?),
            Kind::Notice => Body::Notice(Deserialize::deserialize(d)?),
            Kind::Approval => Body::Approval(Deserialize::deserialize(d)?),
        })
    }

    /// The text of the command, line, statement or API call (`text`); empty for the others.
    pub fn text(&self) -> &str {
        match self {
            Body::Exec(e) => &e.text,
            Body::Shell(s) => &s.text,
            Body::Sql(s) => &s.text,
            Body::K8s(k) => &k.text,
            Body::Approval(a) => &a.text,
            Body::Exit(_) | Body::Loss(_) | Body::Notice(_) => "",
        }
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// When the event happened.
    pub time: Timestamp,
    pub host: String,
    pub identity: String,
    pub session: String,
    pub pid: u32,
    pub exec_id: String,
    /// Where the process runs on Kubernetes, for identities selected by pod.
    pub workload: Option<Arc<Workload>>,
    pub body: Body,
    /// The fields redaction changed (`argv[2]`, `text`, `params[0]`…), written last and only
    /// when there are some.
    pub redacted: Vec<String>,
}

impl Record {
    pub fn kind(&self) -> Kind {
        self.body.kind()
    }

    /// The record as one JSON line (no trailing newline).
    pub fn to_line(&self) -> String {
        // Serialising strings, numbers and booleans cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Appends the record's JSON line (no trailing newline) to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail, nor can serialising the record.
        let _ = serde_json::to_writer(out, self);
    }

    /// Reads one record line.
    ///
    /// The general reading (every field but the common ones gathered in a map, the body read
    /// from that map) allocates for each field; the collector reads every line it stores, so a
    /// line without workload fields is first read straight into its types, in two passes over
    /// the bytes (the common fields, then the body, each skipping the other's fields). Only
    /// when that fails (an error to report, or a key given twice, which the map reading lets
    /// the last one win) is the line read the general way, whose result and errors stand.
    pub fn parse(line: &[u8]) -> Result<Self, serde_json::Error> {
        if !has_workload_fields(line)
            && let Ok(record) = Self::parse_direct(line)
        {
            return Ok(record);
        }
        serde_json::from_slice(line)
    }

    /// The two-pass reading of a line without workload fields (see [`Record::parse`]).
    fn parse_direct(line: &[u8]) -> Result<Self, serde_json::Error> {
        let common: Common = serde_json::from_slice(line)?;
        let mut de = serde_json::Deserializer::from_slice(line);
        let body = Body::read(common.kind, &mut de)?;
        de.end()?;
        Ok(Record {
            time: common.time,
            host: common.host,
            identity: common.identity,
            session: common.session,
            pid: common.pid,
            exec_id: common.exec_id,
            workload: None,
            body,
            redacted: common.redacted,
        })
    }
}

/// Whether the line may hold a workload's fields (`k8s.…`, `container.…`, or a key spelt with
/// `\u` escapes, which could be one); a text that merely mentions one only sends the line the
/// general way.
fn has_workload_fields(line: &[u8]) -> bool {
    let contains = |needle: &[u8]| line.windows(needle.len()).any(|w| w == needle);
    contains(b"\"k8s.") || contains(b"\"container.") || contains(b"\\u")
}

/// The common fields of a line, the body's skipped (no body field has one of these names).
#[derive(Deserialize)]
struct Common {
    kind: Kind,
    time: Timestamp,
    host: String,
    #[serde(default)]
    identity: String,
    #[serde(default)]
    session: String,
    #[serde(default)]
    pid: u32,
    #[serde(default)]
    exec_id: String,
    #[serde(default)]
    redacted: Vec<String>,
}

/// The line as written: the common fields first, `kind` leading, then the workload's (when
/// there is one), then the body's.
#[derive(Serialize)]
struct LineOut<'a> {
    kind: Kind,
    time: Timestamp,
    host: &'a str,
    identity: &'a str,
    session: &'a str,
    pid: u32,
    exec_id: &'a str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    workload: Option<&'a Workload>,
    #[serde(flatten)]
    body: &'a Body,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    redacted: &'a [String],
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        LineOut {
            kind: self.kind(),
            time: self.time,
            host: &self.host,
            identity: &self.identity,
            session: &self.session,
            pid: self.pid,
            exec_id: &self.exec_id,
            workload: self.workload.as_deref(),
            body: &self.body,
            redacted: &self.redacted,
        }
        .serialize(s)
    }
}

/// The line as read: the common fields, and the rest for the body of its kind.
#[derive(Deserialize)]
struct LineIn {
    kind: Kind,
    time: Timestamp,
    host: String,
    #[serde(default)]
    identity: String,
    #[serde(default)]
    session: String,
    #[serde(default)]
    pid: u32,
    #[serde(default)]
    exec_id: String,
    #[serde(default)]
    redacted: Vec<String>,
    #[serde(flatten)]
    fields: Map<String, Value>,
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut line = LineIn::deserialize(d)?;
        let workload = Workload::take_from(&mut line.fields).map(Arc::new);
        let body = Body::from_fields(line.kind, line.fields)
            .map_err(|e| serde::de::Error::custom(format_args!("{} record: {e}", line.kind)))?;
        Ok(Record {
            time: line.time,
            host: line.host,
            identity: line.identity,
            session: line.session,
            pid: line.pid,
            exec_id: line.exec_id,
            workload,
            body,
            redacted: line.redacted,
        })
    }
}

#[cfg(test)]
mod tests;
