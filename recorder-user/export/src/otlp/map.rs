//! Records as OpenTelemetry log records (OTLP `ExportLogsServiceRequest`), with attribute names
//! from the semantic conventions where one exists (`process.*`, `db.*`, `http.*`, `url.*`,
//! `server.address`, `k8s.*`, `container.id`, `host.name`) and `recorder.*` where none does.
//! Records are grouped by resource: host, identity and, for identities selected by pod, the pod
//! and container. The body is the record's JSON line, unchanged, so nothing is lost.
use std::collections::BTreeMap;

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber},
    resource::v1::Resource,
};
use recorder_record::{Body, DbSystem, Record, Timestamp};
use recorder_store::StoredRecord;

fn string(v: impl Into<String>) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(v.into())),
    }
}

fn int(v: impl Into<i64>) -> AnyValue {
    AnyValue {
        value: Some(Value::IntValue(v.into())),
    }
}

fn strings(v: &[String]) -> AnyValue {
    AnyValue {
        value: Some(Value::ArrayValue(ArrayValue {
            values: v.iter().map(|s| string(s.as_str())).collect(),
        })),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(value),
    }
}

/// What a group of records shares: the resource they come from.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct ResourceKey {
    host: String,
    identity: String,
    pod_uid: String,
    container_id: String,
}

