//! Tamper evidence: the RFC 6962 Merkle tree over the whole log, the per-stream hash chain (each
//! stored entry names the leaf hash of its stream's previous entry) and Ed25519-signed
//! checkpoints. Pure functions over bytes; the store and `verify` use them. Hashes, keys and
//! signatures are written in hexadecimal (`recorder_record::hex`).
pub mod checkpoint;
pub mod merkle;

pub use merkle::Hash;
