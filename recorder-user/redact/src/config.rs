//! `[redaction]` in the agent's configuration file.
//!
//! ```toml
//! [redaction]
//! enabled = true                                 # the default
//! key_file = "/var/lib/recorder/redaction.key"   # made (32 random bytes, mode 0600) if missing
//! disable = ["card_number"]                      # default rules to leave out, by name
//!
//! [[redaction.rule]]                             # a regular expression on some fields
//! name = "ticket-tokens"
//! pattern = "tkt_(?P<secret>[A-Za-z0-9]{20})"    # the group `secret`, or the whole match
//! fields = ["argv", "text", "sql.text"]          # default: every field
//! identity = ["claude"]                          # default: every identity
//!
//! [[redaction.rule]]                             # SQL on these tables: literals and parameters
//! name = "cards"
//! tables = ["payments.cards", "cards"]
//!
//! [[redaction.rule]]                             # whole fields of an identity
//! name = "billing-results"
//! identity = ["billing-bot"]
//! whole_fields = ["sql.result"]
//! ```
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionConfig {
    pub enabled: bool,
    pub key_file: Option<PathBuf>,
    pub disable: Vec<String>,
    #[serde(rename = "rule")]
    pub rules: Vec<RuleConfig>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            key_file: None,
            disable: Vec::new(),
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleConfig {
    pub name: String,
    /// A regular expression; its group named `secret`, or the whole match, is redacted.
    pub pattern: Option<String>,
    /// The fields `pattern` applies to (`argv`, `text`, `sql.text`, `sql.params`,
    /// `sql.result`, `k8s.path`, `detail`); default: every one.
    pub fields: Vec<String>,
    /// The identities the rule applies to; default: every one.
    pub identity: Vec<String>,
    /// SQL statements on these tables (`schema.table` or `table`, as the statement names
    /// them): every literal of the statement and every parameter is redacted.
    pub tables: Vec<String>,
    /// These fields are redacted whole, for the rule's identities.
    pub whole_fields: Vec<String>,
}
