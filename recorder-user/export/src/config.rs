//! `[[export]]` tables of the collector's configuration file: a name, a filter and what the
//! exporter sends to. Unknown keys are errors that name the key and the exporter, so a typo
//! never turns a filter or a TLS setting off.
use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    time::Duration,
};

use recorder_record::{Kind, Record};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("[[export]] number {number}: {why}")]
    Invalid { number: usize, why: String },
    #[error("export {name:?}: {why}")]
    Export { name: String, why: String },
}

/// One `[[export]]` table.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// Names the exporter in logs, metrics and its cursor file; unique.
    pub name: String,
    pub filter: Filter,
    pub sink: SinkConfig,
}

/// Where an exporter sends.
#[derive(Debug, Clone)]
pub enum SinkConfig {
    Syslog(SyslogConfig),
    Otlp(OtlpConfig),
    Webhook(WebhookExportConfig),
    File(FileConfig),
}

impl SinkConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Syslog(_) => "syslog",
            SinkConfig::Otlp(_) => "otlp",
            SinkConfig::Webhook(_) => "webhook",
            SinkConfig::File(_) => "file",
        }
    }
}

/// Which records an exporter sends; an empty list lets everything through.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default)]
    pub identities: Vec<String>,
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Kubernetes namespaces (records of identities selected by pod).
    #[serde(default)]
    pub namespaces: Vec<String>,
}

impl Filter {
    pub fn matches(&self, record: &Record) -> bool {
        let any = |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        any(&self.identities, &record.identity)
            && any(&self.kinds, record.kind().as_str())
            && any(&self.hosts, &record.host)
            && any(
                &self.namespaces,
                record
                    .workload
                    .as_ref()
                    .map_or("", |w| w.namespace.as_str()),
            )
    }

    fn check(&self) -> Result<(), String> {
        for kind in &self.kinds {
            if !Kind::ALL.iter().any(|k| k.as_str() == kind) {
                let known: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                return Err(format!(
                    "filter.kinds: {kind:?} is not a record kind (one of {})",
                    known.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// `type = "syslog"`: RFC 5424 messages over TCP, or TLS (RFC 5425), octet-counted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// `host:port` of the receiver.
    pub address: String,
    /// TLS (RFC 5425) when true; the receiver's certificate is checked against `ca`.
    #[serde(default)]
    pub tls: bool,
    /// The CA (PEM) of the receiver's certificate; required with `tls`.
    pub ca: Option<PathBuf>,
    /// A client certificate and key (PEM) for receivers that require one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name the receiver's certificate must carry (default: the host of `address`).
    pub server_name: Option<String>,
    /// Syslog facility by name (default `local0`).
    #[serde(default = "default_facility")]
    pub facility: String,
    /// How long a record's bytes must have been acknowledged by the receiver's TCP, on a
    /// connection still open, before the record counts as delivered (default 2 s). What is
    /// not yet counted is sent again after a reconnect.
    #[serde(default = "default_confirm_ms")]
    pub confirm_ms: u64,
}

fn default_facility() -> String {
    "local0".into()
}

fn default_confirm_ms() -> u64 {
    2000
}

impl SyslogConfig {
    pub fn confirm(&self) -> Duration {
        Duration::from_millis(self.confirm_ms)
    }

    /// The facility's number (RFC 5424 table 1).
    pub fn facility_code(&self) -> Result<u8, String> {
        const NAMES: [&str; 24] = [
            "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
            "authpriv", "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2",
            "local3", "local4", "local5", "local6", "local7",
        ];
        NAMES
            .iter()
            .position(|n| *n == self.facility)
            .map(|i| i as u8)
            .ok_or_else(|| {
                format!(
                    "facility {:?} is not a syslog facility (one of {})",
                    self.facility,
                    NAMES.join(", ")
                )
            })
    }

    fn check(&self) -> Result<(), String> {
        self.facility_code()?;
        if !self.address.contains(':') {
            return Err(format!(
                "address {:?}: give host:port (6514 is syslog over TLS, 601 or 514 over TCP)",
                self.address
            ));
        }
        if self.tls && self.ca.is_none() {
            return Err(
                "tls = true needs ca = \"FILE\" (the CA of the receiver's certificate)".into(),
            );
        }
        if !self.tls && (self.ca.is_some() || self.cert.is_some()) {
            return Err("ca and cert are TLS settings: add tls = true".into());
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err("cert and key go together".into());
        }
        Ok(())
    }
}

/// `type = "otlp"`: OpenTelemetry logs over gRPC or HTTP/protobuf.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// `http(s)://host:4317` for gRPC; for HTTP the base URL (`/v1/logs` is added unless the
    /// URL has a path of its own), usually port 4318.
    pub endpoint: String,
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// The CA (PEM) of the receiver's certificate for `https://` (default: the system's).
    pub ca: Option<PathBuf>,
    /// A client certificate and key (PEM) for receivers that require one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Headers sent with every request (gRPC metadata), e.g. an API key.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Seconds to wait for an answer (default 10).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    #[default]
    Grpc,
    Http,
}

fn default_timeout_secs() -> u64 {
    10
}

impl OtlpConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }

    /// Where OTLP/HTTP requests go.
    pub fn logs_url(&self) -> String {
        let rest = self
            .endpoint
            .split_once("://")
            .map_or(self.endpoint.as_str(), |(_, r)| r);
        if rest.contains('/') && !rest.ends_with('/') {
            self.endpoint.clone()
        } else {
            format!("{}/v1/logs", self.endpoint.trim_end_matches('/'))
        }
    }

    fn check(&self) -> Result<(), String> {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(format!(
                "endpoint {:?}: give http://host:port or https://host:port",
                self.endpoint
            ));
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err("cert and key go together".into());
        }
        if !self.endpoint.starts_with("https://") && (self.ca.is_some() || self.cert.is_some()) {
            return Err("ca and cert are TLS settings: use an https:// endpoint".into());
        }
        Ok(())
    }
}

/// `type = "webhook"`: records sent in signed JSON batches (HTTP POST).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookExportConfig {
    /// `http://` or `https://` URL.
    pub url: String,
    /// The HMAC key of the signature header, or a file holding it.
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    /// The CA (PEM) of the receiver's certificate (default: the system's).
    pub ca: Option<PathBuf>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Seconds to wait for an answer (default 10).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

impl WebhookExportConfig {
    /// The signing key.
    pub fn secret(&self) -> Result<Vec<u8>, String> {
        let secret = match (&self.secret, &self.secret_file) {
            (Some(s), None) => s.clone().into_bytes(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read {}: {e}", f.display()))?
                .trim_end_matches(['\n', '\r'])
                .as_bytes()
                .to_vec(),
            _ => return Err("give exactly one of secret or secret_file".into()),
        };
        if secret.is_empty() {
            return Err("the secret is empty".into());
        }
        Ok(secret)
    }

    fn check(&self) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!("url {:?}: give http:// or https://", self.url));
        }
        if self.secret.is_some() == self.secret_file.is_some() {
            return Err("give exactly one of secret or secret_file".into());
        }
        Ok(())
    }
}

