//! Each default rule on what real commands, shell lines and statements look like; markers that
//! link two uses of one secret; ordinary records left alone; operator rules; bad rules refused.
use proptest::prelude::*;
use recorder_record::Record;

use crate::{Marker, RedactionConfig, Redactor, RuleConfig};

const KEY: &[u8] = b"a key for the tests, 32 bytes ok";

fn line(kind: &str, identity: &str, fields: &str) -> Record {
    let line = format!(
        r#"{{"kind":"{kind}","time":"2026-12-05T10:00:00.000000000Z","host":"h","identity":"{identity}","session":"s","pid":7,"exec_id":"e"{fields}}}"#
    );
    Record::parse(line.as_bytes()).unwrap()
}

fn exec(argv: &[&str]) -> Record {
    let argv_json = serde_json_argv(argv);
    line(
        "exec",
        "claude",
        &format!(
            r#","argv":{argv_json},"argv_truncated":false,"cgroup":"/a","cwd":"/","exe":"/bin/x","parent_exec_id":"","ppid":1,"text":"x","uid":0"#
        ),
    )
}

fn serde_json_argv(argv: &[&str]) -> String {
    let quoted: Vec<String> = argv
        .iter()
        .map(|a| format!("\"{}\"", a.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("[{}]", quoted.join(","))
}

fn shell(text: &str) -> Record {
    line(
        "shell",
        "claude",
        &format!(",\"text\":\"{}\"", text.replace('"', "\\\"")),
    )
}

fn sql(text: &str, params: &str) -> Record {
    line(
        "sql",
        "claude",
        &format!(
            r#","db.name":"shop","db.server":"127.0.0.1:5432","db.system":"postgresql","db.user":"alice","result":"ALTER ROLE","status":"ok","text":"{}","tls":true{params}"#,
            text.replace('"', "\\\"")
        ),
    )
}

fn redactor() -> Redactor {
    Redactor::new(KEY, &RedactionConfig::default()).unwrap()
}

fn mark(secret: &str) -> String {
    Marker::new(KEY).of(secret)
}

fn argv(r: &Record) -> Vec<String> {
    match &r.body {
        recorder_record::Body::Exec(e) => e.argv.clone(),
        _ => panic!("not an exec"),
    }
}

fn text(r: &Record) -> String {
    r.body.text().to_string()
}

/// Redacts a copy; returns it and the names of the rules that hit.
fn run(r: &Record) -> (Record, Vec<String>) {
    let red = redactor();
    let mut r = r.clone();
    let hits = red.redact(&mut r);
    let names = hits
        .0
        .iter()
        .map(|&i| red.rule_names()[i].clone())
        .collect();
    (r, names)
}

#[test]
fn argv_secrets_become_markers_and_the_command_line_follows() {
    let cases: [(&[&str], usize, &str, &str); 8] = [
        (
            &["mysql", "-uroot", "-pS3cret", "shop"],
            2,
            "S3cret",
            "mysql_password_flag",
        ),
        (
            &["psql", "postgresql://alice:pw-123@db.example/shop"],
            1,
            "pw-123",
            "url_credentials",
        ),
        (
            &["deploy", "--token=tok-abc"],
            1,
            "tok-abc",
            "secret_assignment",
        ),
        (&["deploy", "--api-key", "k-99"], 2, "k-99", "secret_flag"),
        (
            &["curl", "-H", "Authorization: Bearer abc.def", "http://x/"],
            2,
            "abc.def",
            "authorization_header",
        ),
        (
            &["env", "PGPASSWORD=hunter2", "psql"],
            1,
            "hunter2",
            "secret_assignment",
        ),
        (
            &["aws", "configure", "set", "AKIAIOSFODNN7EXAMPLE"],
            3,
            "AKIAIOSFODNN7EXAMPLE",
            "aws_access_key_id",
        ),
        (
            &["psql", "-c", "ALTER USER alice PASSWORD 'n3w pass'"],
            2,
            "'n3w pass'",
            "sql_password",
        ),
    ];
    for (args, at, secret, rule) in cases {
        let (r, rules) = run(&exec(args));
        let a = argv(&r);
        assert!(a[at].contains(&mark(secret)), "{args:?} -> {a:?}");
        assert!(!text(&r).contains(secret), "{}", text(&r));
        assert!(a.iter().all(|x| !x.contains(secret)));
        assert_eq!(rules, [rule], "{args:?}");
        assert_eq!(r.redacted, [format!("argv[{at}]"), "text".to_string()]);
        // The line says so.
        assert!(
            r.to_line()
                .ends_with(&format!(r#","redacted":["argv[{at}]","text"]}}"#))
        );
    }
}

#[test]
fn the_same_secret_gets_the_same_marker_and_another_does_not() {
    let (a, _) = run(&exec(&["mysql", "-pS3cret"]));
    let (b, _) = run(&shell("mysql -u bob -pS3cret shop"));
    let (c, _) = run(&exec(&["mysql", "-pOther"]));
    let m = mark("S3cret");
    assert_eq!(argv(&a)[1], format!("-p{m}"));
    assert_eq!(text(&b), format!("mysql -u bob -p{m} shop"));
    assert_ne!(argv(&c)[1], argv(&a)[1]);
    // Another key, other markers: nothing to compare across deployments.
    assert_ne!(Marker::new(b"another key").of("S3cret"), m);
    // Redacting again changes nothing.
    let (again, rules) = run(&a);
    assert_eq!(again, a);
    assert!(rules.is_empty());
}

#[test]
fn shell_lines_statements_and_token_shapes() {
    let cases: [(Record, &str, &str); 9] = [
        (
            shell("export GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "secret_assignment",
        ),
        (
            shell("git clone https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/x/y"),
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "github_token",
        ),
        (
            shell(
                "curl -H 'X: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U'",
            ),
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "jwt",
        ),
        (
            shell("slack-notify xoxb-123456789012-abcdefghijkl"),
            "xoxb-123456789012-abcdefghijkl",
            "slack_token",
        ),
        (
            shell("gcloud --key AIzaSyA1234567890abcdefghijklmnopqrstuv"),
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            "gcp_api_key",
        ),
        (
            shell("vault login --token s.abc123"),
            "s.abc123",
            "secret_flag",
        ),
        (
            sql("CREATE USER 'bob'@'%' IDENTIFIED BY 'pa''ss'", ""),
            "'pa''ss'",
            "sql_password",
        ),
        (
            sql("SET PASSWORD FOR 'bob'@'%' = 'x1'", ""),
            "'x1'",
            "sql_set_password",
        ),
        (
            sql("ALTER ROLE app WITH ENCRYPTED PASSWORD 'md5abc'", ""),
            "'md5abc'",
            "sql_password",
        ),
    ];
    for (record, secret, rule) in cases {
        let (r, rules) = run(&record);
        assert!(!r.to_line().contains(secret), "{}", r.to_line());
        assert!(text(&r).contains(&mark(secret)), "{}", text(&r));
        assert!(rules.contains(&rule.to_string()), "{rules:?} for {secret}");
        assert_eq!(r.redacted, ["text"]);
    }
    let pem = "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\\n-----END PRIVATE KEY-----";
    let (r, rules) = run(&shell(&format!("echo '{pem}' > k")));
    assert!(!r.to_line().contains("MIIEvQIBADANBg"), "{}", r.to_line());
    assert_eq!(rules, ["pem_private_key"]);
}

#[test]
fn card_numbers_in_statements_and_parameters_only_when_the_sum_checks() {
    let (r, rules) = run(&sql(
        "INSERT INTO orders (card, ref) VALUES ($1, '4111 1111 1111 1111')",
        r#","params":["4012888888881881","1234567890123456",null]"#,
    ));
    let line = r.to_line();
    assert!(!line.contains("4111 1111 1111 1111") && !line.contains("4012888888881881"));
    // Not a card: its sum does not check.
    assert!(line.contains("1234567890123456"), "{line}");
    assert_eq!(rules, ["card_number", "card_number"]);
    assert_eq!(r.redacted, ["params[0]", "text"]);
    // Digits in a command line are not read as cards.
    let (r, _) = run(&exec(&["sleep", "4111111111111111"]));
    assert!(r.redacted.is_empty());
}

#[test]
fn ordinary_records_are_left_alone() {
    for r in [
        exec(&["ls", "-la", "/tmp"]),
        exec(&["git", "commit", "-m", "rotate the token cache"]),
        exec(&["kubectl", "get", "secrets", "-n", "prod"]),
        exec(&["psql", "-h", "db", "-p", "5432", "-U", "alice", "shop"]),
        exec(&[
            "curl",
            "--cacert",
            "/etc/ssl/ca.pem",
            "https://example.com/api?page=2",
        ]),
        exec(&["app", "--password-file", "/run/secrets/db"]),
        exec(&["app", "--token-path=/var/run/token"]),
        shell("cd /tmp && make -j4"),
        shell("export PWD=/home/alice"),
        sql(
            "SELECT id, name FROM users WHERE id = $1",
            r#","params":["42"]"#,
        ),
        sql("ALTER USER alice VALID UNTIL 'infinity'", ""),
    ] {
        let (after, rules) = run(&r);
        assert_eq!(after, r, "{rules:?}");
    }
}

#[test]
fn operator_rules_patterns_tables_and_whole_fields() {
    let config = RedactionConfig {
        disable: vec!["card_number".into()],
        rules: vec![
            RuleConfig {
                name: "tickets".into(),
                pattern: Some("tkt_(?P<secret>[a-z0-9]{8})".into()),
                fields: vec!["text".into()],
                ..RuleConfig::default()
            },
            RuleConfig {
                name: "cards".into(),
                tables: vec!["payments.cards".into()],
                ..RuleConfig::default()
            },
            RuleConfig {
                name: "billing-results".into(),
                identity: vec!["billing".into()],
                whole_fields: vec!["sql.result".into()],
                ..RuleConfig::default()
            },
        ],
        ..RedactionConfig::default()
    };
    let red = Redactor::new(KEY, &config).unwrap();
    assert_eq!(
        red.rule_names().last().map(String::as_str),
        Some("billing-results")
    );
    let names = |hits: crate::Hits| -> Vec<String> {
        hits.0
            .iter()
            .map(|&i| red.rule_names()[i].clone())
            .collect()
    };
    let mut r = shell("open tkt_abcd1234 now");
    assert_eq!(names(red.redact(&mut r)), ["tickets"]);
    assert_eq!(text(&r), format!("open tkt_{} now", mark("abcd1234")));
    let mut r = sql(
        "UPDATE payments.cards SET pan = '4111111111111111', exp = 1229 WHERE id = $1",
        r#","params":["77"]"#,
    );
    assert_eq!(names(red.redact(&mut r)), ["cards", "cards", "cards"]);
    assert_eq!(
        text(&r),
        format!(
            "UPDATE payments.cards SET pan = {}, exp = {} WHERE id = $1",
            mark("'4111111111111111'"),
            mark("1229")
        )
    );
    assert_eq!(r.redacted, ["params[0]", "text"]);
    let mut r = line(
        "sql",
        "billing",
        r#","db.name":"b","db.server":"unix","db.system":"mysql","db.user":"u","result":"3 rows","status":"ok","text":"SELECT 1","tls":false"#,
    );
    assert_eq!(names(red.redact(&mut r)), ["billing-results"]);
    assert!(
        r.to_line()
            .contains(&format!(r#""result":"{}""#, mark("3 rows")))
    );
    // Another identity's results stay.
    let mut r = sql("SELECT 1", "");
    assert!(red.redact(&mut r).0.is_empty());
}

#[test]
fn bad_rules_are_refused_with_the_reason() {
    let refused = |rule: RuleConfig| match Redactor::new(
        KEY,
        &RedactionConfig {
            rules: vec![rule],
            ..RedactionConfig::default()
        },
    ) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted"),
    };
    let base = RuleConfig {
        name: "r".into(),
        ..RuleConfig::default()
    };
    assert!(refused(base.clone()).contains("exactly one of"));
    assert!(
        refused(RuleConfig {
            pattern: Some("(".into()),
            ..base.clone()
        })
        .contains("\"r\"")
    );
    assert!(
        refused(RuleConfig {
            pattern: Some("x".into()),
            fields: vec!["argvv".into()],
            ..base.clone()
        })
        .contains("unknown field \"argvv\"")
    );
    assert!(
        refused(RuleConfig {
            whole_fields: vec!["text".into()],
            ..base.clone()
        })
        .contains("needs the `identity`")
    );
    assert!(
        refused(RuleConfig {
            name: "jwt".into(),
            pattern: Some("x".into()),
            ..base
        })
        .contains("two rules")
    );
    let e = Redactor::new(
        KEY,
        &RedactionConfig {
            disable: vec!["nope".into()],
            ..RedactionConfig::default()
        },
    );
    assert!(e.is_err());
}

proptest! {
    /// Any text: no panic, and redacting the result again changes nothing.
    #[test]
    fn any_text_is_redacted_once_and_for_all(words in proptest::collection::vec(
        prop_oneof![
            "[a-zA-Z0-9 =:/@._'-]{0,20}",
            Just("password=".to_string()),
            Just("--token".to_string()),
            Just("Authorization: Bearer ".to_string()),
            Just("mysql -p".to_string()),
            Just("://u:".to_string()),
            Just("4111111111111111".to_string()),
            Just("PASSWORD '".to_string()),
        ], 0..12)) {
        let text = words.concat();
        let (once, _) = run(&shell(&text));
        let (twice, _) = run(&once);
        prop_assert_eq!(once, twice);
    }
}
