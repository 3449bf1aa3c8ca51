//! Which binaries carry uprobes, and when they get them: OpenSSL in the system libssl, in
//! private copies and inside executables (`openssl`, sites chosen by `openssl_sites`); bash's
//! `readline` and Go's `crypto/tls` in the programs watched processes run (`programs`, Go
//! executables read by `gobin`). Detaching is slow in the kernel, so it runs on a thread of its
//! own (`reaper`).
pub(crate) mod gobin;
mod mapped_file;
pub(crate) mod openssl;
pub(crate) mod openssl_sites;
pub(crate) mod programs;
pub(crate) mod reaper;
