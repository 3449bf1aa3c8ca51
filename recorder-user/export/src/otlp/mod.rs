//! The OTLP exporter: records as OpenTelemetry logs, over gRPC (`LogsService/Export`) or over
//! HTTP (`POST /v1/logs`, `application/x-protobuf`), to an OpenTelemetry Collector, Grafana,
//! Datadog, Elastic or Splunk. A batch counts as delivered when the receiver answered it with
//! success; records the receiver rejected (a partial success) are logged and counted, not sent
//! again, since sending them again would be rejected again.
mod map;

use std::str::FromStr as _;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceResponse, logs_service_client::LogsServiceClient,
};
use prost::Message as _;
use recorder_api::metrics::{Counter, Registry};
use recorder_store::StoredRecord;
use tonic::{
    metadata::{MetadataKey, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::{
    config::{OtlpConfig, OtlpProtocol},
    cursor::Position,
    http::{HttpClient, SYSTEM_CAS},
};

enum Transport {
    Grpc(LogsServiceClient<Channel>),
    Http(Box<HttpClient>),
}

pub(crate) struct OtlpSink {
    endpoint: String,
    transport: Transport,
    headers: Vec<(String, String)>,
    /// The log index the last successful export reached, until the runner takes it.
    delivered: Option<u64>,
    rejected: Counter,
}

impl OtlpSink {
    pub(crate) fn new(cfg: &OtlpConfig, name: &str) -> Result<Self, String> {
        let https = cfg.endpoint.starts_with("https://");
        let ca = cfg
            .ca
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from(SYSTEM_CAS));
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let transport = match cfg.protocol {
            OtlpProtocol::Grpc => {
                let mut endpoint = Endpoint::from_shared(cfg.endpoint.clone())
                    .map_err(|e| format!("endpoint {:?}: {e}", cfg.endpoint))?
                    .connect_timeout(cfg.timeout())
                    .timeout(cfg.timeout());
                if https {
                    let mut tls =
                        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&ca)?));
                    if let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) {
                        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
                    }
                    endpoint = endpoint.tls_config(tls).map_err(|e| format!("TLS: {e}"))?;
                }
                Transport::Grpc(LogsServiceClient::new(endpoint.connect_lazy()))
            }
            OtlpProtocol::Http => Transport::Http(Box::new(HttpClient::new(
                &cfg.logs_url(),
                Some(&ca),
                cfg.cert.as_deref().zip(cfg.key.as_deref()),
                Vec::new(),
                cfg.timeout(),
            )?)),
        };
        Ok(Self {
            endpoint: cfg.endpoint.clone(),
            transport,
            headers: cfg
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            delivered: None,
            rejected: Registry::global().counter(
                "recorder_export_rejected_total",
                "Records an OTLP receiver refused for good (partial success); not sent again.",
                &[("export", name)],
            ),
        })
    }

    /// Exports `records` (the chosen ones of the log up to `next`) in one request.
    pub(crate) async fn send(
        &mut self,
        records: &[&StoredRecord],
        next: u64,
    ) -> Result<(), String> {
        if !records.is_empty() {
            let request = map::request(records);
            let answer = match &mut self.transport {
                Transport::Grpc(client) => {
                    let mut req = tonic::Request::new(request);
                    for (key, value) in &self.headers {
                        let key =
                            MetadataKey::from_str(key).map_err(|e| format!("header {key}: {e}"))?;
                        let value = MetadataValue::from_str(value)
                            .map_err(|e| format!("header {key}: {e}"))?;
                        req.metadata_mut().insert(key, value);
                    }
                    client
                        .export(req)
                        .await
                        .map_err(|s| {
                            format!("{}: {} ({:?})", self.endpoint, s.message(), s.code())
                        })?
                        .into_inner()
                }
                Transport::Http(client) => {
                    let extra: Vec<(&str, String)> = self
                        .headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.clone()))
                        .collect();
                    let body = client
                        .post("application/x-protobuf", &extra, request.encode_to_vec())
                        .await
                        .map_err(|e| format!("{}: {e}", self.endpoint))?;
                    // An empty body is a full success.
                    ExportLogsServiceResponse::decode(body)
                        .map_err(|e| format!("{}: not an OTLP answer: {e}", self.endpoint))?
                }
            };
            if let Some(partial) = answer.partial_success
                && partial.rejected_log_records > 0
            {
                self.rejected.add(partial.rejected_log_records as u64);
                tracing::warn!(
                    endpoint = %self.endpoint,
                    rejected = partial.rejected_log_records,
                    message = %partial.error_message,
                    "the OTLP receiver refused some records"
                );
            }
        }
        self.delivered = Some(next);
        Ok(())
    }

    pub(crate) fn confirmed(&mut self) -> Option<Position> {
        self.delivered.take().map(|next| Position {
            next,
            file_offset: None,
        })
    }

    pub(crate) fn reset(&mut self) {
        self.delivered = None;
    }
}
