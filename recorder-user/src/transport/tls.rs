//! mTLS for both ends: the collector's rustls server config (client certificates required and
//! verified against the CA) and the client channel used by agents and operators.
use std::{path::Path, sync::Arc};

use rustls::{ServerConfig, server::WebPkiClientVerifier};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {why}")]
    Read { path: String, why: String },
    #[error("{0} holds no certificate")]
    NoCert(String),
    #[error("invalid TLS setup: {0}")]
    Config(String),
    #[error("invalid collector URL {url:?}: {why}")]
    Url { url: String, why: String },
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Read { path: path.display().to_string(), why: e.to_string() })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read { path: path.display().to_string(), why: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(path.display().to_string()));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Read { path: path.display().to_string(), why: e.to_string() })
}

/// The collector's TLS: its certificate, and client certificates required, chained to `ca`.
pub fn server_config(ca: &Path, cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| TlsError::Config(format!("CA certificate {}: {e}", ca.display())))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| TlsError::Config(format!("{} / {}: {e}", cert.display(), key.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The client side: where the collector is and which certificate to present.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub url: String,
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl ClientTls {
    /// A lazily connecting channel (connection errors surface on the first call).
    pub fn endpoint(&self) -> Result<Endpoint, TlsError> {
        let url_err = |why: &str| TlsError::Url { url: self.url.clone(), why: why.to_string() };
        let rest = self.url.strip_prefix("https://").ok_or_else(|| url_err("the collector is only reachable over https://"))?;
        let host = rest.split(['/', ':']).next().filter(|h| !h.is_empty()).ok_or_else(|| url_err("no host"))?;
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| TlsError::Read { path: p.display().to_string(), why: e.to_string() })
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&self.ca)?))
            .identity(Identity::from_pem(read(&self.cert)?, read(&self.key)?))
            .domain_name(host.trim_start_matches('[').trim_end_matches(']'));
        Endpoint::from_shared(self.url.clone())
            .map_err(|e| url_err(&e.to_string()))?
            .tls_config(tls)
            .map_err(|e| TlsError::Config(e.to_string()))
            .map(|e| e.connect_timeout(std::time::Duration::from_secs(10)).tcp_nodelay(true))
    }

    pub async fn connect(&self) -> Result<Channel, ConnectError> {
        Ok(self.endpoint()?.connect().await.map_err(|e| ConnectError::Connect { url: self.url.clone(), why: error_chain(&e) })?)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot connect to the collector at {url}: {why}")]
    Connect { url: String, why: String },
}

/// An error and its causes on one line (TLS alerts hide a few levels down).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}
