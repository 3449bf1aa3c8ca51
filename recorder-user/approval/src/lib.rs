//! Approval before execution. An operator's rules name the actions that need an approval: an
//! exec whose command line matches a pattern, an SQL statement of a class or on a table (over
//! TLS), a Kubernetes write. The kernel programs stop such a process at the point of no return
//! (`SIGSTOP` from the program: before an exec's first instruction, before a TLS write's bytes
//! leave); the agent matches the action against the rules here, and either lets it go at once
//! (no rule matches) or keeps it held until an operator decides through the collector.
//!
//! - [`config`]: the `[approval]` section of the agent's configuration, checked at start;
//! - [`rules`]: the compiled policy: what the kernel must stop, and which rule an action meets;
//! - [`holds`]: the processes held right now, written to a file so that an agent that died
//!   while holding them resolves them when it comes back.
pub mod config;
pub mod holds;
pub mod rules;

pub use config::{ApprovalConfig, OnRestart};
pub use holds::{Held, HoldsFile};
pub use rules::{Action, Policy, Rule};

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("approval rule {rule:?}: {why}")]
    Rule { rule: String, why: String },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}
