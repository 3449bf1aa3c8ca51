//! Elastic Common Schema names for a record (the file exporter's `ecs = true`): the fields ECS
//! defines (`@timestamp`, `event.*`, `host.name`, `process.*`, `user.id`, `url.path`,
//! `http.*`, `orchestrator.*`, `container.*`), and the whole record under `recorder`, so that
//! nothing ECS has no field for (SQL text, result, identity, session) is lost.
use recorder_record::Body;
use recorder_store::StoredRecord;
use serde_json::{Map, Value, json};

/// Appends the ECS document of `rec` (one line, no newline) to `out`.
pub(crate) fn write_line(rec: &StoredRecord, out: &mut Vec<u8>) {
    let r = &rec.record;
    let kind = r.kind().as_str();
    let mut doc = Map::new();
    let time = r.time.to_string();
    doc.insert("@timestamp".into(), json!(time));
    let (category, kind_type) = match &r.body {
        Body::Exec(_) => ("process", "start"),
        Body::Exit(_) => ("process", "end"),
        Body::Shell(_) | Body::Approval(_) => ("process", "info"),
        Body::Sql(_) => ("database", "access"),
        Body::K8s(_) => ("web", "access"),
        Body::Loss(_) | Body::Notice(_) => ("host", "info"),
    };
    doc.insert(
        "event".into(),
        json!({
            "id": format!("{}/{}/{}", rec.host, rec.boot, rec.sequence),
            "kind": "event",
            "action": kind,
            "category": [category],
            "type": [kind_type],
            "dataset": format!("recorder.{kind}"),
            "sequence": rec.index,
        }),
    );
    doc.insert("host".into(), json!({ "name": r.host }));
    let mut process = Map::new();
    if r.pid != 0 {
        process.insert("pid".into(), json!(r.pid));
    }
    match &r.body {
        Body::Exec(e) => {
            process.insert("args".into(), json!(e.argv));
            process.insert("command_line".into(), json!(e.text));
            process.insert("executable".into(), json!(e.exe));
            process.insert("working_directory".into(), json!(e.cwd));
            process.insert("parent".into(), json!({ "pid": e.ppid }));
            doc.insert("user".into(), json!({ "id": e.uid.to_string() }));
        }
        Body::Exit(e) => {
            if let Some(code) = e.exit_code {
                process.insert("exit_code".into(), json!(code));
            }
        }
        Body::Shell(s) => {
            process.insert("command_line".into(), json!(s.text));
        }
        Body::K8s(k) => {
            if let Some(method) = &k.method {
                let mut http = json!({ "request": { "method": method } });
                if let Some(status) = k.status {
                    http["response"] = json!({ "status_code": status });
                }
                doc.insert("http".into(), http);
            }
            if let Some(path) = &k.path {
                doc.insert("url".into(), json!({ "path": path }));
            }
        }
        Body::Approval(a) => {
            doc.insert(
                "recorder".into(),
                json!({ "approval": { "state": a.state, "rule": a.rule, "approver": a.approver,
                    "action": a.action, "request": a.request, "text": a.text } }),
            );
        }
        Body::Sql(_) | Body::Loss(_) | Body::Notice(_) => {}
    }
    if !process.is_empty() {
        doc.insert("process".into(), Value::Object(process));
    }
    if let Some(w) = &r.workload {
        doc.insert(
            "orchestrator".into(),
            json!({
                "type": "kubernetes",
                "namespace": w.namespace,
                "resource": { "type": "pod", "name": w.pod_name, "id": w.pod_uid },
            }),
        );
        doc.insert(
            "container".into(),
            json!({ "id": w.container_id, "name": w.container_name, "image": { "name": w.container_image_name } }),
        );
    }
    let original: Value = serde_json::from_slice(&rec.line).unwrap_or(Value::Null);
    doc.insert("recorder".into(), original);
    // Serialising a map of JSON values into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &Value::Object(doc));
}

#[cfg(test)]
mod tests {
    use super::*;
    use recorder_record::Record;

    #[test]
    fn an_exec_in_ecs_names() {
        let line = r#"{"kind":"exec","time":"2026-11-28T10:00:00.000000001Z","host":"web-1","identity":"claude","session":"s0","pid":10001,"exec_id":"b1-1","argv":["git","status"],"argv_truncated":false,"cgroup":"/agents/claude","cwd":"/repo","exe":"/usr/bin/git","parent_exec_id":"b1-0","ppid":4242,"text":"git status","uid":1000}"#;
        let rec = StoredRecord {
            index: 5,
            host: "web-1".into(),
            boot: "b1".into(),
            sequence: 9,
            prev: [0; 32],
            record: Record::parse(line.as_bytes()).unwrap(),
            line: line.as_bytes().to_vec(),
        };
        let mut out = Vec::new();
        write_line(&rec, &mut out);
        let doc: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["@timestamp"], "2026-11-28T10:00:00.000000001Z");
        assert_eq!(doc["event"]["id"], "web-1/b1/9");
        assert_eq!(doc["event"]["category"], json!(["process"]));
        assert_eq!(doc["process"]["args"], json!(["git", "status"]));
        assert_eq!(doc["process"]["parent"]["pid"], 4242);
        assert_eq!(doc["user"]["id"], "1000");
        assert_eq!(doc["recorder"]["identity"], "claude");
    }
}
