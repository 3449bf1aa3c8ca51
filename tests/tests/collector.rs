//! End-to-end tests of the collector: the real `recorder` binary as collector, operator client
//! and shipper, real certificates, mutual TLS on 127.0.0.1. They need no root and no kernel
//! support (records come from `recorder ship`), except the last, which runs the real agent.
mod collector_support;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    time::Duration,
};

use collector_support::*;

fn args<'a>(head: &[&'a str], tail: &'a [String]) -> Vec<&'a str> {
    head.iter()
        .copied()
        .chain(tail.iter().map(String::as_str))
        .collect()
}

#[test]
fn pki_collector_and_operator_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let metrics = format!("127.0.0.1:{}", free_port());
    let col = Collector::start(
        &pki,
        &tmp.path().join("data"),
        0,
        &["--metrics-addr", &metrics, "--checkpoint-secs", "1"],
    );
    let lines = records("web-1", 60);
    let o = ship(&pki, col.port, tmp.path(), "a", &lines, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "shipped 60 records; everything in the spool is stored\n"
    );

    let op = pki.client_args(col.port, "alice");
    // Sessions: 3 of 20 records (10 commands) each, newest first.
    let o = run(&args(&["sessions", "--format", "jsonl"], &op));
    assert!(o.status.success(), "{}", stderr(&o));
    let sessions: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        sessions
            .iter()
            .map(|s| s["session"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["sess-2", "sess-1", "sess-0"]
    );
    assert!(sessions.iter().all(|s| s["commands"] == 10
        && s["records"] == 20
        && s["identity"] == "claude"
        && s["host"] == "web-1"));
    let o = run(&args(&["sessions", "--identity", "nobody"], &op));
    assert_eq!(
        stdout(&o).lines().count(),
        1,
        "only the header: {}",
        stdout(&o)
    );
    let o = run(&args(
        &[
            "sessions",
            "--since",
            "2026-11-28T10:00:00.000000040Z",
            "--format",
            "jsonl",
        ],
        &op,
    ));
    assert_eq!(stdout(&o).lines().count(), 1, "{}", stdout(&o));

    // Replay: byte-identical lines, and the human form with results joined by exec_id.
    let o = run(&args(&["replay", "sess-1", "--format", "jsonl"], &op));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), lines[20..40].join("\n") + "\n");
    let o = run(&args(&["replay", "sess-1"], &op));
    let human = stdout(&o);
    // Ten commands, then the session's completeness verdict.
    assert_eq!(human.lines().count(), 11, "{human}");
    assert_eq!(human.lines().last(), Some("session sess-1: complete"));
    assert_eq!(
        human.lines().next().unwrap(),
        "2026-11-28T10:00:00.000000020Z  pid 21      $ echo 20    => exit 0, 1 ms"
    );
    let o = run(&args(&["replay", "no-such-session"], &op));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not found: no session \"no-such-session\""),
        "{}",
        stderr(&o)
    );

    // Each record of the session proven against the signed checkpoint, with the pinned key.
    std::thread::sleep(Duration::from_millis(1500));
    let key = std::fs::read_to_string(tmp.path().join("data/checkpoint-key.pub")).unwrap();
    let o = run(&args(
        &["replay", "sess-1", "--prove", "--public-key", key.trim()],
        &op,
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let last = stdout(&o).lines().last().unwrap().to_string();
    assert!(
        last.starts_with("proved: 20 record(s) are in the log signed at tree size 60 (root "),
        "{last}"
    );
    let o = run(&args(
        &[
            "replay",
            "sess-1",
            "--prove",
            "--public-key",
            &"ab".repeat(32),
        ],
        &op,
    ));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is not signed by key abab"),
        "{}",
        stderr(&o)
    );

    // Export and online verify.
    assert_eq!(export(&pki, col.port), lines);
    let o = run(&args(&["verify"], &op));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).starts_with("ok: 60 records"), "{}", stdout(&o));

    // Shipping the same spool again sends nothing twice.
    let o = ship(&pki, col.port, tmp.path(), "a", &[], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(export(&pki, col.port).len(), 60);

    let (code, text) = recorder_tests::http_get(&metrics, "/metrics").unwrap();
    assert_eq!(code, 200);
    for want in [
        "recorder_collector_records_stored_total 60\n",
        "recorder_collector_duplicates_total 0\n",
        "recorder_collector_log_records 60\n",
    ] {
        assert!(text.contains(want), "{want} in:\n{text}");
    }

    // An auditor keeps the checkpoint; later the collector proves the log only grew.
    let kept = tmp.path().join("kept-checkpoint.json");
    let kept_arg = kept.to_str().unwrap();
    let o = run(&args(&["verify", "--checkpoint-file", kept_arg], &op));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let first: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&kept).unwrap()).unwrap();
    assert_eq!(first["tree_size"], 60);
    let o = ship(&pki, col.port, tmp.path(), "b", &records("web-1", 10), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::thread::sleep(Duration::from_millis(1500));
    let o = run(&args(&["verify", "--checkpoint-file", kept_arg], &op));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).starts_with("ok: 70 records"), "{}", stdout(&o));
    let second: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&kept).unwrap()).unwrap();
    assert_eq!(second["tree_size"], 70);
    // A kept checkpoint that was not signed by this collector is refused.
    let forged = std::fs::read_to_string(&kept)
        .unwrap()
        .replace("\"tree_size\":70", "\"tree_size\":69");
    std::fs::write(&kept, forged).unwrap();
    let o = run(&args(&["verify", "--checkpoint-file", kept_arg], &op));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("TAMPERED: kept checkpoint (tree size 69, ")
            && stdout(&o).contains("its signature does not verify"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn refusals_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let col = Collector::start(&pki, &tmp.path().join("data"), 0, &[]);
    let port = col.port;

    // A certificate from another CA.
    let other = Pki::new(&tmp.path().join("other"));
    let o = run(&args(
        &["sessions"],
        &pki.client_args_with(port, &other.path("alice.pem"), &other.path("alice-key.pem")),
    ));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(
            "unauthenticated: the client certificate is not issued by the collector's CA"
        ),
        "{}",
        stderr(&o)
    );

    // An expired certificate from the right CA.
    let (cert, key) = expired_operator(&pki);
    let o = run(&args(
        &["sessions"],
        &pki.client_args_with(port, &cert, &key),
    ));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unauthenticated: the client certificate has expired"),
        "{}",
        stderr(&o)
    );

    // An agent certificate sending for another host.
    let o = ship(&pki, port, tmp.path(), "b", &records("db-7", 4), &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("permission denied: the agent certificate for host \"web-1\" may not send records for host \"db-7\""),
        "{}",
        stderr(&o)
    );
    // ...or lines of another host under its own host name: refused before anything is sent
    // (the collector checks every line's host too).
    let o = ship(
        &pki,
        port,
        tmp.path(),
        "c",
        &records("db-7", 4),
        &["--host", "web-1"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(
            "c.jsonl line 1: host \"db-7\", but the file's records are of host \"web-1\""
        ),
        "{}",
        stderr(&o)
    );

    // An agent certificate reading, an operator certificate writing.
    let o = run(&args(
        &["replay", "sess-0"],
        &pki.client_args(port, "web-1"),
    ));
    assert!(stderr(&o).contains("permission denied: certificate \"web-1\" has role agent; replay needs an operator certificate"), "{}", stderr(&o));
    let o = run(&args(&["watch"], &pki.client_args(port, "web-1")));
    assert!(
        stderr(&o).contains("watch needs an operator certificate"),
        "{}",
        stderr(&o)
    );
    let file = tmp.path().join("d.jsonl");
    write_lines(&file, &records("web-1", 2));
    let spool = tmp.path().join("d-spool");
    let o = run(&args(
        &[
            "ship",
            "--jsonl",
            file.to_str().unwrap(),
            "--spool",
            spool.to_str().unwrap(),
        ],
        &pki.client_args(port, "alice"),
    ));
    assert!(stderr(&o).contains("permission denied: certificate \"alice\" has role operator; ingest needs an agent certificate"), "{}", stderr(&o));
    assert!(export(&pki, port).is_empty(), "nothing was stored");

    // A plaintext client gets no HTTP/2 at all: the connection ends in a TLS alert or closes.
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "expected a TLS alert or nothing, got {answer:?}"
    );
    let o = run(&args(
        &[
            "sessions",
            "--collector",
            &format!("http://127.0.0.1:{port}"),
        ],
        &pki.client_args(port, "alice")[2..],
    ));
    assert!(
        stderr(&o).contains("the collector is only reachable over https://"),
        "{}",
        stderr(&o)
    );
    assert!(
        wait_for(Duration::from_secs(3), || col
            .log()
            .contains("TLS handshake refused")),
        "{}",
        col.log()
    );
}

