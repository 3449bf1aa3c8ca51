pub mod exec;
pub mod exit;
pub mod fork;
pub mod sock;
pub mod tls;
