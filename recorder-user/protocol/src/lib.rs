//! What the watched processes said on the wire, from bytes: the SQL wire protocols
//! (PostgreSQL, MySQL/MariaDB), HTTP/1.1 and HTTP/2 requests, and what a `kubectl` command line
//! or a Kubernetes API request means.
//!
//! Pure code over bytes and strings: no kernel, no I/O, no async runtime. Every decoder takes
//! chunks cut anywhere, keeps bounded memory per connection and never panics on any input (the
//! fuzz targets in `fuzz/` and the property tests hold it to that).
pub mod http;
pub mod k8s;
pub mod sql;
mod wire;

/// Which way a chunk travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server.
    ToServer,
    /// Server to client.
    ToClient,
}

/// Something about the stream worth reporting that is not a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub reason: &'static str,
    pub detail: String,
}

/// Cuts a conversation into pieces of the given sizes (cycled), each keeping its direction:
/// a decoder must give the same output however the bytes arrive.
#[cfg(test)]
pub(crate) fn rechunk(
    chunks: &[(Direction, Vec<u8>)],
    sizes: &[usize],
) -> Vec<(Direction, Vec<u8>)> {
    let mut pieces = Vec::new();
    let mut k = 0;
    for (dir, bytes) in chunks {
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            let n = sizes[k % sizes.len()].clamp(1, rest.len());
            k += 1;
            pieces.push((*dir, rest[..n].to_vec()));
            rest = &rest[n..];
        }
    }
    pieces
}
