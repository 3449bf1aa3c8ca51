//! From raw kernel events to records: decode the bytes (`decode`), then give them their meaning
//! (`records`: ids, sessions, paths, argv, exit status, notices).
pub mod conn;
pub mod decode;
#[cfg(test)]
mod golden;
pub mod http;
pub mod records;
pub mod sql;
pub mod text;
pub mod unhooked;
