//! The fields of each kind of record. Fields are declared in alphabetical order, the order they
//! are written in. Optional fields are left out when empty; fields documented as "null when
//! unknown" are always written.
use serde::{Deserialize, Deserializer, Serialize};

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_false(b: &bool) -> bool {
    !*b
}

/// A field that is absent in some records and null in others: `None` is absent, `Some(None)`
/// is null. (serde reads a null `Option<Option<_>>` as `None` without this.)
#[expect(
    clippy::option_option,
    reason = "the fields it reads have three states (absent, null, a value) and deserialize_with \
              must return the field's type"
)]
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `exec`: a process image started (or a running process adopted) in a watched identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Exec {
    /// Found already running when its identity was first watched: this is its state then, not
    /// at its exec.
    #[serde(skip_serializing_if = "is_false")]
    pub adopted: bool,
    pub argv: Vec<String>,
    /// How long the real argv was, when it was cut (`argv_truncated`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv_bytes: Option<u64>,
    pub argv_truncated: bool,
    /// The argv memory of the process could not be read.
    #[serde(skip_serializing_if = "is_false")]
    pub argv_unreadable: bool,
    /// The cgroup v2 path, relative to the mount (`/agents/claude`).
    pub cgroup: String,
    pub cwd: String,
    pub exe: String,
    /// Empty for a session's first process.
    pub parent_exec_id: String,
    pub ppid: u32,
    /// The command line, shell-quoted.
    pub text: String,
    pub uid: u32,
}

/// `exit`: a process that exec'd ended, with its exit code or the signal that ended it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Exit {
    /// With `signal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_dumped: Option<bool>,
    pub duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<u8>,
    /// `SIGKILL`, … (with `signal`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal_name: Option<String>,
}

/// `shell`: a line typed at an interactive shell prompt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Shell {
    pub text: String,
    #[serde(skip_serializing_if = "is_false")]
    pub truncated: bool,
}

/// The database protocol of a statement (OpenTelemetry's `db.system`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbSystem {
    #[default]
    Postgresql,
    Mysql,
}

/// How the server answered a statement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqlStatus {
    Ok,
    Error,
    /// No answer was seen (the connection closed, or the process ended, first).
    #[default]
    Unknown,
}

/// `sql`: a statement sent to a database server, with the server's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sql {
    /// The database name; null when the connection's start was not seen.
    #[serde(rename = "db.name")]
    pub db_name: Option<String>,
    /// `host:port`, `[v6]:port` or `unix`.
    #[serde(rename = "db.server")]
    pub db_server: String,
    #[serde(rename = "db.system")]
    pub db_system: DbSystem,
    /// The database user; null when the connection's start was not seen.
    #[serde(rename = "db.user")]
    pub db_user: Option<String>,
    /// Bound parameters in order (null is SQL NULL); absent for statements without any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Vec<Option<String>>>,
    /// The command tag or row count, or the error with its code.
    pub result: String,
    pub status: SqlStatus,
    pub text: String,
    pub tls: bool,
    /// The text or a parameter was cut at its bound.
    #[serde(skip_serializing_if = "is_false")]
    pub truncated: bool,
}

/// Where a `k8s` record comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum K8sSource {
    /// A `kubectl` command line, parsed.
    #[default]
    Kubectl,
    /// A Kubernetes API request seen on the wire.
    Api,
}

/// `k8s`: a `kubectl` invocation (`source: kubectl`, from its argv) or a Kubernetes API request
/// (`source: api`, from the wire). Fields marked kubectl or api appear only in those records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct K8s {
    /// kubectl: `-A`/`--all-namespaces`.
    #[serde(skip_serializing_if = "is_false")]
    pub all_namespaces: bool,
    /// kubectl: `--context` (null when not given).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub context: Option<Option<String>>,
    /// kubectl: the files and directories it reads manifests from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<String>>,
    /// api: `1.1` or `2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// kubectl: `--kubeconfig` (null when not given).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub kubeconfig: Option<Option<String>>,
    /// api: the HTTP method (null in kubectl records).
    pub method: Option<String>,
    /// The object's name (the first one, for kubectl).
    pub name: Option<String>,
    /// kubectl: every object name, when there are several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    pub namespace: Option<String>,
    /// api: the request target (null in kubectl records).
    pub path: Option<String>,
    pub resource: Option<String>,
    /// api: the API server's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub source: K8sSource,
    /// api: the response status (null when no response was seen, and in kubectl records).
    pub status: Option<u16>,
    /// api: `log`, `exec`, `status`, `scale`…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    pub text: String,
    /// api: whether the request went through TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    /// api: the method, path or authority was cut at its bound.
    #[serde(skip_serializing_if = "is_false")]
    pub truncated: bool,
    pub verb: String,
}

/// `loss`: events that happened and are not recorded, counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Loss {
    pub count: u64,
    /// The kind of kernel event lost (`data`, `exec`, `process`…); absent for losses after
    /// the kernel (a full spool).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_kind: Option<String>,
    /// `ring_buffer_full`, `process_table_full`, `spool_full`, `record_too_large`.
    pub reason: String,
}

/// `notice`: something the record cannot show, or shows only in part, said out loud.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Notice {
    /// `cgroup_migration`: the cgroup the process runs in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    pub detail: String,
    pub reason: String,
}

/// `approval`: an action held before it took effect because a rule asks for an operator's
/// approval. One record when the process is held (`pending`), one when it is resolved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Approval {
    /// `exec`, `sql` or `k8s`.
    pub action: String,
    /// The operator's name (certificate common name) for `approved`/`denied`; empty otherwise.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub approver: String,
    /// Why it was decided so: the operator's reason, the timeout, the agent's restart.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// How long the process was held, in milliseconds (0 while `pending`).
    pub held_ms: u64,
    /// The request's id, shared by its `pending` record and its decision.
    pub request: String,
    /// The rule that asked for approval.
    pub rule: String,
    /// `pending`, `approved`, `denied`, `timed_out` (denied by the agent at its timeout), `ended`
    /// (the process ended while held), `bypassed` (continued by another process, then killed) or
    /// `resolved_at_restart` (the agent restarted while holding it; see `detail` for the outcome).
    pub state: String,
    /// What the action does (or would have done): the command line, the statement, the call.
    pub text: String,
}
