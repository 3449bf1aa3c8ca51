//! What every operator command shares: where the collector is, the operator certificate, and
//! turning gRPC refusals into plain sentences.
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tonic::{Status, transport::Channel};

use recorder_api::{
    proto::v1::collector_client::CollectorClient, status::code_name, tls::ClientTls,
};

#[derive(Debug, Clone, Args)]
pub(crate) struct TlsArgs {
    /// The collector, e.g. <https://collector.example:7443>. Several (the flag again, or a
    /// comma-separated list) are tried in turn: any collector of a group answers the same.
    #[arg(
        long,
        value_name = "URL",
        env = "RECORDER_COLLECTOR",
        value_delimiter = ',',
        required = true
    )]
    pub collector: Vec<String>,
    /// CA certificate that signed the collector's certificate (PEM).
    #[arg(long, value_name = "FILE", env = "RECORDER_TLS_CA")]
    pub tls_ca: PathBuf,
    /// This client's certificate (PEM): an operator certificate for reading, an agent certificate
    /// for sending.
    #[arg(long, value_name = "FILE", env = "RECORDER_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", env = "RECORDER_TLS_KEY")]
    pub tls_key: PathBuf,
}

impl TlsArgs {
    /// One client setting per collector named, in order.
    pub(crate) fn client_tls(&self) -> Vec<ClientTls> {
        self.collector
            .iter()
            .map(|url| ClientTls {
                url: url.clone(),
                ca: self.tls_ca.clone(),
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
            })
            .collect()
    }

    /// The first collector that accepts the connection.
    pub(crate) async fn connect(&self) -> anyhow::Result<CollectorClient<Channel>> {
        let mut failures = Vec::new();
        for tls in self.client_tls() {
            match tls.connect().await {
                Ok(channel) => {
                    return Ok(
                        CollectorClient::new(channel).max_decoding_message_size(64 * 1024 * 1024)
                    );
                }
                Err(e) => failures.push(format!("{}: {e}", tls.url)),
            }
        }
        anyhow::bail!("no collector answered: {}", failures.join("; "))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// For people.
    Table,
    /// One JSON object per line (for replay: the stored record lines, byte for byte).
    Jsonl,
}

/// A refusal or failure from the collector, worded for the operator.
#[expect(
    clippy::needless_pass_by_value,
    reason = "made to be passed to `map_err`, which hands over the error by value"
)]
pub(crate) fn status(e: Status) -> anyhow::Error {
    let mut msg = format!(
        "the collector answered {}: {}",
        code_name(e.code()),
        e.message()
    );
    if let Some(source) = std::error::Error::source(&e) {
        msg = format!("{msg} ({})", recorder_api::tls::error_chain(source));
    }
    if let Some(plain) = recorder_api::tls::explain_tls(&msg) {
        msg = format!("{plain}; {msg}");
    }
    anyhow::anyhow!(msg)
}

/// A small runtime for one command.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(rt.block_on(f))
}
