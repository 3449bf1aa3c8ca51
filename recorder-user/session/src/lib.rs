//! A session as an operator or an auditor sees it. [`Evidence`] holds a session's records
//! exactly as stored, each with its inclusion proof against one signed checkpoint, the
//! checkpoint and the collector's public key; [`check`] verifies all of it with nothing but
//! the evidence itself, and [`Verdict`] says whether the record of the session is complete.
//! The web console's pages and the evidence bundles carry this same evidence; their viewer
//! (JavaScript, WebCrypto) runs the same checks in the browser.
mod check;
mod evidence;
mod verdict;

pub use check::{Checked, Problem, check};
pub use evidence::{CheckpointView, Evidence, EvidenceRecord, FORMAT, SessionView};
pub use verdict::{GapAt, Verdict};

#[cfg(test)]
mod tests;
