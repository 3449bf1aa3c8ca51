//! From raw kernel events to records: decode the bytes (`decode`), then give them their meaning
//! (`builder`: ids, sessions, paths, argv, exit status, notices).
pub(crate) mod builder;
pub(crate) mod conn;
pub(crate) mod decode;
#[cfg(test)]
mod golden;
pub(crate) mod http;
pub(crate) mod residents;
pub(crate) mod sql;
pub(crate) mod text;
pub(crate) mod unhooked;
pub(crate) mod workloads;
