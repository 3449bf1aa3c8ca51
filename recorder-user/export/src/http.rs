//! The HTTP client of the OTLP/HTTP and webhook exporters: HTTP/1.1 over rustls (the receiver's
//! certificate checked against the given CA, or the system's), connections kept alive.
use std::{path::Path, str::FromStr as _, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// The system's CA bundle, used when no CA is given.
pub(crate) const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

pub(crate) struct HttpClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: hyper::Uri,
    headers: Vec<(String, String)>,
    timeout: Duration,
}

impl HttpClient {
    pub(crate) fn new(
        url: &str,
        ca: Option<&Path>,
        identity: Option<(&Path, &Path)>,
        headers: Vec<(String, String)>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let ca = ca.unwrap_or(Path::new(SYSTEM_CAS));
        let mut roots = rustls::RootCertStore::empty();
        for cert in recorder_api::tls::load_certs(ca).map_err(|e| e.to_string())? {
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let tls = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    recorder_api::tls::load_certs(cert).map_err(|e| e.to_string())?,
                    recorder_api::tls::load_key(key).map_err(|e| e.to_string())?,
                )
                .map_err(|e| format!("client certificate: {e}"))?,
            None => builder.with_no_client_auth(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            uri: hyper::Uri::from_str(url).map_err(|e| format!("{url:?}: {e}"))?,
            headers,
            timeout,
        })
    }

    /// POSTs `body`; the answer's body on a 2xx, else an error with the status.
    pub(crate) async fn post(
        &self,
        content_type: &str,
        extra: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Bytes, String> {
        let mut req = hyper::Request::post(self.uri.clone()).header("content-type", content_type);
        for (key, value) in &self.headers {
            req = req.header(key.as_str(), value.as_str());
        }
        for (key, value) in extra {
            req = req.header(*key, value.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| recorder_api::tls::error_chain(&e))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                return Err(format!("HTTP status {status}: {text}"));
            }
            Ok(body)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("no answer in {:?}", self.timeout))?
    }
}
