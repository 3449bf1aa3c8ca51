//! The OTLP exporter against a receiver built on the official generated classes (PyPI
//! `opentelemetry-proto` and `grpcio`, tests/peers/otlp_receiver.py): gRPC over TLS and
//! HTTP/protobuf. Every record kind arrives with its attributes under the semantic-convention
//! names, each with the protobuf value type a receiver expects.
mod collector_support;

use std::{
    collections::HashMap,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use collector_support::*;
use recorder_tests::read_jsonl;
use serde_json::{Value, json};

struct Receiver {
    child: Child,
    out: std::path::PathBuf,
}

impl Receiver {
    fn start(dir: &Path, grpc: u16, http: u16, tls: (&str, &str)) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/otlp_receiver.py");
        let out = dir.join("otlp.jsonl");
        let child = Command::new("python3")
            .arg(script)
            .args([grpc.to_string(), http.to_string()])
            .arg(&out)
            .args([tls.0, tls.1])
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 (run `cargo xtask setup` for grpcio and opentelemetry-proto)");
        let mut r = Self { child, out };
        for port in [grpc, http] {
            assert!(
                wait_for(Duration::from_secs(20), || std::net::TcpStream::connect((
                    "127.0.0.1",
                    port
                ))
                .is_ok()),
                "the OTLP receiver did not listen on {port}: {:?}",
                r.child.try_wait()
            );
        }
        r
    }

    fn received(&self, transport: &str) -> Vec<Value> {
        read_jsonl(&self.out)
            .into_iter()
            .filter(|v| v["transport"] == transport)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The golden records of every kind the agent writes, and one exec of a pod.
fn input() -> Vec<String> {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../recorder-user/agent/tests/fixtures/records/golden.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(golden)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let exec = lines
        .iter()
        .find(|l| l.starts_with(r#"{"kind":"exec""#))
        .unwrap()
        .clone();
    let mut pod: serde_json::Map<String, Value> = serde_json::from_str(&exec).unwrap();
    for (k, v) in [
        ("k8s.namespace.name", "agents"),
        ("k8s.pod.name", "claude-0"),
        ("k8s.pod.uid", "0b5e7c2e-1f4a-4c1e-9a57-3f0f2b1d9e11"),
        ("k8s.container.name", "agent"),
        ("k8s.node.name", "node-1"),
        ("container.id", &"4f2a".repeat(16)),
        ("container.image.name", "registry.example/claude:1.2"),
    ] {
        pod.insert(k.into(), json!(v));
    }
    lines.push(Value::Object(pod).to_string());
    lines
}

/// `[kind, value]` of an attribute.
fn attr<'a>(rec: &'a Value, key: &str) -> &'a Value {
    &rec["attributes"][key]
}

#[test]
fn otlp_over_grpc_and_http_carries_every_kind_with_typed_attributes() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let (grpc, http) = (free_port(), free_port());
    // The receiver's gRPC side speaks TLS with a certificate for localhost issued by the CA.
    let receiver = Receiver::start(
        tmp.path(),
        grpc,
        http,
        (&pki.path("collector.pem"), &pki.path("collector-key.pem")),
    );
    let config = tmp.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[export]]
name = "otel-grpc"
type = "otlp"
endpoint = "https://localhost:{grpc}"
ca = "{}"
headers = {{ "x-api-key" = "k1" }}

[[export]]
name = "otel-http"
type = "otlp"
protocol = "http"
endpoint = "http://127.0.0.1:{http}"
"#,
            pki.path("ca.pem")
        ),
    )
    .unwrap();
    let col = Collector::start(
        &pki,
        &tmp.path().join("data"),
        0,
        &["--config", config.to_str().unwrap()],
    );
    let lines = input();
    let o = ship(&pki, col.port, tmp.path(), "a", &lines, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        wait_for(Duration::from_secs(60), || {
            receiver.received("grpc").len() >= lines.len()
                && receiver.received("http").len() >= lines.len()
        }),
        "grpc {} http {} of {}\n{}",
        receiver.received("grpc").len(),
        receiver.received("http").len(),
        lines.len(),
        col.log()
    );

    for transport in ["grpc", "http"] {
        let got = receiver.received(transport);
        assert_eq!(got.len(), lines.len(), "{transport}: sent once each");
        let by_seq: HashMap<usize, &Value> = got
            .iter()
            .map(|r| {
                let id = attr(r, "recorder.event_id")[1].as_str().unwrap();
                (id.rsplit('/').next().unwrap().parse().unwrap(), r)
            })
            .collect();
        for (i, line) in lines.iter().enumerate() {
            let rec = by_seq[&(i + 1)];
            let want: Value = serde_json::from_str(line).unwrap();
            let kind = want["kind"].as_str().unwrap();
            let ctx = format!("{transport} {kind} record {}", i + 1);
            // The body is the record's line; time and resource come from it.
            assert_eq!(rec["body"], json!(["string_value", line]), "{ctx}");
            let time: recorder_record::Timestamp = want["time"].as_str().unwrap().parse().unwrap();
            assert_eq!(rec["time_unix_nano"], json!(time.unix_ns() as u64), "{ctx}");
            assert_eq!(rec["event_name"], format!("recorder.{kind}"), "{ctx}");
            assert_eq!(rec["scope"], "recorder", "{ctx}");
            let res = &rec["resource"];
            assert_eq!(res["host.name"], json!(["string_value", "web-1"]), "{ctx}");
            assert_eq!(
                res["service.name"],
                json!(["string_value", "recorder"]),
                "{ctx}"
            );
            assert_eq!(
                res["recorder.identity"],
                json!(["string_value", want["identity"]]),
                "{ctx}"
            );
            assert_eq!(
                attr(rec, "recorder.session"),
                &json!(["string_value", want["session"]]),
                "{ctx}"
            );
            assert_eq!(
                attr(rec, "recorder.kind"),
                &json!(["string_value", kind]),
                "{ctx}"
            );
            assert_eq!(attr(rec, "recorder.log_index")[0], "int_value", "{ctx}");
            if want["pid"].as_u64().unwrap_or(0) != 0 {
                assert_eq!(
                    attr(rec, "process.pid"),
                    &json!(["int_value", want["pid"]]),
                    "{ctx}"
                );
            }
            let severity = if matches!(kind, "loss" | "notice") {
                13
            } else {
                9
            };
            assert_eq!(rec["severity_number"], severity, "{ctx}");
            match kind {
                "exec" => {
                    let argv: Vec<Value> = want["argv"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| json!(["string_value", a]))
                        .collect();
                    assert_eq!(
                        attr(rec, "process.command_args"),
                        &json!(["array_value", argv]),
                        "{ctx}"
                    );
                    assert_eq!(
                        attr(rec, "process.command_line"),
                        &json!(["string_value", want["text"]]),
                        "{ctx}"
                    );
                    assert_eq!(
                        attr(rec, "process.executable.path"),
                        &json!(["string_value", want["exe"]]),
                        "{ctx}"
                    );
                    assert_eq!(
                        attr(rec, "process.working_directory"),
                        &json!(["string_value", want["cwd"]]),
                        "{ctx}"
                    );
                    assert_eq!(
                        attr(rec, "process.parent_pid"),
                        &json!(["int_value", want["ppid"]]),
                        "{ctx}"
                    );
                    assert_eq!(
                        attr(rec, "process.user.id"),
                        &json!(["int_value", want["uid"]]),
                        "{ctx}"
                    );
                    if want.get("k8s.pod.name").is_some() {
                        for key in [
                            "k8s.namespace.name",
                            "k8s.pod.name",
                            "k8s.pod.uid",
                            "k8s.container.name",
                            "k8s.node.name",
                            "container.id",
                            "container.image.name",
                        ] {
                            assert_eq!(
                                res[key],
                                json!(["string_value", want[key]]),
                                "{ctx}: {key}"
                            );
                        }
                    } else {
                        assert!(res.get("k8s.pod.name").is_none(), "{ctx}");
                    }
                }
                "exit" if !want["exit_code"].is_null() => {
                    assert_eq!(
                        attr(rec, "process.exit.code"),
                        &json!(["int_value", want["exit_code"]]),
                        "{ctx}"
                    );
                }
                "shell" => {
                    assert_eq!(
                        attr(rec, "recorder.shell.line"),
                        &json!(["string_value", want["text"]]),
                        "{ctx}"
                    );
                }
                "sql" => {
                    assert_eq!(
                        attr(rec, "db.system"),
                        &json!(["string_value", want["db.system"]]),
                        "{ctx}"
                    );
                    assert_eq!(
                        attr(rec, "db.system.name"),
                        &json!(["string_value", want["db.system"]]),
                        "{ctx}"
                    );
                    assert_eq!(
                        attr(rec, "db.query.text"),
                        &json!(["string_value", want["text"]]),
                        "{ctx}"
                    );
                    assert_eq!(
                        attr(rec, "recorder.sql.status"),
                        &json!(["string_value", want["status"]]),
                        "{ctx}"
                    );
                    assert_eq!(attr(rec, "server.address")[0], "string_value", "{ctx}");
                }
                "k8s" => {
                    assert_eq!(
                        attr(rec, "recorder.k8s.verb"),
                        &json!(["string_value", want["verb"]]),
                        "{ctx}"
                    );
                    if !want["status"].is_null() {
                        assert_eq!(
                            attr(rec, "http.response.status_code"),
                            &json!(["int_value", want["status"]]),
                            "{ctx}"
                        );
                    }
                    if !want["path"].is_null() {
                        assert_eq!(
                            attr(rec, "url.path"),
                            &json!(["string_value", want["path"]]),
                            "{ctx}"
                        );
                    }
                    if !want["method"].is_null() {
                        assert_eq!(
                            attr(rec, "http.request.method"),
                            &json!(["string_value", want["method"]]),
                            "{ctx}"
                        );
                    }
                }
                _ => {}
            }
        }
        println!(
            "{transport}: {} records, every attribute of the expected type",
            got.len()
        );
    }
    col.stop();
}
