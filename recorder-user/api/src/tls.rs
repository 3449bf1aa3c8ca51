//! mTLS for both ends: the collector's rustls server config (client certificates required and
//! verified against the CA) and the client channel used by agents and operators.
use std::{path::Path, sync::Arc};

use rustls::{
    DigitallySignedStruct, ServerConfig,
    client::danger::HandshakeSignatureValid,
    server::danger::{ClientCertVerified, ClientCertVerifier},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject as _};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::client_check::ClientCheck;

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
        .map_err(|e| TlsError::Read {
            path: path.display().to_string(),
            why: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(path.display().to_string()));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Read {
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

/// The collector's TLS: its certificate, and a client certificate required. The chain check of
/// the client certificate (`clients`) is left to the service and run on every call
/// (`Deferred`), so a refused certificate gets a gRPC error that says why instead of a bare TLS
/// alert that TLS 1.3 clients often only see as a closed connection.
pub fn server_config(
    clients: &ClientCheck,
    cert: &Path,
    key: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(Arc::new(Deferred(clients.verifier())))
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| TlsError::Config(format!("{} / {}: {e}", cert.display(), key.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Requires a client certificate and proof of its private key in the handshake, and leaves the
/// chain check to the service (see `server_config`). The handshake's signature checks do not
/// depend on the revocation list, so the verifier of the first list serves them.
#[derive(Debug)]
struct Deferred(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Deferred {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        true
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Checks a client's certificate chain against the CA; the error says why in plain words.
pub fn check_client_chain(
    verifier: &dyn ClientCertVerifier,
    certs: &[CertificateDer<'_>],
) -> Result<(), String> {
    check_client_chain_at(verifier, certs, UnixTime::now())
}

/// `check_client_chain` with the validity dates judged at `now`.
pub fn check_client_chain_at(
    verifier: &dyn ClientCertVerifier,
    certs: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<(), String> {
    let Some((end, intermediates)) = certs.split_first() else {
        return Err("no client certificate presented".into());
    };
    verifier
        .verify_client_cert(end, intermediates, now)
        .map(|_| ())
        .map_err(|e| {
            use rustls::CertificateError as C;
            match &e {
                rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
                    format!("the client certificate has expired ({e})")
                }
                rustls::Error::InvalidCertificate(
                    C::NotValidYet | C::NotValidYetContext { .. },
                ) => {
                    format!("the client certificate is not valid yet ({e})")
                }
                rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
                    format!("the client certificate is not issued by the collector's CA ({e})")
                }
                rustls::Error::InvalidCertificate(C::Revoked) => {
                    "the client certificate is revoked: the CA's revocation list names it".into()
                }
                _ => format!("the client certificate is refused ({e})"),
            }
        })
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
        self.endpoint_at(None)
    }

    /// The URL's host and port.
    fn host_port(&self) -> Option<(&str, u16)> {
        let rest = self.url.strip_prefix("https://")?;
        let authority = rest.split('/').next()?;
        let (host, port) = authority.rsplit_once(':')?;
        Some((host, port.parse().ok()?))
    }

    /// The endpoint, dialled at `address` when given (one address of the URL's name; the
    /// certificate is still checked for the name).
    fn endpoint_at(&self, address: Option<std::net::SocketAddr>) -> Result<Endpoint, TlsError> {
        let url_err = |why: &str| TlsError::Url {
            url: self.url.clone(),
            why: why.to_string(),
        };
        let rest = self
            .url
            .strip_prefix("https://")
            .ok_or_else(|| url_err("the collector is only reachable over https://"))?;
        let host = rest
            .split(['/', ':'])
            .next()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| url_err("no host"))?;
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| TlsError::Read {
                path: p.display().to_string(),
                why: e.to_string(),
            })
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&self.ca)?))
            .identity(Identity::from_pem(read(&self.cert)?, read(&self.key)?))
            .domain_name(host.trim_start_matches('[').trim_end_matches(']'));
        let url = match address {
            Some(a) => format!("https://{a}"),
            None => self.url.clone(),
        };
        Endpoint::from_shared(url)
            .map_err(|e| url_err(&e.to_string()))?
            .tls_config(tls)
            .map_err(|e| TlsError::Config(e.to_string()))
            .map(|e| {
                e.connect_timeout(std::time::Duration::from_secs(10))
                    .tcp_nodelay(true)
            })
    }

    /// Connects. A name with several addresses (a group of collectors behind one DNS name) is
    /// tried address by address until one answers.
    pub async fn connect(&self) -> Result<Channel, ConnectError> {
        let addresses = self.addresses().await;
        if addresses.len() <= 1 {
            return self.connect_at(None).await;
        }
        let mut failed = Vec::new();
        for a in addresses {
            match self.connect_at(Some(a)).await {
                Ok(channel) => return Ok(channel),
                Err(ConnectError::Connect { why, .. }) => failed.push(format!("{a}: {why}")),
                Err(e) => return Err(e),
            }
        }
        Err(ConnectError::Connect {
            url: self.url.clone(),
            why: failed.join("; "),
        })
    }

    /// The addresses of the URL's host when it is a name (none for an address: it is dialled
    /// as it is).
    async fn addresses(&self) -> Vec<std::net::SocketAddr> {
        let Some((host, port)) = self.host_port() else {
            return Vec::new();
        };
        if host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
        {
            return Vec::new();
        }
        let mut found: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map(Iterator::collect)
            .unwrap_or_default();
        found.dedup();
        found
    }

    async fn connect_at(
        &self,
        address: Option<std::net::SocketAddr>,
    ) -> Result<Channel, ConnectError> {
        self.endpoint_at(address)?.connect().await.map_err(|e| {
            let chain = error_chain(&e);
            let why = match explain_tls(&chain) {
                Some(plain) => format!("{plain} ({chain})"),
                None => chain,
            };
            ConnectError::Connect {
                url: self.url.clone(),
                why,
            }
        })
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

/// A plain-words reading of a TLS alert found in an error text, if any.
pub fn explain_tls(text: &str) -> Option<&'static str> {
    let alert = text.split("received fatal alert: ").nth(1)?;
    Some(
        match alert
            .split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or("")
        {
            "CertificateExpired" => {
                "the collector refused this client certificate: it has expired (or is not yet valid)"
            }
            "CertificateRequired" => {
                "the collector requires a client certificate (--tls-cert, --tls-key)"
            }
            "UnknownCA" | "DecryptError" | "BadCertificate" | "UnsupportedCertificate" => {
                "the collector refused this client certificate: it is not issued by the collector's CA"
            }
            "CertificateRevoked" => "the collector refused this client certificate: it is revoked",
            _ => "the collector refused the TLS handshake",
        },
    )
}
