//! Retention with archival against a real S3-compatible server (PyPI's moto, a bucket with
//! Object Lock and a default COMPLIANCE retention): age rules per identity and kind, a legal
//! hold on a session, an exporter that holds deletion back, signed deletion entries, `verify`
//! of what remains and of the archive, and records read back from the archive by `export` and
//! `replay` through the collector.
mod collector_support;

use std::{
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use collector_support::*;
use recorder_record::time::rfc3339_nanos;
use recorder_tests::postgres::Postgres;

/// PyPI's moto S3 server on loopback.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start(log: &Path) -> Self {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("python3 -m moto.server (cargo xtask setup installs moto)");
        assert!(
            wait_for(Duration::from_secs(30), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "moto did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        Self { child, port }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs boto3 code with `s3` a client of this server; returns its stdout.
    fn boto3(&self, code: &str) -> String {
        let script = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='test', aws_secret_access_key='test', region_name='us-east-1')\n{code}",
            self.endpoint()
        );
        let o = Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(o.status.success(), "boto3: {}", stderr(&o));
        stdout(&o)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which part of the input a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    /// Commands 200 days old: past the 90-day default.
    Old,
    /// Commands 200 days old in the held session.
    Held,
    /// SQL of identity claude 200 days old: kept 400 days.
    OldSql,
    /// Commands of today.
    New,
}

fn ago(days: u64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    rfc3339_nanos((now.as_nanos() - u128::from(days) * 86_400 * 1_000_000_000) as i128)
}

/// The input: 12,000 old commands (20 of them in session held-1), 4,000 old SQL statements,
/// 8,000 new commands; ~330 bytes each, so a 1 MiB segment holds about two batches of the
/// shipper (4,000 records).
fn input() -> (Vec<String>, Vec<Group>) {
    let (old, new) = (ago(200), ago(0));
    let pad = "p".repeat(150);
    let mut lines = Vec::new();
    let mut groups = Vec::new();
    for i in 0..24_000usize {
        let (group, kind, time, session) = match i {
            6_000..6_020 => (Group::Held, "exec", &old, "held-1".to_string()),
            0..12_000 => (Group::Old, "exec", &old, format!("old-{}", i / 20)),
            12_000..16_000 => (Group::OldSql, "sql", &old, format!("sql-{}", i / 20)),
            _ => (Group::New, "exec", &new, format!("new-{}", i / 20)),
        };
        let body = if kind == "sql" {
            format!(r#""db_system":"postgresql","text":"SELECT {i} /* {pad} */""#)
        } else {
            format!(r#""argv":["echo","{i}","{pad}"],"text":"echo {i}""#)
        };
        lines.push(format!(
            r#"{{"kind":"{kind}","time":"{time}","host":"web-1","identity":"claude","session":"{session}","pid":{},"exec_id":"x{i}",{body}}}"#,
            i + 1
        ));
        groups.push(group);
    }
    (lines, groups)
}

/// The `[retention.archive]` table for the moto bucket.
fn s3_archive(moto: &Moto) -> String {
    format!(
        r#"[retention.archive]
url = "s3://audit/recorder"
options = {{ endpoint = "{}", aws_allow_http = "true", region = "us-east-1", access_key_id = "test", secret_access_key = "test" }}
"#,
        moto.endpoint()
    )
}

fn config(path: &Path, archive: &str, exporter: Option<u16>) {
    let export = exporter.map_or(String::new(), |port| {
        format!(
            "[[export]]\nname = \"siem\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/in\"\nsecret = \"s\"\n"
        )
    });
    std::fs::write(
        path,
        format!(
            r#"{export}
[retention]
default_days = 90
check_every_secs = 1

[[retention.rule]]
identity = "claude"
kinds = ["sql"]
days = 400

[[retention.hold]]
session = "held-1"
reason = "case 4411"

{archive}"#
        ),
    )
    .unwrap();
}

/// The log indexes of the records in a segment file.
fn indexes_in(segment: &[u8]) -> Vec<u64> {
    frames(segment)
        .into_iter()
        .map(|r| u64::from_le_bytes(segment[r.start + 5..r.start + 13].try_into().unwrap()))
        .collect()
}

fn metric(addr: &str, name: &str) -> u64 {
    let o = Command::new("curl")
        .args(["-sf", &format!("http://{addr}/metrics")])
        .output()
        .unwrap();
    stdout(&o)
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// A collector with the configuration file `cfg`, 1 MiB segments and metrics on `metrics`.
fn start(pki: &Pki, data: &Path, cfg: &Path, metrics: &str) -> Collector {
    let extra = [
        "--config",
        cfg.to_str().unwrap(),
        "--segment-mib",
        "1",
        "--metrics-addr",
        metrics,
    ];
    Collector::start(pki, data, free_port(), &extra)
}

/// Waits until the collector's metric `name` is at least `n`.
fn wait_metric(col: &Collector, metrics: &str, name: &str, n: u64, secs: u64) {
    assert!(
        wait_for(Duration::from_secs(secs), || metric(metrics, name) >= n),
        "{name} stayed at {}: {}",
        metric(metrics, name),
        col.log()
    );
}

#[test]
fn old_segments_are_archived_to_s3_then_pruned_and_read_back_and_everything_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let moto = Moto::start(&tmp.path().join("moto.log"));
    moto.boto3(
        "s3.create_bucket(Bucket='audit', ObjectLockEnabledForBucket=True)\n\
         s3.put_object_lock_configuration(Bucket='audit', ObjectLockConfiguration={'ObjectLockEnabled': 'Enabled', 'Rule': {'DefaultRetention': {'Mode': 'COMPLIANCE', 'Days': 1}}})",
    );
    let data = tmp.path().join("data");
    let cfg = tmp.path().join("collector.toml");
    let (lines, groups) = input();

    // 1. An exporter whose receiver is down holds every deletion back.
    let dead = free_port();
    config(&cfg, &s3_archive(&moto), Some(dead));
    let metrics = format!("127.0.0.1:{}", free_port());
    let col = start(&pki, &data, &cfg, &metrics);
    let o = ship(&pki, col.port, tmp.path(), "a", &lines, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_metric(&col, &metrics, "recorder_retention_kept_segments", 4, 20);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        metric(&metrics, "recorder_retention_pruned_segments_total"),
        0
    );
    assert!(
        !data.join("pruned").exists(),
        "pruned while an exporter had not delivered"
    );
    col.stop();
    println!("with the exporter's receiver down: nothing pruned after several checks");

    // 2. Without that exporter: old segments go, after their copy is in the bucket.
    config(&cfg, &s3_archive(&moto), None);
    let col = start(&pki, &data, &cfg, &metrics);
    wait_metric(
        &col,
        &metrics,
        "recorder_retention_pruned_segments_total",
        2,
        30,
    );
    wait_metric(&col, &metrics, "recorder_retention_kept_segments", 1, 10);
    std::thread::sleep(Duration::from_secs(2));
    let pruned_segments = metric(&metrics, "recorder_retention_pruned_segments_total");
    let pruned_records = metric(&metrics, "recorder_retention_pruned_records_total");

    // What remains: every closed segment still on disk holds a record that must stay (held,
    // SQL kept 400 days, or new); every record that went was an old command outside the hold.
    let mut remaining = std::collections::BTreeSet::new();
    let mut segs: Vec<_> = std::fs::read_dir(data.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    for (n, path) in segs.iter().enumerate() {
        let idx = indexes_in(&std::fs::read(path).unwrap());
        let last = n + 1 == segs.len();
        if !last && !idx.is_empty() {
            assert!(
                idx.iter().any(|&i| groups[i as usize] != Group::Old),
                "{} holds only records past their time and was kept",
                path.display()
            );
        }
        remaining.extend(idx);
    }
    let gone: Vec<usize> = (0..lines.len())
        .filter(|i| !remaining.contains(&(*i as u64)))
        .collect();
    assert_eq!(gone.len() as u64, pruned_records);
    for &i in &gone {
        assert_eq!(
            groups[i],
            Group::Old,
            "log index {i} ({:?}) was pruned",
            groups[i]
        );
    }
    println!(
        "pruned {pruned_segments} segments ({pruned_records} records, all old commands outside the hold); {} records remain",
        remaining.len()
    );

    // Read back through the collector: export of the whole log and a replay of a pruned
    // session come back byte for byte, from the archive's copies.
    let exported = export(&pki, col.port);
    assert_eq!(exported, lines, "export differs from what was recorded");
    let session = serde_json::from_str::<serde_json::Value>(&lines[gone[0]]).unwrap()["session"]
        .as_str()
        .unwrap()
        .to_string();
    let mut args = vec![
        "replay".to_string(),
        session.clone(),
        "--format".into(),
        "jsonl".into(),
    ];
    args.extend(pki.client_args(col.port, "alice"));
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let want: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains(&format!("\"session\":\"{session}\"")))
        .map(String::as_str)
        .collect();
    let out = stdout(&o);
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got, want, "replay {session}");
    println!(
        "export gave all {} records back in order; replay of pruned session {session} gave its {}",
        exported.len(),
        want.len()
    );
    // Online verify, through the collector, lists the pruned ranges too.
    let mut args = vec!["verify".to_string()];
    args.extend(pki.client_args(col.port, "alice"));
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(
        stdout(&o)
            .lines()
            .filter(|l| l.starts_with("pruned: segment "))
            .count() as u64,
        pruned_segments,
        "{}",
        stdout(&o)
    );
    col.stop();

    // verify of what remains: passes and lists the pruned ranges.
    let o = run(&["verify", "--data", data.to_str().unwrap()]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    let listed = out
        .lines()
        .filter(|l| l.starts_with("pruned: segment "))
        .count() as u64;
    assert_eq!(listed, pruned_segments, "{out}");
    assert!(
        out.contains("default_days = 90") && out.contains("archived to s3://audit/recorder"),
        "{out}"
    );
    println!("{out}");

    // verify of the archive, with the key pinned.
    let key = std::fs::read_to_string(data.join("checkpoint-key.pub")).unwrap();
    let archive_args = |extra: &[&str]| {
        let mut a = vec![
            "verify".to_string(),
            "--archive".into(),
            "s3://audit/recorder".into(),
            "--public-key".into(),
            key.trim().to_string(),
        ];
        for o in [
            format!("endpoint={}", moto.endpoint()),
            "aws_allow_http=true".into(),
            "region=us-east-1".into(),
            "access_key_id=test".into(),
            "secret_access_key=test".into(),
        ] {
            a.extend(["--archive-option".to_string(), o]);
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let a = archive_args(&[]);
    let o = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(
        stdout(&o)
            .lines()
            .filter(|l| l.starts_with("archived: segment "))
            .count() as u64,
        pruned_segments,
        "{}",
        stdout(&o)
    );
    println!("{}", stdout(&o));

    // Object Lock: the bucket's default retention holds every archived object.
    let locked = moto.boto3(
        "import botocore\n\
         out = []\n\
         for v in s3.list_object_versions(Bucket='audit', Prefix='recorder/segments/')['Versions']:\n\
         \x20   h = s3.head_object(Bucket='audit', Key=v['Key'], VersionId=v['VersionId'])\n\
         \x20   assert h['ObjectLockMode'] == 'COMPLIANCE', h\n\
         \x20   try:\n\
         \x20       s3.delete_object(Bucket='audit', Key=v['Key'], VersionId=v['VersionId'])\n\
         \x20       out.append('deleted ' + v['Key'])\n\
         \x20   except botocore.exceptions.ClientError as e:\n\
         \x20       out.append('refused')\n\
         print(len(out), sorted(set(out)))",
    );
    assert_eq!(
        locked.trim(),
        format!("{} ['refused']", 2 * pruned_segments),
        "{locked}"
    );

    // An archived segment replaced by a new version with one byte changed: caught, named.
    let seg = gone[0];
    let name = moto.boto3(&format!(
        "keys = sorted(o['Key'] for o in s3.list_objects_v2(Bucket='audit', Prefix='recorder/segments/')['Contents'] if o['Key'].endswith('.log'))\n\
         body = bytearray(s3.get_object(Bucket='audit', Key=keys[0])['Body'].read())\n\
         i = body.find(b'echo {seg}')\n\
         body[i + 5] ^= 1\n\
         s3.put_object(Bucket='audit', Key=keys[0], Body=bytes(body))\n\
         print(keys[0])"
    ));
    let o = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success());
    let out = stdout(&o);
    assert!(
        out.contains("TAMPERED: archived segment") && out.contains(&format!("log index {seg} ")),
        "{out}"
    );
    println!(
        "changed {}: {}",
        name.trim(),
        out.lines().find(|l| l.starts_with("TAMPERED")).unwrap()
    );

    // The signed ledger of deletions edited: verify names it.
    let ledger = data.join("pruned/ledger.jsonl");
    let text = std::fs::read_to_string(&ledger).unwrap();
    std::fs::write(
        &ledger,
        text.replacen("default_days = 90", "default_days = 30", 1),
    )
    .unwrap();
    let o = run(&["verify", "--data", data.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("bad signature: the record of this deletion was altered"),
        "{}",
        stdout(&o)
    );
}

/// The local-path backend: pruned records are in the archive's files, `verify --archive`
/// passes, and an archived segment with one byte changed is caught by `verify --archive` and
/// refused when the collector would read it back (its records skipped, the rest exported).
#[test]
fn a_local_path_archive_holds_the_pruned_records_and_a_changed_copy_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let data = tmp.path().join("data");
    let archive = tmp.path().join("archive");
    let url = format!("file://{}", archive.display());
    let cfg = tmp.path().join("collector.toml");
    config(
        &cfg,
        &format!("[retention.archive]\nurl = \"{url}\"\n"),
        None,
    );
    let (lines, groups) = input();
    let metrics = format!("127.0.0.1:{}", free_port());
    let col = start(&pki, &data, &cfg, &metrics);
    let o = ship(&pki, col.port, tmp.path(), "a", &lines, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_metric(
        &col,
        &metrics,
        "recorder_retention_pruned_segments_total",
        2,
        30,
    );
    col.stop();

    // Every record no longer in the store is in an archived segment file, byte for byte.
    let mut remaining = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(data.join("segments")).unwrap() {
        remaining.extend(indexes_in(&std::fs::read(e.unwrap().path()).unwrap()));
    }
    let mut archived = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(archive.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    names.sort();
    for path in &names {
        let bytes = std::fs::read(path).unwrap();
        for (range, index) in frames(&bytes).into_iter().zip(indexes_in(&bytes)) {
            let frame = &bytes[range];
            let line = lines[index as usize].as_bytes();
            assert!(
                frame.windows(line.len()).any(|w| w == line),
                "log index {index} is not whole in {}",
                path.display()
            );
            archived.push(index);
        }
    }
    let gone: Vec<u64> = (0..lines.len() as u64)
        .filter(|i| !remaining.contains(i))
        .collect();
    assert_eq!(archived, gone, "the archive holds exactly what was pruned");
    assert!(gone.iter().all(|&i| groups[i as usize] == Group::Old));
    println!(
        "{} records pruned, each in the archive at {url}",
        gone.len()
    );

    let key = std::fs::read_to_string(data.join("checkpoint-key.pub")).unwrap();
    let verify = || run(&["verify", "--archive", &url, "--public-key", key.trim()]);
    let o = verify();
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let o = run(&["verify", "--data", data.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&format!("archived to {url}")),
        "{}",
        stdout(&o)
    );

    // One byte of the first archived segment changed.
    let mut bytes = std::fs::read(&names[0]).unwrap();
    let first = indexes_in(&bytes)[0];
    let needle = format!("\"exec_id\":\"x{first}\"");
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap();
    bytes[at + 11] ^= 1;
    std::fs::write(&names[0], &bytes).unwrap();
    let o = verify();
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains(&format!("log index {first} ")),
        "{}",
        stdout(&o)
    );
    println!(
        "{}",
        stdout(&o)
            .lines()
            .find(|l| l.starts_with("TAMPERED"))
            .unwrap()
    );

    // The collector refuses to read that copy back: its records are skipped, the rest comes.
    let col = start(&pki, &data, &cfg, &metrics);
    let exported = export(&pki, col.port);
    let first_seg = indexes_in(&bytes);
    assert_eq!(
        exported.len(),
        lines.len() - first_seg.len(),
        "{}",
        col.log()
    );
    assert!(!exported.contains(&lines[first as usize]));
    let log = col.log();
    assert!(
        log.contains("a pruned record cannot be read back") && log.contains("content changed"),
        "{log}"
    );
    col.stop();
}

/// A group's PostgreSQL log: old runs of log indexes are archived and their records' rows
/// deleted, their places kept; `verify --store` passes and lists them, `verify --archive`
/// checks the copies; a row deleted outside retention, or a kept leaf changed, is caught.
#[test]
fn a_postgresql_log_prunes_old_runs_keeps_their_places_and_archives_them() {
    let pg = Postgres::start();
    pg.psql_admin("CREATE DATABASE recorder");
    let store = format!(
        "postgres://postgres@127.0.0.1:{}/recorder?sslmode=disable",
        pg.port
    );
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let archive = tmp.path().join("archive");
    let url = format!("file://{}", archive.display());
    let cfg = tmp.path().join("collector.toml");
    config(
        &cfg,
        &format!("segment_records = 2000\n[retention.archive]\nurl = \"{url}\"\n"),
        None,
    );
    // `segment_records` belongs in [retention], before its sub-tables.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "segment_records = 2000\n[retention.archive]",
        "[retention.archive]",
    );
    std::fs::write(
        &cfg,
        text.replace(
            "check_every_secs = 1\n",
            "check_every_secs = 1\nsegment_records = 2000\n",
        ),
    )
    .unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let col = Collector::start(
        &pki,
        &tmp.path().join("c1"),
        free_port(),
        &[
            "--store",
            &store,
            "--config",
            cfg.to_str().unwrap(),
            "--checkpoint-secs",
            "1",
            "--metrics-addr",
            &metrics,
        ],
    );
    let (lines, groups) = input();
    let o = ship(&pki, col.port, tmp.path(), "a", &lines, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Runs of 2,000: 0..12,000 old commands except the held session in 6,000..8,000.
    wait_metric(
        &col,
        &metrics,
        "recorder_retention_pruned_segments_total",
        5,
        60,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        metric(&metrics, "recorder_retention_pruned_segments_total"),
        5
    );
    let count = |sql: &str| pg.query("recorder", sql).trim().parse::<u64>().unwrap();
    assert_eq!(count("SELECT count(*) FROM records"), 14_000);
    assert_eq!(count("SELECT count(*) FROM placed"), 24_000);
    let gone: Vec<u64> = pg
        .query(
            "recorder",
            "SELECT p.log_index FROM placed p LEFT JOIN records r ON r.id = p.record_id WHERE r.id IS NULL ORDER BY 1",
        )
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(gone.len(), 10_000);
    assert!(gone.iter().all(|&i| groups[i as usize] == Group::Old));
    // Through the collector, the pruned runs read back from the archive: export gives every
    // record in order, a replay of a pruned session all of its records.
    let exported = export(&pki, col.port);
    assert_eq!(exported, lines, "export differs from what was recorded");
    let mut args = vec![
        "replay".to_string(),
        "old-0".into(),
        "--format".into(),
        "jsonl".into(),
    ];
    args.extend(pki.client_args(col.port, "alice"));
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), lines[..20].join("\n") + "\n", "replay old-0");
    col.stop();

    let key = std::fs::read_to_string(tmp.path().join("c1/checkpoint-key.pub")).unwrap();
    let verify = || run(&["verify", "--store", &store, "--public-key", key.trim()]);
    let o = verify();
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(
        stdout(&o)
            .lines()
            .filter(|l| l.starts_with("pruned: segment "))
            .count(),
        5,
        "{}",
        stdout(&o)
    );
    let o = run(&["verify", "--archive", &url, "--public-key", key.trim()]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("ok: 5 archived segment(s), 10000 records intact"),
        "{}",
        stdout(&o)
    );
    println!(
        "PostgreSQL: 10,000 records' rows deleted in 5 runs, 24,000 places kept; verify --store and --archive pass"
    );

    // A row deleted outside retention, then a kept leaf of a pruned run changed: each caught.
    pg.query(
        "recorder",
        "DELETE FROM records WHERE id = (SELECT record_id FROM placed WHERE log_index = 13000)",
    );
    let o = verify();
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("log index 13000: its record's row was deleted, and no signed entry of retention covers it"),
        "{}",
        stdout(&o)
    );
    pg.query(
        "recorder",
        "UPDATE placed SET leaf = sha256(leaf) WHERE log_index = 100",
    );
    let o = verify();
    assert!(
        stdout(&o).contains("pruned segment 0 (log index 0..2000): its stored leaf hashes are not those the entry signed"),
        "{}",
        stdout(&o)
    );
}