/// `type = "file"`: JSON Lines in a directory, rotated by size and age, compressed when closed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub dir: PathBuf,
    /// The file's name without extension (default `recorder`): `recorder.jsonl` is written,
    /// closed files are `recorder-<time>.jsonl.gz`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Rotate when the file reaches this size (MiB, default 100)...
    #[serde(default = "default_max_mib")]
    pub max_mib: u64,
    /// ...or this age (seconds, default 3600).
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
    /// Gzip closed files (default true).
    #[serde(default = "default_true")]
    pub compress: bool,
    /// Elastic Common Schema field names instead of the record's own.
    #[serde(default)]
    pub ecs: bool,
}

fn default_prefix() -> String {
    "recorder".into()
}
fn default_max_mib() -> u64 {
    100
}
fn default_max_age_secs() -> u64 {
    3600
}
fn default_true() -> bool {
    true
}

impl FileConfig {
    fn check(&self) -> Result<(), String> {
        if self.prefix.is_empty() || self.prefix.contains('/') {
            return Err(format!(
                "prefix {:?}: a file name, without '/'",
                self.prefix
            ));
        }
        if self.max_mib == 0 || self.max_age_secs == 0 {
            return Err("max_mib and max_age_secs must be above 0".into());
        }
        Ok(())
    }
}

