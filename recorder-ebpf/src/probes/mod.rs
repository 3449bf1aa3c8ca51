pub mod exec;
pub mod exit;
pub mod fork;
