//! Redaction: secrets taken out of a record in the agent, before it reaches the JSON Lines
//! file, the spool or the collector (a signed, append-only log can never be cleaned later).
//!
//! A secret becomes a marker `[redacted:` + 12 hex digits of HMAC-SHA256(key, secret) + `]`:
//! the key stays with the agent, so the marker reveals nothing, and two uses of one secret get
//! the same marker. The record lists the fields it changed (`redacted`), and every value
//! redacted is counted per rule (the agent's `/metrics`).
//!
//! The default rules ([`rules::defaults`]) find credentials in URLs, secret-named flags and
//! `NAME=value` assignments, `Authorization` headers, PEM private keys, AWS, GCP, GitHub, Slack
//! and JWT token shapes, MySQL's `-pSECRET`, PostgreSQL's and MySQL's password statements, and
//! card numbers (Luhn-checked) in SQL. Operators add their own ([`config`]): a regular
//! expression on chosen fields, SQL literals and parameters of statements on named tables, or
//! whole fields of an identity.
pub mod config;
pub mod key;
mod marker;
mod record;
pub mod rules;

pub use config::{RedactionConfig, RuleConfig};
pub use marker::Marker;
pub use record::{Hits, Redactor};

#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error("[[redaction.rule]] {name:?}: {why}")]
    Rule { name: String, why: String },
    #[error("the redaction key {path}: {why}")]
    Key { path: String, why: String },
}

#[cfg(test)]
mod tests;
