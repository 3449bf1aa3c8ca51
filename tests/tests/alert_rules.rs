//! `recorder alerts test` on a stored log: threshold, schedule and first_seen rules fire on the
//! records' own times exactly where they should, and `--from` reports from a log index on while
//! the records before it still teach the rules.
mod collector_support;

use collector_support::*;

fn sql(hour: u32, minute: u32, second: u32, text: &str) -> String {
    format!(
        r#"{{"kind":"sql","time":"2026-11-27T{hour:02}:{minute:02}:{second:02}Z","host":"web-1","identity":"claude","session":"s1","pid":7,"exec_id":"e","db.system":"postgresql","text":"{text}","status":"ok","result":"SELECT 1"}}"#
    )
}

#[test]
fn alert_rules_tried_on_a_stored_log() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let data = tmp.path().join("data");
    let col = Collector::start(&pki, &data, 0, &[]);
    // 2026-11-27 is a Friday. Hour 10 UTC is 11:00 in Paris; hour 19 UTC is 20:00.
    let mut lines = Vec::new();
    for minute in 0..3 {
        lines.push(sql(10, minute, 0, "SELECT * FROM orders")); // log 0..2
    }
    for second in 0..6 {
        lines.push(sql(11, 0, second, "SELECT * FROM payments")); // log 3..8: a burst of 6
    }
    lines.push(sql(19, 0, 0, "SELECT * FROM orders")); // log 9: 20:00 in Paris
    let o = ship(&pki, col.port, tmp.path(), "a", &lines, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    col.stop();

    let rules = tmp.path().join("rules.toml");
    std::fs::write(
        &rules,
        r#"
[[rule]]
name = "reads"
type = "threshold"
pattern = "(?i)^select"
count = 4
window_secs = 60

[[rule]]
name = "office-hours"
type = "schedule"
days = ["mon", "tue", "wed", "thu", "fri"]
hours = "08:00-19:00"
timezone = "Europe/Paris"

[[rule]]
name = "new-table"
type = "first_seen"
of = "table"
learning_days = 0
"#,
    )
    .unwrap();
    let fired = |from: &str| -> Vec<serde_json::Value> {
        let o = run(&[
            "alerts",
            "test",
            "--rules",
            rules.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--from",
            from,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).contains("10 records read"), "{}", stderr(&o));
        stdout(&o)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = fired("0");
    let summary: Vec<(String, u64, Vec<u64>)> = all
        .iter()
        .map(|a| {
            (
                a["rule"].as_str().unwrap().to_string(),
                a["log_index"].as_u64().unwrap(),
                a["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_u64().unwrap())
                    .collect(),
            )
        })
        .collect();
    let s = |r: &str, i: u64, recs: &[u64]| (r.to_string(), i, recs.to_vec());
    assert_eq!(
        summary,
        [
            // With no learning period the first record's table is new too.
            s("new-table", 0, &[0]),
            s("new-table", 3, &[3]),
            // The fifth SELECT within 60 s: the burst's first five records; the sixth is
            // within the same window and stays quiet.
            s("reads", 7, &[3, 4, 5, 6, 7]),
            s("office-hours", 9, &[9]),
        ],
        "{all:#?}"
    );
    assert!(
        all[3]["detail"]
            .as_str()
            .unwrap()
            .contains("at fri 2026-11-27 20:00:00 CET"),
        "{}",
        all[3]["detail"]
    );
    assert_eq!(all[3]["record"]["text"], "SELECT * FROM orders");
    assert!(
        all[2]["detail"]
            .as_str()
            .unwrap()
            .contains("5 records in 60 s for identity claude"),
        "{}",
        all[2]["detail"]
    );

    // From index 3: what came before only teaches (orders is known), so the same alerts from
    // 3 on, and none before.
    let later: Vec<u64> = fired("3")
        .iter()
        .map(|a| a["log_index"].as_u64().unwrap())
        .collect();
    assert_eq!(later, [3, 7, 9]);
}