/// An operator certificate signed by the PKI's CA that expired in 2021.
fn expired_operator(pki: &Pki) -> (String, String) {
    use rcgen::{CertificateParams, DistinguishedName, DnType, Issuer, KeyPair, date_time_ymd};
    let ca_key =
        KeyPair::from_pem(&std::fs::read_to_string(pki.path("ca-key.pem")).unwrap()).unwrap();
    let issuer = Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(pki.path("ca.pem")).unwrap(),
        ca_key,
    )
    .unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationalUnitName, "operator");
    dn.push(DnType::CommonName, "old-alice");
    params.distinguished_name = dn;
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2021, 1, 1);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (c, k) = (pki.path("old-alice.pem"), pki.path("old-alice-key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

#[test]
fn kill_9_mid_stream_then_restart_stores_every_record_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let data = tmp.path().join("data");
    let port = free_port();
    let col = Collector::start(&pki, &data, port, &[]);
    let lines = records("web-1", 200_000);
    let file = tmp.path().join("big.jsonl");
    write_lines(&file, &lines);
    let spool = tmp.path().join("spool");
    let mut shipper = Command::new(recorder())
        .args([
            "ship",
            "--jsonl",
            file.to_str().unwrap(),
            "--spool",
            spool.to_str().unwrap(),
            "--timeout",
            "120",
        ])
        .args(pki.client_args(port, "web-1"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill once part of the stream is stored (segments of the spool start to go).
    let stored_some = wait_for(Duration::from_secs(60), || {
        std::fs::read_dir(data.join("segments"))
            .map(|d| d.count())
            .unwrap_or(0)
            > 0
            && std::fs::metadata(data.join("segments/00000000.log"))
                .map(|m| m.len() > 2_000_000)
                .unwrap_or(false)
    });
    assert!(stored_some, "the collector stored nothing: {}", col.log());
    col.kill9();
    std::thread::sleep(Duration::from_millis(700));
    let col = Collector::start(&pki, &data, port, &[]);
    let status = shipper.wait().unwrap();
    let (out, err) = (
        read_all(shipper.stdout.take().unwrap()),
        read_all(shipper.stderr.take().unwrap()),
    );
    assert!(status.success(), "{out}{err}");
    assert_eq!(
        out,
        "shipped 200000 records; everything in the spool is stored\n"
    );
    let stored = export(&pki, port);
    assert_eq!(stored.len(), lines.len(), "every record exactly once");
    assert!(stored == lines, "in order and byte for byte");
    col.stop();
    let o = run(&["verify", "--data", data.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).starts_with("ok: 200000 records"),
        "{}",
        stdout(&o)
    );
}

/// A data directory of 100 records (pid i+1 at log index i) with a final checkpoint.
fn stored_log(tmp: &std::path::Path) -> std::path::PathBuf {
    let pki = Pki::new(&tmp.join("pki"));
    let data = tmp.join("data");
    let col = Collector::start(&pki, &data, 0, &[]);
    let o = ship(&pki, col.port, tmp, "t", &records("web-1", 100), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    col.stop();
    let o = run(&["verify", "--data", data.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    data
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to.join("segments")).unwrap();
    for f in [
        "checkpoints.jsonl",
        "checkpoint-key.pub",
        "checkpoint-key.p8",
        "segments/00000000.log",
    ] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

fn verify_fails(data: &std::path::Path) -> String {
    let o = run(&["verify", "--data", data.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("the log fails verification"),
        "{}",
        stderr(&o)
    );
    stdout(&o)
}

#[test]
fn tampering_is_found_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = stored_log(tmp.path());
    let seg = std::fs::read(data.join("segments/00000000.log")).unwrap();
    let frames = frames(&seg);
    assert_eq!(frames.len(), 100);

    // One byte changed inside record 56's line.
    let one = tmp.path().join("one-byte");
    copy_dir(&data, &one);
    let mut s = seg.clone();
    let at = frames[56].start + 120;
    s[at] ^= 0x20;
    std::fs::write(one.join("segments/00000000.log"), &s).unwrap();
    let out = verify_fails(&one);
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("TAMPERED: segments/00000000.log record 56 (byte offset "),
        "{out}"
    );
    assert!(
        first.ends_with("log index 56, host web-1 stream ")
            || first.contains("sequence 57: content changed"),
        "{out}"
    );

    // Record 31 deleted.
    let del = tmp.path().join("deleted");
    copy_dir(&data, &del);
    let s = [&seg[..frames[31].start], &seg[frames[31].end..]].concat();
    std::fs::write(del.join("segments/00000000.log"), &s).unwrap();
    let out = verify_fails(&del);
    assert!(
        out.lines()
            .next()
            .unwrap()
            .starts_with("TAMPERED: segments/00000000.log record 31 "),
        "{out}"
    );
    assert!(
        out.contains("sequence 33: says it is log index 32 but is at log index 31"),
        "{out}"
    );
    assert!(
        out.contains("signed tree size 100 but the log holds 99 records"),
        "{out}"
    );

    // Records 10 and 11 swapped.
    let swap = tmp.path().join("swapped");
    copy_dir(&data, &swap);
    let s = [
        &seg[..frames[10].start],
        &seg[frames[11].clone()],
        &seg[frames[10].clone()],
        &seg[frames[11].end..],
    ]
    .concat();
    std::fs::write(swap.join("segments/00000000.log"), &s).unwrap();
    let out = verify_fails(&swap);
    assert!(
        out.lines()
            .next()
            .unwrap()
            .starts_with("TAMPERED: segments/00000000.log record 10 "),
        "{out}"
    );
    assert!(
        out.contains("sequence 12: says it is log index 11 but is at log index 10"),
        "{out}"
    );

    // A checkpoint rewritten: its signature no longer holds.
    let cp = tmp.path().join("checkpoint");
    copy_dir(&data, &cp);
    let text = std::fs::read_to_string(cp.join("checkpoints.jsonl"))
        .unwrap()
        .replace("\"tree_size\":100", "\"tree_size\":99");
    std::fs::write(cp.join("checkpoints.jsonl"), text).unwrap();
    let out = verify_fails(&cp);
    assert!(
        out.contains("checkpoints.jsonl line 1 (tree size 99): bad signature"),
        "{out}"
    );

    // And the collector refuses to start on a damaged log.
    let pki = Pki {
        dir: tmp.path().join("pki"),
    };
    let o = Command::new(recorder())
        .args([
            "collector",
            "--listen",
            "127.0.0.1:0",
            "--data",
            del.to_str().unwrap(),
        ])
        .args([
            "--tls-ca",
            &pki.path("ca.pem"),
            "--tls-cert",
            &pki.path("collector.pem"),
            "--tls-key",
            &pki.path("collector-key.pem"),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("fails its integrity checks; run `recorder verify --data"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_damaged_spool_is_recovered_with_a_notice() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let port = free_port();
    let lines = records("web-1", 10);
    // No collector yet: the records stay in the spool.
    let o = ship(&pki, port, tmp.path(), "s", &lines, &["--timeout", "1"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("records remain in the spool"),
        "{}",
        stderr(&o)
    );
    let spool = tmp.path().join("s-spool");
    let seg_path = spool.join(format!("{:020}.wal", 1));
    let mut seg = std::fs::read(&seg_path).unwrap();
    // Flip a byte inside the 8th record (spool frames: u32 len | u64 seq | line | u32 crc).
    let mut at = 8;
    for _ in 0..7 {
        at += 16 + u32::from_le_bytes(seg[at..at + 4].try_into().unwrap()) as usize;
    }
    seg[at + 30] ^= 0x01;
    std::fs::write(&seg_path, &seg).unwrap();

    let col = Collector::start(&pki, &tmp.path().join("data"), port, &[]);
    let spool_arg = spool.to_str().unwrap().to_string();
    let o = run(&args(
        &["ship", "--spool", &spool_arg],
        &pki.client_args(port, "web-1"),
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("spool damaged, recovered what was valid"),
        "{}",
        stderr(&o)
    );
    let stored = export(&pki, col.port);
    assert_eq!(stored.len(), 8, "{stored:#?}");
    assert_eq!(stored[..7], lines[..7]);
    let notice: serde_json::Value = serde_json::from_str(&stored[7]).unwrap();
    assert_eq!(notice["kind"], "notice");
    assert_eq!(notice["host"], "web-1");
    assert_eq!(notice["reason"], "spool_corrupt");
    let detail = notice["detail"].as_str().unwrap();
    assert!(
        detail.contains("record after sequence 7")
            && detail.contains("checksum mismatch")
            && detail.contains("7 records recovered"),
        "{detail}"
    );
}

fn sql(i: usize, text: &str) -> String {
    format!(
        r#"{{"kind":"sql","time":"2026-11-28T11:00:00.{i:09}Z","host":"web-1","identity":"claude","session":"db-1","pid":9,"exec_id":"x","text":"{text}","db.system":"postgresql","status":"ok","result":"DROP TABLE"}}"#
    )
}

#[test]
fn alerts_reach_watch_and_signed_webhooks_after_the_receiver_was_down_and_the_collector_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let hook_port = free_port();
    let rules = tmp.path().join("alerts.toml");
    std::fs::write(
        &rules,
        format!(
            "[[rule]]\nname = \"destructive-sql\"\nseverity = \"critical\"\nsql_class = [\"drop\", \"delete_without_where\"]\n\n\
             [[webhook]]\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nsecret = \"s3cret\"\n"
        ),
    )
    .unwrap();
    let col = Collector::start(
        &pki,
        &tmp.path().join("data"),
        0,
        &["--alerts", rules.to_str().unwrap()],
    );
    let mut watch = Command::new(recorder())
        .args(["watch", "--alerts-only"])
        .args(pki.client_args(col.port, "alice"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut records_watch = Command::new(recorder())
        .args(["watch", "--kind", "sql", "--identity", "claude"])
        .args(pki.client_args(col.port, "alice"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    // The receiver is down: the first alert waits in the queue.
    let o = ship(
        &pki,
        col.port,
        tmp.path(),
        "w1",
        &[
            sql(1, "DROP TABLE users"),
            sql(2, "DELETE FROM t WHERE id = 1"),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut first = String::new();
    BufReader::new(watch.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let alert: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(alert["alert"]["rule"], "destructive-sql");
    assert_eq!(alert["alert"]["severity"], "critical");
    assert_eq!(alert["record"]["text"], "DROP TABLE users");
    let _ = watch.kill();
    let _ = watch.wait();
    // The record stream: the stored lines exactly, each followed by the alerts it raised.
    let mut out = BufReader::new(records_watch.stdout.take().unwrap());
    let mut next = || {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        line
    };
    assert_eq!(next(), format!("{}\n", sql(1, "DROP TABLE users")));
    let alert: serde_json::Value = serde_json::from_str(&next()).unwrap();
    assert_eq!(alert["alert"]["rule"], "destructive-sql");
    assert_eq!(
        next(),
        format!("{}\n", sql(2, "DELETE FROM t WHERE id = 1"))
    );
    let _ = records_watch.kill();
    let _ = records_watch.wait();
    assert!(
        wait_for(Duration::from_secs(5), || col
            .log()
            .contains("webhook delivery failed")),
        "{}",
        col.log()
    );
    // The collector is killed before it could deliver: the queued alert is on disk, and the
    // next start sends it first.
    col.kill9();
    let col = Collector::start(
        &pki,
        &tmp.path().join("data"),
        0,
        &["--alerts", rules.to_str().unwrap()],
    );
    assert!(
        col.log().contains("alerts of an earlier run to deliver")
            || wait_for(Duration::from_secs(5), || col
                .log()
                .contains("alerts of an earlier run to deliver")),
        "{}",
        col.log()
    );

    let got = webhook_receiver(TcpListener::bind(("127.0.0.1", hook_port)).unwrap());
    let o = ship(
        &pki,
        col.port,
        tmp.path(),
        "w2",
        &[sql(3, "delete from orders")],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        wait_for(Duration::from_secs(20), || got.lock().unwrap().len() >= 2),
        "{:?} {}",
        got.lock().unwrap(),
        col.log()
    );
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret");
    for (sig, body) in got.iter() {
        let expect: String = ring::hmac::sign(&key, body.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sig, &format!("sha256={expect}"));
    }
    let texts: Vec<String> = got
        .iter()
        .map(|(_, b)| {
            serde_json::from_str::<serde_json::Value>(b).unwrap()["record"]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        texts,
        ["DROP TABLE users", "delete from orders"],
        "queued alert first, in order"
    );
}

#[test]
fn the_agent_checks_its_collector_flags_before_starting() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let base = [
        "agent",
        "--identity",
        "a=/sys/fs/cgroup",
        "--collector",
        "https://127.0.0.1:9",
    ];
    let o = run(&[&base[..], &["--spool", spool.to_str().unwrap()]].concat());
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--collector needs --tls-ca (or tls_ca in [collector])"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "agent",
        "--identity",
        "a=/sys/fs/cgroup",
        "--collector",
        "http://127.0.0.1:9",
        "--tls-ca",
        "x",
        "--tls-cert",
        "y",
        "--tls-key",
        "z",
        "--spool",
        spool.to_str().unwrap(),
    ]);
    assert!(
        stderr(&o).contains("the collector is only reachable over https://"),
        "{}",
        stderr(&o)
    );
}

/// Sessions recorded in Kubernetes pods: `sessions` and `replay` take a namespace and a pod.
#[test]
fn sessions_and_replay_by_namespace_and_pod() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let col = Collector::start(&pki, &tmp.path().join("data"), 0, &[]);
    // records() makes sessions of 20 records: sess-0 and sess-1 in two pods, sess-2 on the host.
    let pods = [
        Some(("agents", "claude-1")),
        Some(("agents", "claude-2")),
        None,
    ];
    let lines: Vec<String> = records("web-1", 60)
        .into_iter()
        .enumerate()
        .map(|(i, line)| match pods[i / 20] {
            Some((namespace, pod)) => format!(
                r#"{},"k8s.namespace.name":"{namespace}","k8s.pod.name":"{pod}","k8s.pod.uid":"u-{pod}","container.id":"c0ffee"}}"#,
                line.strip_suffix('}').unwrap()
            ),
            None => line,
        })
        .collect();
    let o = ship(&pki, col.port, tmp.path(), "pods", &lines, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let op = pki.client_args(col.port, "alice");

    let listed = |filter: &[&str]| -> Vec<(String, String, String)> {
        let mut head = vec!["sessions", "--format", "jsonl"];
        head.extend_from_slice(filter);
        let o = run(&args(&head, &op));
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let s = |k: &str| v[k].as_str().unwrap().to_string();
                (s("session"), s("namespace"), s("pod"))
            })
            .collect()
    };
    let pod_1 = (
        "sess-0".to_string(),
        "agents".to_string(),
        "claude-1".to_string(),
    );
    let pod_2 = (
        "sess-1".to_string(),
        "agents".to_string(),
        "claude-2".to_string(),
    );
    assert_eq!(listed(&["--pod", "claude-1"]), std::slice::from_ref(&pod_1));
    assert_eq!(listed(&["--namespace", "agents"]), [pod_2.clone(), pod_1]);
    assert!(listed(&["--namespace", "other"]).is_empty());
    assert_eq!(listed(&[]).len(), 3);
    let o = run(&args(&["sessions"], &op));
    assert!(
        stdout(&o).contains("NAMESPACE/POD") && stdout(&o).contains("agents/claude-2"),
        "{}",
        stdout(&o)
    );

    // Replay by pod, without a session id: that pod's records, byte for byte.
    let o = run(&args(
        &[
            "replay",
            "--namespace",
            "agents",
            "--pod",
            "claude-2",
            "--format",
            "jsonl",
        ],
        &op,
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let want: String = lines[20..40].iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(stdout(&o), want);
    let o = run(&args(&["replay", "--pod", "nowhere"], &op));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no session recorded in pod nowhere"),
        "{}",
        stderr(&o)
    );
    let o = run(&args(&["replay"], &op));
    assert!(!o.status.success(), "a session or a pod is needed");
    col.stop();
}
