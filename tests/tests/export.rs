//! Exporters against real receivers: Debian's rsyslog over TCP and over TLS, and rotated JSON
//! Lines files, while the collector is killed with SIGKILL and rsyslog is stopped and started
//! mid-stream. Every record must arrive; a record sent twice must carry the same event id.
mod collector_support;

use std::{
    collections::{BTreeMap, HashMap},
    io::Read as _,
    path::Path,
    time::Duration,
};

use collector_support::*;
use recorder_tests::rsyslog::{Rsyslog, TlsFiles};

const RECORDS: usize = 100_000;

/// What a receiver got: event id → (times received, the message), and the event ids in the
/// order they first arrived.
struct Received {
    by_id: HashMap<String, (usize, String)>,
    first_order: Vec<String>,
}

/// Parses rsyslog's `HOSTNAME TAB MSGID TAB SD TAB MSG` lines.
fn received(output: &str) -> Received {
    let mut by_id: HashMap<String, (usize, String)> = HashMap::new();
    let mut first_order = Vec::new();
    for line in output.lines() {
        let fields: Vec<&str> = line.splitn(4, '\t').collect();
        assert_eq!(fields.len(), 4, "not a receiver line: {line:?}");
        let (host, msgid, sd, msg) = (fields[0], fields[1], fields[2], fields[3]);
        let record: serde_json::Value = serde_json::from_str(msg)
            .unwrap_or_else(|e| panic!("the message is not the record's JSON ({e}): {msg:?}"));
        assert_eq!(host, record["host"], "{line}");
        assert_eq!(msgid, record["kind"], "{line}");
        let id = sd_param(sd, "event_id");
        assert_eq!(sd_param(sd, "identity"), "claude", "{sd}");
        assert_eq!(sd_param(sd, "session"), record["session"], "{sd}");
        assert_eq!(sd_param(sd, "kind"), record["kind"], "{sd}");
        let entry = by_id.entry(id.clone()).or_insert((0, msg.to_string()));
        assert_eq!(
            entry.1, msg,
            "event {id} arrived twice with different messages"
        );
        if entry.0 == 0 {
            first_order.push(id);
        }
        entry.0 += 1;
    }
    Received { by_id, first_order }
}

fn sd_param(sd: &str, name: &str) -> String {
    let start = sd
        .find(&format!(" {name}=\""))
        .unwrap_or_else(|| panic!("no {name} in {sd}"))
        + name.len()
        + 3;
    let mut out = String::new();
    let mut chars = sd[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '"' => break,
            c => out.push(c),
        }
    }
    out
}

/// Every input line arrived, each under one event id `web-1/BOOT/SEQ` with SEQ its place in
/// the input (1-based), first arrivals in log order. Returns the duplicates.
fn check_all_arrived(name: &str, got: &Received, lines: &[String]) -> usize {
    assert_eq!(
        got.by_id.len(),
        lines.len(),
        "{name}: {} distinct records of {}",
        got.by_id.len(),
        lines.len()
    );
    let mut seqs = Vec::new();
    for (id, (_, msg)) in &got.by_id {
        let seq: usize = id.rsplit('/').next().unwrap().parse().unwrap();
        assert!(id.starts_with("web-1/"), "{id}");
        assert_eq!(
            msg,
            &lines[seq - 1],
            "{name}: event {id} holds another record"
        );
        seqs.push(seq);
    }
    let order: Vec<usize> = got
        .first_order
        .iter()
        .map(|id| id.rsplit('/').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "{name}: records first arrived out of log order"
    );
    got.by_id.values().map(|(n, _)| n - 1).sum()
}

fn metric(addr: &str, name: &str, export: &str) -> u64 {
    let body = read_all(
        std::process::Command::new("curl")
            .args(["-sf", &format!("http://{addr}/metrics")])
            .output()
            .unwrap()
            .stdout
            .as_slice(),
    );
    body.lines()
        .find(|l| l.starts_with(&format!("{name}{{export=\"{export}\"}}")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// The file exporter's output: the closed files (gunzipped) in name order, then the open one.
fn file_records(dir: &Path) -> (Vec<String>, usize) {
    let mut closed: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".jsonl.gz"))
        .collect();
    closed.sort();
    let mut text = String::new();
    for path in &closed {
        let mut gz = flate2_reader(path);
        gz.read_to_string(&mut text).unwrap();
    }
    text.push_str(&std::fs::read_to_string(dir.join("records.jsonl")).unwrap_or_default());
    (text.lines().map(str::to_string).collect(), closed.len())
}

/// `gzip -dc FILE` (Debian's gzip): the files must open with the standard tool.
fn flate2_reader(path: &Path) -> impl std::io::Read {
    let out = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gzip -dc {}: {:?}",
        path.display(),
        out
    );
    std::io::Cursor::new(out.stdout)
}

