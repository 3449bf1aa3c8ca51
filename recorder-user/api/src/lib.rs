//! What crosses between the recorder's processes: the gRPC API (`proto/recorder/v1`), the mutual
//! TLS both ends speak, the PKI that issues and revokes their certificates, and the Prometheus
//! metrics every process serves on one small HTTP endpoint; telling systemd when a process is
//! ready; and the signed operator tokens of the web console.
pub mod client_check;
pub mod http;
pub mod metrics;
pub mod pki;
pub mod proto;
pub mod revocation;
pub mod status;
pub mod systemd;
pub mod tls;
pub mod token;
