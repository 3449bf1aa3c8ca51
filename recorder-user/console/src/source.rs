//! What the console reads, and from where: the collector implements [`Source`] for its store
//! (embedded or PostgreSQL) and forwards what it stores and the alerts it raises as [`Live`].
//! It also holds the approval requests of held actions, which operators decide here.
use std::sync::Arc;

use futures::future::BoxFuture;
use recorder_store::{
    StoredRecord,
    index::SessionSummary,
    integrity::{Hash, checkpoint::Checkpoint},
};
use serde::Serialize;

/// A reply of the source; the error is a sentence for the operator.
pub type Answer<'a, T> = BoxFuture<'a, Result<T, String>>;

/// Which sessions to list (empty or zero fields do not filter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub identity: String,
    pub host: String,
    pub namespace: String,
    pub pod: String,
    pub since_unix_ns: i64,
    pub until_unix_ns: i64,
    /// Only sessions with a failed action.
    pub failed: bool,
    /// Only sessions with a gap (their own or their host's).
    pub gaps: bool,
}

/// One session: its summary, its records in log order, and the host-wide `loss`/`notice`
/// records of its time.
#[derive(Debug, Clone)]
pub struct SessionRecords {
    pub summary: SessionSummary,
    pub records: Vec<StoredRecord>,
    pub context: Vec<StoredRecord>,
}

pub trait Source: Send + Sync + 'static {
    /// Every session matching the filter, most recently active first; its `gaps` count the
    /// host-wide gaps of its time too.
    fn sessions<'a>(&'a self, filter: &'a Filter) -> Answer<'a, Vec<SessionSummary>>;
    /// One session, if it exists.
    fn session<'a>(&'a self, host: &'a str, session: &'a str)
    -> Answer<'a, Option<SessionRecords>>;
    /// The stored records with log indexes in `from..to` (pruned ones may be missing).
    fn records(&self, from: u64, to: u64) -> Answer<'_, Vec<StoredRecord>>;
    /// How many records the log holds.
    fn size(&self) -> Answer<'_, u64>;
    /// The latest signed checkpoint.
    fn checkpoint(&self) -> Answer<'_, Option<Checkpoint>>;
    /// The inclusion proof of each index in the tree of `size`.
    fn proofs(&self, indexes: Vec<u64>, size: u64) -> Answer<'_, Vec<Option<Vec<Hash>>>>;
    /// The checkpoint signing key (Ed25519, raw).
    fn public_key(&self) -> Vec<u8>;
    /// The approval requests waiting on this collector, oldest first (in memory: no await).
    fn approvals(&self) -> Vec<ApprovalView>;
    /// How many wait (the header's link).
    fn approvals_waiting(&self) -> usize;
    /// Approves or denies one request as the operator `approver`; wakes the agent waiting on it.
    fn decide(
        &self,
        id: &str,
        approve: bool,
        reason: &str,
        approver: &str,
    ) -> Result<DecisionView, DecideError>;
}

/// An action an agent holds until an operator decides (or its deadline passes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalView {
    pub id: String,
    pub host: String,
    pub identity: String,
    pub session: String,
    pub pid: u32,
    /// `exec`, `sql` or `k8s`.
    pub action: String,
    /// The command line, the statement, or the Kubernetes call.
    pub text: String,
    pub rule: String,
    pub held_unix_ns: i64,
    /// When the agent denies it by itself.
    pub deadline_unix_ns: i64,
}

/// A decision made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionView {
    pub id: String,
    /// `approved` or `denied`.
    pub state: String,
    pub approver: String,
    pub decided_unix_ns: i64,
    pub reason: String,
}

/// Why a decision was not taken (the sentence says it to the operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecideError {
    /// No such request here.
    NotFound(String),
    /// Decided already, or expired.
    Conflict(String),
    Invalid(String),
}

/// What the collector tells the console as it happens.
#[derive(Debug, Clone)]
pub enum Live {
    Record(Arc<StoredRecord>),
    Alert(Arc<AlertView>),
}

/// An alert as the console shows it, beside the record that raised it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertView {
    pub host: String,
    pub session: String,
    /// The log index of the record that raised it.
    pub index: u64,
    pub rule: String,
    pub severity: String,
    pub description: String,
    pub detail: String,
    pub time: String,
}