#[test]
fn syslog_and_files_receive_every_record_through_a_collector_crash_and_a_receiver_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    // rsyslog's TLS identity: a server certificate for 127.0.0.1/localhost issued by the CA.
    let tls_files = TlsFiles {
        ca: &pki.dir.join("ca.pem"),
        cert: &pki.dir.join("collector.pem"),
        key: &pki.dir.join("collector-key.pem"),
    };
    let plain = Rsyslog::start(&tmp.path().join("rsyslog-tcp"), free_port(), None);
    let mut tls = Rsyslog::start(
        &tmp.path().join("rsyslog-tls"),
        free_port(),
        Some(&tls_files),
    );
    let files = tmp.path().join("files");
    let config = tmp.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[export]]
name = "siem-tcp"
type = "syslog"
address = "127.0.0.1:{}"

[[export]]
name = "siem-tls"
type = "syslog"
address = "127.0.0.1:{}"
tls = true
ca = "{}"
server_name = "localhost"

[[export]]
name = "files"
type = "file"
dir = "{}"
prefix = "records"
max_mib = 4
"#,
            plain.port,
            tls.port,
            pki.path("ca.pem"),
            files.display()
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let metrics = format!("127.0.0.1:{}", free_port());
    let extra = [
        "--config",
        config.to_str().unwrap(),
        "--metrics-addr",
        &metrics,
    ];
    let col = Collector::start(&pki, &data, port, &extra);

    // Records of several kilobytes now and then, as SQL with results makes them.
    let lines: Vec<String> = records("web-1", RECORDS)
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            if i % 1000 == 7 {
                l.replace(
                    "\"argv\":[",
                    &format!("\"argv\":[\"{}\",", "x".repeat(6000)),
                )
            } else {
                l
            }
        })
        .collect();
    let (first, second) = lines.split_at(RECORDS / 2);
    let o = ship(&pki, port, tmp.path(), "a", first, &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    // rsyslog over TLS stopped once it has a part, and started again two seconds later.
    assert!(
        wait_for(Duration::from_secs(60), || tls.output().lines().count()
            >= 10_000),
        "the TLS receiver got {} lines: {}\n{}",
        tls.output().lines().count(),
        tls.log(),
        col.log()
    );
    tls.stop();
    let at_stop = tls.output().lines().count();
    std::thread::sleep(Duration::from_secs(2));
    tls.restart();
    println!("rsyslog (TLS) stopped after {at_stop} lines, started again");

    // The rest shipped; the collector killed while the exporters are sending it.
    // The same spool: its sequence numbers go on from the first half's.
    let o = ship(&pki, port, tmp.path(), "a", second, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(wait_for(Duration::from_secs(60), || {
        plain.output().lines().count() >= RECORDS * 6 / 10
    }));
    let failed_tls = metric(&metrics, "recorder_export_failed_total", "siem-tls");
    col.kill9();
    println!(
        "collector killed (SIGKILL) with {} records at the TCP receiver",
        plain.output().lines().count()
    );
    let col = Collector::start(&pki, &data, port, &extra);

    let done = |r: &Rsyslog| received(&r.output()).by_id.len() == RECORDS;
    assert!(
        wait_for(Duration::from_secs(120), || done(&plain)
            && done(&tls)
            && file_records(&files).0.len() >= RECORDS),
        "not everything arrived: tcp {}, tls {}, files {}\n{}",
        received(&plain.output()).by_id.len(),
        received(&tls.output()).by_id.len(),
        file_records(&files).0.len(),
        col.log()
    );
    let dup_tcp = check_all_arrived("syslog over TCP", &received(&plain.output()), &lines);
    let dup_tls = check_all_arrived("syslog over TLS", &received(&tls.output()), &lines);
    println!(
        "syslog: {RECORDS} records at each receiver; sent again (same event id): TCP {dup_tcp}, TLS {dup_tls}"
    );
    assert!(failed_tls >= 1, "the TLS receiver's outage was not counted");

    // Files: every record exactly once, in log order, across rotated and compressed files.
    let (got, closed) = file_records(&files);
    assert!(closed >= 2, "no rotation: {closed} closed files");
    assert_eq!(got.len(), RECORDS, "the files hold {} lines", got.len());
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for l in &got {
        *count.entry(l.as_str()).or_default() += 1;
    }
    assert!(
        count.values().all(|&n| n == 1),
        "a record is twice in the files"
    );
    assert_eq!(got, lines, "the files hold other records, or out of order");
    println!(
        "files: {RECORDS} records once each, in order, {closed} closed .jsonl.gz files and the open one"
    );

    assert!(metric(&metrics, "recorder_export_delivered_total", "files") > 0);
    // The lag falls to 0 once the last batch is confirmed (confirm_ms after its bytes were
    // acknowledged), which may be just after the receiver wrote it.
    assert!(
        wait_for(Duration::from_secs(10), || metric(
            &metrics,
            "recorder_export_lag_records",
            "siem-tcp"
        ) == 0),
        "lag stayed at {}",
        metric(&metrics, "recorder_export_lag_records", "siem-tcp")
    );
    col.stop();
}

#[test]
fn a_broken_export_configuration_stops_the_collector_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let config = tmp.path().join("collector.toml");
    for (text, reason) in [
        (
            "[[export]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"127.0.0.1:6514\"\ntls = true\nca = \"/nonexistent/ca.pem\"\n",
            "/nonexistent/ca.pem",
        ),
        (
            "[[export]]\nname = \"siem\"\ntype = \"syslog\"\nadress = \"127.0.0.1:6514\"\n",
            "unknown field `adress`",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let o = run(&[
            "collector",
            "--listen",
            "127.0.0.1:0",
            "--data",
            tmp.path().join("data").to_str().unwrap(),
            "--tls-ca",
            &pki.path("ca.pem"),
            "--tls-cert",
            &pki.path("collector.pem"),
            "--tls-key",
            &pki.path("collector-key.pem"),
            "--config",
            config.to_str().unwrap(),
        ]);
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(err.contains("siem") && err.contains(reason), "{err}");
    }
}

#[test]
fn a_webhook_receives_the_chosen_records_in_signed_batches_after_an_outage() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let hook_port = free_port();
    let config = tmp.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[[export]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/records\"\n\
             secret = \"s3cret\"\nfilter = {{ kinds = [\"exit\"] }}\n"
        ),
    )
    .unwrap();
    let col = Collector::start(
        &pki,
        &tmp.path().join("data"),
        0,
        &["--config", config.to_str().unwrap()],
    );
    // The receiver is down while the records arrive.
    let lines = records("web-1", 5000);
    let o = ship(&pki, col.port, tmp.path(), "a", &lines, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        wait_for(Duration::from_secs(10), || col
            .log()
            .contains("exporter cannot deliver")),
        "{}",
        col.log()
    );
    let out = tmp.path().join("hooks.jsonl");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/webhook_receiver.py");
    let mut receiver = std::process::Command::new("python3")
        .arg(script)
        .arg(hook_port.to_string())
        .arg(&out)
        .spawn()
        .unwrap();
    let requests = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let exits: Vec<(usize, &String)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains(r#""kind":"exit""#))
        .collect();
    let delivered = |reqs: &[serde_json::Value]| -> usize {
        reqs.iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(r["body"].as_str().unwrap()).unwrap()
                    ["records"]
                    .as_array()
                    .unwrap()
                    .len()
            })
            .sum()
    };
    assert!(
        wait_for(Duration::from_secs(60), || delivered(&requests())
            >= exits.len()),
        "{} of {}\n{}",
        delivered(&requests()),
        exits.len(),
        col.log()
    );
    let _ = receiver.kill();
    let _ = receiver.wait();
    let reqs = requests();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret");
    let mut got = Vec::new();
    for r in &reqs {
        assert_eq!(r["path"], "/records");
        assert_eq!(r["content_type"], "application/json");
        let body = r["body"].as_str().unwrap();
        let expect: String = ring::hmac::sign(&key, body.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(r["signature"], format!("sha256={expect}"), "signature");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        for item in body["records"].as_array().unwrap() {
            got.push(item.clone());
        }
    }
    assert_eq!(got.len(), exits.len(), "each exit record once");
    for (item, (i, line)) in got.iter().zip(&exits) {
        let seq: usize = item["event_id"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(seq, i + 1);
        assert_eq!(item["log_index"], *i as u64);
        assert_eq!(
            item["record"],
            serde_json::from_str::<serde_json::Value>(line).unwrap()
        );
    }
    println!(
        "webhook: {} exit records of {} in {} signed batches, after the receiver came up",
        got.len(),
        lines.len(),
        reqs.len()
    );
    col.stop();
}
