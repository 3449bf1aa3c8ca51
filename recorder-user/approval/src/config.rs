//! `[approval]` in the agent's configuration:
//!
//! ```toml
//! [approval]
//! timeout_secs = 300          # no decision by then: denied (default 5 minutes)
//! on_restart = "deny"         # holds left by an agent that died: "deny" (default) or "approve"
//!
//! [[approval.rule]]
//! name = "terraform-apply"
//! identities = ["claude"]     # default: every watched identity
//! exec = "terraform apply*"   # the command line, program by its file name; * and ? as in a shell
//!
//! [[approval.rule]]
//! name = "destructive-sql"
//! sql = ["drop", "truncate", "delete_without_where", "update_without_where"]
//! tables = ["payments"]       # or: any statement naming one of these tables
//!
//! [[approval.rule]]
//! name = "prod-deletes"
//! kubernetes = ["delete", "deletecollection"]   # verbs
//! namespaces = ["prod"]       # default: every namespace
//! ```
use std::path::PathBuf;

use serde::Deserialize;

/// What a restarted agent does with the processes its predecessor left held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRestart {
    /// Kill them: nobody approved them.
    #[default]
    Deny,
    /// Let them go on.
    Approve,
}

impl OnRestart {
    pub fn as_str(self) -> &'static str {
        match self {
            OnRestart::Deny => "deny",
            OnRestart::Approve => "approve",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalConfig {
    /// Seconds an action waits for a decision before the agent denies it (default 300).
    pub timeout_secs: Option<u64>,
    pub on_restart: OnRestart,
    /// Where the agent keeps the list of processes it holds (default: `holds.json` in the
    /// spool directory).
    pub state_file: Option<PathBuf>,
    #[serde(rename = "rule")]
    pub rules: Vec<RuleConfig>,
}

impl ApprovalConfig {
    pub const DEFAULT_TIMEOUT_SECS: u64 = 300;

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_secs.unwrap_or(Self::DEFAULT_TIMEOUT_SECS))
    }
}

/// One `[[approval.rule]]` as written. Exactly one of `exec`, `sql`/`tables` and `kubernetes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleConfig {
    pub name: String,
    pub identities: Vec<String>,
    pub exec: Option<String>,
    pub sql: Vec<String>,
    pub tables: Vec<String>,
    /// Where the statements travel: `tls` (default; held at the TLS write). `tcp` and `unix`
    /// are refused: on these the bytes leave before the kernel's stop lands.
    pub transport: Option<String>,
    pub kubernetes: Vec<String>,
    pub namespaces: Vec<String>,
    pub resources: Vec<String>,
}
