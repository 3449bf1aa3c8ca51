pub mod exec;
pub mod exit;
pub mod fork;
pub mod io_uring;
pub mod library;
pub mod sock;
pub mod tls;