fn resource(r: &Record) -> Resource {
    let mut attributes = vec![
        kv("service.name", string("recorder")),
        kv("host.name", string(r.host.as_str())),
        kv("recorder.identity", string(r.identity.as_str())),
    ];
    if let Some(w) = &r.workload {
        for (key, value) in [
            ("k8s.namespace.name", &w.namespace),
            ("k8s.pod.name", &w.pod_name),
            ("k8s.pod.uid", &w.pod_uid),
            ("k8s.container.name", &w.container_name),
            ("k8s.node.name", &w.node),
            ("container.id", &w.container_id),
            ("container.image.name", &w.container_image_name),
        ] {
            if !value.is_empty() {
                attributes.push(kv(key, string(value.as_str())));
            }
        }
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// The log record of one stored record.
pub(crate) fn log_record(rec: &StoredRecord, observed: &Timestamp) -> LogRecord {
    let r = &rec.record;
    let kind = r.kind().as_str();
    let mut attrs = vec![
        kv("event.name", string(format!("recorder.{kind}"))),
        kv(
            "recorder.event_id",
            string(format!("{}/{}/{}", rec.host, rec.boot, rec.sequence)),
        ),
        kv("recorder.log_index", int(rec.index as i64)),
        kv("recorder.kind", string(kind)),
        kv("recorder.session", string(r.session.as_str())),
    ];
    if r.pid != 0 {
        attrs.push(kv("process.pid", int(r.pid)));
    }
    body_attributes(&r.body, &mut attrs);
    let (severity, text) = match &r.body {
        Body::Loss(_) | Body::Notice(_) => (SeverityNumber::Warn, "WARN"),
        _ => (SeverityNumber::Info, "INFO"),
    };
    LogRecord {
        time_unix_nano: u64::try_from(r.time.unix_ns()).unwrap_or(0),
        observed_time_unix_nano: u64::try_from(observed.unix_ns()).unwrap_or(0),
        severity_number: severity as i32,
        severity_text: text.into(),
        body: Some(string(String::from_utf8_lossy(&rec.line).into_owned())),
        attributes: attrs,
        event_name: format!("recorder.{kind}"),
        ..Default::default()
    }
}

fn body_attributes(body: &Body, attrs: &mut Vec<KeyValue>) {
    match body {
        Body::Exec(e) => {
            attrs.push(kv("process.command_args", strings(&e.argv)));
            attrs.push(kv("process.command_line", string(e.text.as_str())));
            attrs.push(kv("process.executable.path", string(e.exe.as_str())));
            attrs.push(kv("process.working_directory", string(e.cwd.as_str())));
            attrs.push(kv("process.parent_pid", int(e.ppid)));
            attrs.push(kv("process.user.id", int(e.uid)));
            attrs.push(kv("user.id", string(e.uid.to_string())));
        }
        Body::Exit(e) => {
            if let Some(code) = e.exit_code {
                attrs.push(kv("process.exit.code", int(code)));
            }
            if let Some(signal) = &e.signal_name {
                attrs.push(kv("recorder.exit.signal", string(signal.as_str())));
            }
        }
        Body::Shell(s) => attrs.push(kv("recorder.shell.line", string(s.text.as_str()))),
        Body::Sql(q) => {
            let system = match q.db_system {
                DbSystem::Postgresql => "postgresql",
                DbSystem::Mysql => "mysql",
            };
            attrs.push(kv("db.system", string(system)));
            attrs.push(kv("db.system.name", string(system)));
            attrs.push(kv("db.query.text", string(q.text.as_str())));
            if let Some(db) = &q.db_name {
                attrs.push(kv("db.namespace", string(db.as_str())));
            }
            if let Some(user) = &q.db_user {
                attrs.push(kv("db.user", string(user.as_str())));
            }
            attrs.push(kv("server.address", string(q.db_server.as_str())));
            // The status as the record's JSON spells it.
            let status = serde_json::to_value(q.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            attrs.push(kv("recorder.sql.status", string(status)));
            attrs.push(kv("recorder.sql.result", string(q.result.as_str())));
        }
        Body::K8s(k) => {
            if let Some(method) = &k.method {
                attrs.push(kv("http.request.method", string(method.as_str())));
            }
            if let Some(path) = &k.path {
                attrs.push(kv("url.path", string(path.as_str())));
            }
            if let Some(status) = k.status {
                attrs.push(kv("http.response.status_code", int(status)));
            }
            if let Some(server) = &k.server {
                attrs.push(kv("server.address", string(server.as_str())));
            }
            attrs.push(kv("recorder.k8s.verb", string(k.verb.as_str())));
            if let Some(resource) = &k.resource {
                attrs.push(kv("recorder.k8s.resource", string(resource.as_str())));
            }
            if let Some(ns) = &k.namespace {
                attrs.push(kv("recorder.k8s.namespace", string(ns.as_str())));
            }
        }
        Body::Approval(a) => {
            attrs.push(kv("recorder.approval.state", string(a.state.as_str())));
            attrs.push(kv("recorder.approval.rule", string(a.rule.as_str())));
            attrs.push(kv("recorder.approval.action", string(a.action.as_str())));
            attrs.push(kv("recorder.approval.request", string(a.request.as_str())));
            attrs.push(kv("recorder.approval.text", string(a.text.as_str())));
            if !a.approver.is_empty() {
                attrs.push(kv(
                    "recorder.approval.approver",
                    string(a.approver.as_str()),
                ));
            }
        }
        Body::Loss(_) | Body::Notice(_) => {}
    }
}

/// One export request for `records`, grouped by resource, in log order within each group.
pub(crate) fn request(records: &[&StoredRecord]) -> ExportLogsServiceRequest {
    let observed = Timestamp::now();
    let mut groups: BTreeMap<ResourceKey, (Resource, Vec<LogRecord>)> = BTreeMap::new();
    for rec in records {
        let r = &rec.record;
        let key = ResourceKey {
            host: r.host.clone(),
            identity: r.identity.clone(),
            pod_uid: r
                .workload
                .as_ref()
                .map(|w| w.pod_uid.clone())
                .unwrap_or_default(),
            container_id: r
                .workload
                .as_ref()
                .map(|w| w.container_id.clone())
                .unwrap_or_default(),
        };
        groups
            .entry(key)
            .or_insert_with(|| (resource(r), Vec::new()))
            .1
            .push(log_record(rec, &observed));
    }
    ExportLogsServiceRequest {
        resource_logs: groups
            .into_values()
            .map(|(resource, log_records)| ResourceLogs {
                resource: Some(resource),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "recorder".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    log_records,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}
