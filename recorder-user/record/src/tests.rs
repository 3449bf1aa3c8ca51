use super::*;

fn exec_record() -> Record {
    Record {
        time: Timestamp(0),
        host: "h".into(),
        identity: "agent-a".into(),
        session: "s1".into(),
        pid: 42,
        exec_id: "e1".into(),
        workload: None,
        redacted: Vec::new(),
        body: Body::Exec(Exec {
            argv: vec!["ls".into(), "-l".into()],
            text: "ls -l".into(),
            ..Exec::default()
        }),
    }
}

#[test]
fn record_round_trips_and_keeps_common_fields_first() {
    let rec = exec_record();
    let line = rec.to_line();
    assert!(
        line.starts_with(r#"{"kind":"exec","time":"1970-01-01T00:00:00.000000000Z","host":"h","identity":"agent-a","session":"s1","pid":42,"exec_id":"e1","argv":["ls","-l"],"argv_truncated":false,"#),
        "{line}"
    );
    let back = Record::parse(line.as_bytes()).unwrap();
    assert_eq!(back, rec);
    let mut buf = Vec::new();
    rec.write_line(&mut buf);
    assert_eq!(buf, line.as_bytes());
}

#[test]
fn kind_parses_from_its_name() {
    for k in Kind::ALL {
        assert_eq!(k.as_str().parse::<Kind>().unwrap(), k);
    }
    assert!("nope".parse::<Kind>().is_err());
}

#[test]
fn absent_and_null_stay_apart() {
    let kubectl = r#"{"kind":"k8s","time":"1970-01-01T00:00:00.000000000Z","host":"h","identity":"","session":"","pid":1,"exec_id":"","context":null,"files":[],"kubeconfig":"/k","method":null,"name":null,"namespace":null,"path":null,"resource":"pods","source":"kubectl","status":null,"text":"kubectl get pods","verb":"get"}"#;
    let rec = Record::parse(kubectl.as_bytes()).unwrap();
    let Body::K8s(k) = &rec.body else {
        panic!("not k8s: {rec:?}")
    };
    assert_eq!(k.context, Some(None));
    assert_eq!(k.kubeconfig, Some(Some("/k".into())));
    assert_eq!(k.server, None);
    assert_eq!(rec.to_line(), kubectl);
}

#[test]
fn reading_is_lenient_on_body_fields_and_strict_on_the_common_ones() {
    // Missing body fields take their empty value; unknown ones are ignored.
    let rec = Record::parse(
        br#"{"kind":"sql","time":"2026-11-28T10:00:00Z","host":"h","text":"SELECT 1","future":1}"#,
    )
    .unwrap();
    assert_eq!(rec.body.text(), "SELECT 1");
    assert_eq!(rec.kind(), Kind::Sql);
    for (line, why) in [
        (
            &br#"{"kind":"nope","time":"2026-11-28T10:00:00Z","host":"h"}"#[..],
            "unknown variant",
        ),
        (
            br#"{"kind":"exec","time":"noon","host":"h"}"#,
            "not an RFC 3339 time",
        ),
        (
            br#"{"kind":"exec","time":"2026-11-28T10:00:00Z"}"#,
            "missing field `host`",
        ),
        (
            br#"{"kind":"exec","time":"2026-11-28T10:00:00Z","host":"h","argv":"ls"}"#,
            "exec record",
        ),
        (b"garbage", "expected value"),
    ] {
        let e = Record::parse(line).unwrap_err().to_string();
        assert!(e.contains(why), "{e} (expected {why})");
    }
}

#[test]
fn a_workload_is_written_after_the_common_fields_and_read_back() {
    let mut rec = exec_record();
    rec.workload = Some(Arc::new(Workload {
        container_id: "4f2a".into(),
        container_image_name: "ghcr.io/acme/agent:1.2".into(),
        container_name: "agent".into(),
        namespace: "agents".into(),
        node: "node-1".into(),
        pod_name: "claude-7d9f".into(),
        pod_uid: "0e6f8a7c-1b2d-4c3e-9f4a-5b6c7d8e9f01".into(),
        service_account: "claude".into(),
        labels: [("k8s.pod.label.app".to_string(), "claude".to_string())].into(),
    }));
    let line = rec.to_line();
    assert!(
        line.contains(r#""exec_id":"e1","container.id":"4f2a","container.image.name":"ghcr.io/acme/agent:1.2","k8s.container.name":"agent","k8s.namespace.name":"agents","k8s.node.name":"node-1","k8s.pod.name":"claude-7d9f","k8s.pod.uid":"0e6f8a7c-1b2d-4c3e-9f4a-5b6c7d8e9f01","k8s.serviceaccount.name":"claude","k8s.pod.label.app":"claude","argv":"#),
        "{line}"
    );
    assert_eq!(Record::parse(line.as_bytes()).unwrap(), rec);
}

#[test]
fn the_direct_reading_gives_what_the_general_one_gives() {
    let general = |line: &[u8]| serde_json::from_slice::<Record>(line).map_err(|e| e.to_string());
    let t = r#""time":"2026-11-28T10:00:00.123456789Z","host":"h""#;
    let lines = [
        exec_record().to_line(),
        format!(
            r#"{{"kind":"exec",{t},"identity":"claude","session":"s","pid":7,"exec_id":"e","argv":["a","b\"c"],"argv_truncated":true,"cgroup":"/x","cwd":"/","exe":"/bin/a","parent_exec_id":"p","ppid":1,"text":"a b","uid":0,"adopted":true}}"#
        ),
        format!(
            r#"{{"kind":"exit",{t},"duration_ms":5,"exit_code":2,"signal":null,"core_dumped":false}}"#
        ),
        format!(r#"{{"kind":"shell",{t},"text":"ls\n","truncated":true,"future":{{"a":[1,2]}}}}"#),
        format!(
            r#"{{"kind":"sql",{t},"db.name":null,"db.server":"127.0.0.1:5432","db.system":"mysql","params":["1",null],"status":"error","text":"SELECT 1","tls":true}}"#
        ),
        format!(
            r#"{{"kind":"k8s",{t},"context":null,"kubeconfig":"/k","verb":"delete","namespace":"team-a","status":404,"names":["a"],"text":"kubectl delete"}}"#
        ),
        format!(r#"{{"kind":"loss",{t},"count":3,"lost_kind":"exec","reason":"ring_full"}}"#),
        format!(r#"{{"kind":"notice",{t},"detail":"d","reason":"r","redacted":["text"]}}"#),
        format!(
            r#"{{"kind":"approval",{t},"action":"exec","held_ms":12,"request":"q","rule":"r","state":"approved","text":"rm"}}"#
        ),
        // A key given twice: the general reading lets the last one win.
        format!(r#"{{"kind":"shell",{t},"text":"one","text":"two"}}"#),
        format!(r#"{{"kind":"shell",{t},"pid":1,"pid":2}}"#),
        // Wrong types, in the body and in the common fields.
        format!(r#"{{"kind":"exit",{t},"exit_code":300}}"#),
        format!(r#"{{"kind":"exec",{t},"pid":-1}}"#),
        format!(r#"{{"kind":"sql",{t},"status":"maybe"}}"#),
        // Workload fields take the general way.
        format!(
            r#"{{"kind":"shell",{t},"k8s.pod.name":"web-1","k8s.namespace.name":"a","text":"x"}}"#
        ),
        format!(r#"{{"kind":"shell",{t},"text":"mentions \"k8s.pod.name\""}}"#),
        // A workload key spelt with an escape.
        format!(r#"{{"kind":"shell",{t},"k8s\u002epod.name":"web-1","text":"x"}}"#),
    ];
    for line in &lines {
        let line = line.as_bytes();
        let direct = Record::parse_direct(line).map_err(|e| e.to_string());
        let general = general(line);
        if let Ok(direct) = &direct
            && !has_workload_fields(line)
        {
            assert_eq!(
                Ok(direct),
                general.as_ref(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            Record::parse(line).map_err(|e| e.to_string()),
            general,
            "{}",
            String::from_utf8_lossy(line)
        );
    }
    assert!(has_workload_fields(lines[14].as_bytes()));
    let escaped = Record::parse(lines[16].as_bytes()).unwrap();
    assert_eq!(escaped.workload.unwrap().pod_name, "web-1");
    assert!(
        Record::parse(lines[14].as_bytes())
            .unwrap()
            .workload
            .is_some()
    );
    // The duplicate-key lines are the ones the direct reading refuses.
    assert!(Record::parse_direct(lines[9].as_bytes()).is_err());
    assert_eq!(
        Record::parse(lines[9].as_bytes()).unwrap().body.text(),
        "two"
    );
}

/// The keys of `any_line`: every field of every kind, unknown ones, workload keys and keys
/// spelt with escapes.
const KEYS: &[&str] = &[
    "kind",
    "time",
    "host",
    "identity",
    "session",
    "pid",
    "exec_id",
    "redacted",
    "argv",
    "argv_truncated",
    "cgroup",
    "cwd",
    "exe",
    "parent_exec_id",
    "ppid",
    "text",
    "uid",
    "adopted",
    "duration_ms",
    "exit_code",
    "signal",
    "core_dumped",
    "truncated",
    "db.name",
    "db.server",
    "db.system",
    "db.user",
    "params",
    "status",
    "result",
    "tls",
    "context",
    "kubeconfig",
    "verb",
    "namespace",
    "names",
    "count",
    "lost_kind",
    "reason",
    "detail",
    "action",
    "held_ms",
    "request",
    "rule",
    "state",
    "future",
    "k8s.pod.name",
    "k8s.namespace.name",
    "container.id",
    "k8s\\u002epod.name",
    "t\\u0065xt",
];

/// The values of `any_line`: every JSON type, right and wrong for each field.
const VALUES: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "7",
    "-1",
    "300",
    "4294967296",
    "1.5",
    "1e3",
    "\"\"",
    "\"x\"",
    "\"exec\"",
    "\"exit\"",
    "\"shell\"",
    "\"sql\"",
    "\"k8s\"",
    "\"loss\"",
    "\"notice\"",
    "\"approval\"",
    "\"2026-11-28T10:00:00.123456789Z\"",
    "\"error\"",
    "\"ok\"",
    "\"approved\"",
    "\"ring_full\"",
    "[]",
    "[\"a\",\"b\"]",
    "[\"a\",null]",
    "[1]",
    "{}",
    "{\"a\":[1,{}]}",
    "\"a\\\"b\"",
    "\"\\u00e9\\n\"",
];

/// Lines made of the fields the kinds have, with values of every JSON type (right and wrong for
/// each field), unknown fields, keys given twice, escapes and workload keys, in any order.
fn any_line() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::{prelude::*, sample::select};
    let keys = select(KEYS.to_vec());
    let values = select(VALUES.to_vec());
    let field = (keys, values).prop_map(|(k, v)| format!("\"{k}\":{v}"));
    let kind = select(vec![
        "exec", "exit", "shell", "sql", "k8s", "loss", "notice", "approval", "other",
    ]);
    (kind, any::<bool>(), proptest::collection::vec(field, 0..12))
        .prop_flat_map(|(kind, common, mut fields)| {
            if common {
                fields.push(format!("\"kind\":\"{kind}\""));
                fields.push("\"time\":\"2026-11-28T10:00:00Z\"".into());
                fields.push("\"host\":\"h\"".into());
            }
            Just(fields).prop_shuffle()
        })
        .prop_map(|fields| format!("{{{}}}", fields.join(",")))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]
    /// `Record::parse` reads every line as the general reading does: the same record, or the
    /// same error.
    #[test]
    fn parse_equals_the_general_reading_on_any_line(line in any_line()) {
        let general = serde_json::from_slice::<Record>(line.as_bytes()).map_err(|e| e.to_string());
        let parsed = Record::parse(line.as_bytes()).map_err(|e| e.to_string());
        proptest::prop_assert_eq!(parsed, general, "{}", line);
    }
}