/// Reads the `[[export]]` tables of a collector configuration (TOML text).
pub fn parse(text: &str) -> Result<Vec<ExportConfig>, ConfigError> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        export: Vec<toml::Table>,
    }
    let file: File = toml::from_str(text).map_err(|e| ConfigError::Invalid {
        number: 0,
        why: e.to_string(),
    })?;
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, mut table) in file.export.into_iter().enumerate() {
        let number = i + 1;
        let invalid = |why: String| ConfigError::Invalid { number, why };
        let name = match table.remove("name") {
            Some(toml::Value::String(s)) if valid_name(&s) => s,
            Some(v) => {
                return Err(invalid(format!(
                    "name = {v}: letters, digits, '-' and '_' only"
                )));
            }
            None => return Err(invalid("needs name = \"...\"".into())),
        };
        if !names.insert(name.clone()) {
            return Err(invalid(format!("name {name:?} is used twice")));
        }
        let bad = |why: String| ConfigError::Export {
            name: name.clone(),
            why,
        };
        let filter: Filter = match table.remove("filter") {
            Some(v) => v.try_into().map_err(|e| bad(format!("filter: {e}")))?,
            None => Filter::default(),
        };
        filter.check().map_err(&bad)?;
        let Some(toml::Value::String(kind)) = table.remove("type") else {
            return Err(bad(
                "needs type = \"syslog\", \"otlp\", \"webhook\" or \"file\"".into(),
            ));
        };
        let rest = toml::Value::Table(table);
        let sink = match kind.as_str() {
            "syslog" => {
                let c: SyslogConfig = rest.try_into().map_err(|e| bad(e.to_string()))?;
                c.check().map_err(&bad)?;
                SinkConfig::Syslog(c)
            }
            "otlp" => {
                let c: OtlpConfig = rest.try_into().map_err(|e| bad(e.to_string()))?;
                c.check().map_err(&bad)?;
                SinkConfig::Otlp(c)
            }
            "webhook" => {
                let c: WebhookExportConfig = rest.try_into().map_err(|e| bad(e.to_string()))?;
                c.check().map_err(&bad)?;
                SinkConfig::Webhook(c)
            }
            "file" => {
                let c: FileConfig = rest.try_into().map_err(|e| bad(e.to_string()))?;
                c.check().map_err(&bad)?;
                SinkConfig::File(c)
            }
            other => {
                return Err(bad(format!(
                    "type {other:?} is not an exporter (syslog, otlp, webhook or file)"
                )));
            }
        };
        out.push(ExportConfig { name, filter, sink });
    }
    Ok(out)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_kinds_with_defaults() {
        let c = parse(
            r#"
            [[export]]
            name = "siem"
            type = "syslog"
            address = "127.0.0.1:6514"
            tls = true
            ca = "/etc/ca.pem"
            filter = { identities = ["claude"], kinds = ["sql"] }

            [[export]]
            name = "files"
            type = "file"
            dir = "/var/log/recorder"
            "#,
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        let SinkConfig::Syslog(s) = &c[0].sink else {
            panic!("syslog expected")
        };
        assert_eq!(s.facility_code(), Ok(16));
        assert_eq!(s.confirm(), Duration::from_secs(2));
        assert_eq!(c[0].filter.identities, ["claude"]);
        let SinkConfig::File(f) = &c[1].sink else {
            panic!("file expected")
        };
        assert_eq!((f.max_mib, f.max_age_secs, f.compress), (100, 3600, true));
    }

    #[test]
    fn otlp_urls() {
        let url = |endpoint: &str| {
            let c = parse(&format!(
                "[[export]]\nname='o'\ntype='otlp'\nprotocol='http'\nendpoint='{endpoint}'"
            ))
            .unwrap();
            let SinkConfig::Otlp(o) = &c[0].sink else {
                panic!("otlp expected")
            };
            o.logs_url()
        };
        assert_eq!(url("http://c:4318"), "http://c:4318/v1/logs");
        assert_eq!(url("http://c:4318/"), "http://c:4318/v1/logs");
        assert_eq!(url("https://c/otlp/v1/logs"), "https://c/otlp/v1/logs");
        assert!(
            parse("[[export]]\nname='o'\ntype='otlp'\nendpoint='c:4317'")
                .unwrap_err()
                .to_string()
                .contains("give http://")
        );
    }

    #[test]
    fn mistakes_are_named() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        assert!(
            err("[[export]]\nname='a'\ntype='syslog'\naddres='x:1'")
                .contains("unknown field `addres`")
        );
        assert!(err("[[export]]\nname='a'\ntype='kafka'").contains("\"kafka\" is not an exporter"));
        assert!(
            err("[[export]]\nname='a'\ntype='syslog'\naddress='h:1'\ntls=true")
                .contains("needs ca")
        );
        assert!(
            err("[[export]]\nname='a'\ntype='file'\ndir='/x'\nfilter={kinds=['select']}")
                .contains("\"select\" is not a record kind")
        );
        assert!(
            err("[[export]]\nname='a'\ntype='file'\ndir='/x'\n[[export]]\nname='a'\ntype='file'\ndir='/y'")
                .contains("used twice")
        );
        assert!(err("[[export]]\ntype='file'").contains("needs name"));
        assert!(
            err("[[export]]\nname='a'\ntype='syslog'\naddress='h:1'\nfacility='local9'")
                .contains("not a syslog facility")
        );
    }
}
