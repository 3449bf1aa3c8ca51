//! The webhook exporter: records sent (HTTP POST) in batches as JSON,
//! `{"records":[{"event_id":…,"log_index":…,"record":{…}},…]}`, signed like the alert
//! webhooks (`X-Recorder-Signature: sha256=<hex HMAC-SHA256 of the body under the secret>`).
//! A batch is delivered when the receiver answers 2xx.
use std::time::Duration;

use recorder_store::StoredRecord;
use serde_json::value::RawValue;

use crate::{config::WebhookExportConfig, cursor::Position, http::HttpClient};

pub(crate) const SIGNATURE_HEADER: &str = "x-recorder-signature";

pub(crate) struct WebhookSink {
    url: String,
    client: HttpClient,
    key: ring::hmac::Key,
    delivered: Option<u64>,
}

#[derive(serde::Serialize)]
struct Item<'a> {
    event_id: String,
    log_index: u64,
    record: &'a RawValue,
}

impl WebhookSink {
    pub(crate) fn new(cfg: &WebhookExportConfig) -> Result<Self, String> {
        let secret = cfg.secret()?;
        Ok(Self {
            url: cfg.url.clone(),
            client: HttpClient::new(
                &cfg.url,
                cfg.ca.as_deref(),
                None,
                cfg.headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                Duration::from_secs(cfg.timeout_secs.max(1)),
            )?,
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
            delivered: None,
        })
    }

    pub(crate) async fn send(
        &mut self,
        records: &[&StoredRecord],
        next: u64,
    ) -> Result<(), String> {
        if !records.is_empty() {
            let items = records
                .iter()
                .map(|r| {
                    let record: &RawValue = serde_json::from_slice(&r.line)
                        .map_err(|e| format!("log index {}: {e}", r.index))?;
                    Ok(Item {
                        event_id: format!("{}/{}/{}", r.host, r.boot, r.sequence),
                        log_index: r.index,
                        record,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let body = serde_json::to_vec(&serde_json::json!({ "records": items }))
                .map_err(|e| e.to_string())?;
            let signature = signature(&self.key, &body);
            self.client
                .post("application/json", &[(SIGNATURE_HEADER, signature)], body)
                .await
                .map_err(|e| format!("{}: {e}", self.url))?;
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

/// The `X-Recorder-Signature` value of a body: `sha256=<hex HMAC-SHA256 under the secret>`, the
/// same for record webhooks and the collector's alert webhooks.
pub fn signature(key: &ring::hmac::Key, body: &[u8]) -> String {
    format!(
        "sha256={}",
        recorder_record::hex::encode(ring::hmac::sign(key, body).as_ref())
    )
}
