//! The web console the collector serves to operators: the sessions list with filters, search
//! and paging; one session as a timeline and a process tree with its SQL, Kubernetes calls,
//! gaps and alerts, replayed step by step or followed live; and its integrity, checked by the
//! collector and again in the browser (WebCrypto: SHA-256 and Ed25519).
//!
//! HTTPS only, on its own address, with the collector's certificate. Operators come in with an
//! operator client certificate of the PKI, or with an operator token (`recorder token`)
//! exchanged for a session cookie; every other caller is refused, and every request of an
//! operator is written to the console's action log. Pages are rendered on the server (maud,
//! which escapes every recorded value); one session is rendered in the browser from its
//! evidence, by the same script an evidence bundle carries, so both show it alike.
//!
//! The console reads the log through [`Source`], which the collector implements for its store.
//! Operators also decide there on the approval requests of held actions (`/approvals`).
mod actions;
mod alerts;
mod api;
mod approvals;
mod assets;
mod auth;
pub mod bundle;
mod live;
mod pages;
mod search;
mod server;
mod source;

pub use api::assemble;
pub use server::{ConsoleError, ConsolePlan, serve};
pub use source::{
    AlertView, Answer, ApprovalView, DecideError, DecisionView, Filter, Live, SessionRecords,
    Source,
};
