//! A group of collectors on one PostgreSQL 15 (Debian's, started on loopback by the tests):
//! agents that fail over when a collector is killed, a database restarted mid-stream, and
//! tampering in the database found by `verify`, which names the record. Real `recorder`
//! processes, real certificates, mutual TLS; root only to run PostgreSQL as its own user.
mod collector_support;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use collector_support::*;
use recorder_tests::postgres::Postgres;

/// A new database on `pg`, as a connection string for `--store` (without TLS: the test
/// server's certificate names its host in the CN only, which no client should accept).
fn database(pg: &Postgres, name: &str) -> String {
    pg.psql_admin(&format!("CREATE DATABASE {name}"));
    format!(
        "postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable",
        pg.port
    )
}

fn count(pg: &Postgres, db: &str, sql: &str) -> u64 {
    pg.query(db, sql).parse().unwrap_or(0)
}

/// A collector of the group: `--store URL`, checkpoints every second.
fn group_collector(pki: &Pki, data: &Path, store: &str) -> Collector {
    Collector::start(
        pki,
        data,
        free_port(),
        &["--store", store, "--checkpoint-secs", "1"],
    )
}

/// The group's signing key, given to a second collector before it starts.
fn share_key(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join("checkpoint-key.p8"), to.join("checkpoint-key.p8")).unwrap();
}

/// `recorder ship` of `lines` as agent `host`, to the collectors in this order.
fn start_ship(pki: &Pki, dir: &Path, host: &str, lines: &[String], ports: &[u16]) -> Child {
    let file = dir.join(format!("{host}.jsonl"));
    write_lines(&file, lines);
    let mut cmd = Command::new(recorder());
    cmd.args(["ship", "--jsonl", file.to_str().unwrap(), "--spool"])
        .arg(dir.join(format!("{host}-spool")))
        .args(["--timeout", "180"]);
    for port in ports {
        cmd.args(["--collector", &format!("https://127.0.0.1:{port}")]);
    }
    cmd.args(["--tls-ca", &pki.path("ca.pem")])
        .args(["--tls-cert", &pki.path(&format!("{host}.pem"))])
        .args(["--tls-key", &pki.path(&format!("{host}-key.pem"))])
        .env("RECORDER_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish_ship(mut child: Child, n: usize) -> String {
    let status = child.wait().unwrap();
    let out = read_all(child.stdout.take().unwrap());
    let err = read_all(child.stderr.take().unwrap());
    assert!(status.success(), "ship failed: {out}{err}");
    assert_eq!(
        out,
        format!("shipped {n} records; everything in the spool is stored\n")
    );
    err
}

fn operator(pki: &Pki, port: u16, head: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = head.iter().map(|s| s.to_string()).collect();
    args.extend(pki.client_args(port, "alice"));
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The port the lease holder listens on (its name ends with it).
fn sequencer_port(pg: &Postgres, db: &str) -> Option<u16> {
    pg.query(
        db,
        "SELECT holder FROM sequencer_lease WHERE expires > now()",
    )
    .rsplit(':')
    .next()
    .and_then(|p| p.parse().ok())
}

#[test]
fn two_collectors_one_database_agents_fail_over_and_every_record_is_stored_once() {
    let pg = Postgres::start();
    let store = database(&pg, "recorder");
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    pki.issue("agent", "web-2");
    pki.issue("agent", "web-3");
    let first = group_collector(&pki, &tmp.path().join("c1"), &store);
    share_key(&tmp.path().join("c1"), &tmp.path().join("c2"));
    let second = group_collector(&pki, &tmp.path().join("c2"), &store);
    assert!(
        wait_for(Duration::from_secs(10), || sequencer_port(&pg, "recorder")
            .is_some()),
        "no collector took the sequencer lease: {}",
        first.log()
    );
    // Every agent sends to the sequencer first: killing it cuts off the agents and the
    // sequencing at once.
    let leader_port = sequencer_port(&pg, "recorder").unwrap();
    let (leader, survivor) = if leader_port == first.port {
        (first, second)
    } else {
        (second, first)
    };
    let order = [leader.port, survivor.port];
    let hosts = [("web-1", 66_667), ("web-2", 66_667), ("web-3", 66_666)];
    let inputs: Vec<Vec<String>> = hosts.iter().map(|(h, n)| records(h, *n)).collect();
    let ships: Vec<Child> = hosts
        .iter()
        .zip(&inputs)
        .map(|((h, _), lines)| start_ship(&pki, tmp.path(), h, lines, &order))
        .collect();
    assert!(
        wait_for(Duration::from_secs(120), || count(
            &pg,
            "recorder",
            "SELECT count(*) FROM placed"
        ) > 30_000),
        "nothing placed: {}",
        leader.log()
    );
    let signed_before = count(
        &pg,
        "recorder",
        "SELECT coalesce(max(tree_size), 0) FROM checkpoints",
    );
    let killed_at = Instant::now();
    leader.kill9();
    // The survivor takes the lease and signs a checkpoint beyond what was signed before.
    assert!(
        wait_for(Duration::from_secs(30), || count(
            &pg,
            "recorder",
            "SELECT coalesce(max(tree_size), 0) FROM checkpoints"
        ) > signed_before),
        "no checkpoint after the sequencer died: {}",
        survivor.log()
    );
    let took_over = killed_at.elapsed();
    eprintln!("checkpoints signed again {took_over:?} after the sequencer was killed");
    assert_eq!(sequencer_port(&pg, "recorder"), Some(survivor.port));
    // Within the lease (3 s), a sequencing round and the checkpoint interval (1 s), with room
    // for a loaded machine.
    assert!(took_over < Duration::from_secs(15), "{took_over:?}");
    let mut failed_over = 0;
    for (ship, (_, n)) in ships.into_iter().zip(&hosts) {
        let err = finish_ship(ship, *n);
        failed_over += usize::from(err.contains("trying the next one"));
    }
    assert_eq!(failed_over, 3, "every agent failed over to the survivor");

    // Every record once, each host's in its order, byte for byte.
    assert!(
        wait_for(Duration::from_secs(30), || count(
            &pg,
            "recorder",
            "SELECT count(*) FROM waiting"
        ) == 0),
        "records left unplaced"
    );
    assert_eq!(
        count(&pg, "recorder", "SELECT count(*) FROM records"),
        200_000
    );
    let stored = export(&pki, survivor.port);
    assert_eq!(stored.len(), 200_000, "every record exactly once");
    for ((host, _), input) in hosts.iter().zip(&inputs) {
        let tag = format!("\"host\":\"{host}\"");
        let of_host: Vec<&String> = stored.iter().filter(|l| l.contains(&tag)).collect();
        assert!(
            of_host.iter().copied().eq(input.iter()),
            "{host}: not its records in order"
        );
    }

    // verify through the survivor, and directly on the database with the pinned key.
    let o = operator(&pki, survivor.port, &["verify"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("ok: 200000 records"), "{}", stdout(&o));
    let key = std::fs::read_to_string(tmp.path().join("c1/checkpoint-key.pub")).unwrap();
    let o = run(&["verify", "--store", &store, "--public-key", key.trim()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).starts_with("ok: 200000 records"),
        "{}",
        stdout(&o)
    );

    // A session replayed through the survivor, every record proved against the signed
    // checkpoint with proofs read from the stored tree nodes.
    let o = operator(
        &pki,
        survivor.port,
        &["replay", "sess-7", "--host", "web-2", "--prove"],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("echo 140"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("proved: 20 record(s) are in the log signed at tree size 200000"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    survivor.stop();
}

#[test]
fn postgres_restarted_mid_stream_loses_and_duplicates_nothing() {
    let pg = Postgres::start();
    let store = database(&pg, "recorder");
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let col = group_collector(&pki, &tmp.path().join("c1"), &store);
    let lines = records("web-1", 100_000);
    let ship = start_ship(&pki, tmp.path(), "web-1", &lines, &[col.port]);
    assert!(
        wait_for(Duration::from_secs(120), || count(
            &pg,
            "recorder",
            "SELECT count(*) FROM records"
        ) > 20_000),
        "nothing stored: {}",
        col.log()
    );
    pg.restart_immediate();
    finish_ship(ship, lines.len());
    assert!(
        wait_for(Duration::from_secs(30), || count(
            &pg,
            "recorder",
            "SELECT count(*) FROM placed"
        ) == 100_000),
        "records left unplaced: {}",
        col.log()
    );
    let stored = export(&pki, col.port);
    assert_eq!(stored.len(), lines.len(), "every record exactly once");
    assert!(stored == lines, "in order and byte for byte");
    let o = operator(&pki, col.port, &["verify"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        col.log().contains("sequencing failed") || col.log().contains("store error"),
        "the outage went unreported: {}",
        col.log()
    );
    col.stop();
}

#[test]
fn tampering_in_the_database_is_found_and_names_the_record() {
    let pg = Postgres::start();
    let store = database(&pg, "signed");
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let data = tmp.path().join("c1");
    let col = group_collector(&pki, &data, &store);
    finish_ship(
        start_ship(
            &pki,
            tmp.path(),
            "web-1",
            &records("web-1", 1000),
            &[col.port],
        ),
        1000,
    );
    assert!(wait_for(Duration::from_secs(30), || count(
        &pg,
        "signed",
        "SELECT count(*) FROM placed"
    ) == 1000));
    // The final checkpoint covers all 1000.
    col.stop();
    assert_eq!(
        count(&pg, "signed", "SELECT max(tree_size) FROM checkpoints"),
        1000
    );
    let key = std::fs::read_to_string(data.join("checkpoint-key.pub")).unwrap();
    let verify = |db: &str| {
        run(&[
            "verify",
            "--store",
            &format!(
                "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
                pg.port
            ),
            "--public-key",
            key.trim(),
        ])
    };
    let o = verify("signed");
    assert!(
        o.status.success(),
        "untouched: {}{}",
        stdout(&o),
        stderr(&o)
    );

    let cases: [(&str, &str, &[&str]); 7] = [
        (
            "text",
            "UPDATE records SET line = convert_to(replace(convert_from(line, 'UTF8'), '\"echo\",\"100\"', '\"echo\",\"999\"'), 'UTF8')
             WHERE id = (SELECT record_id FROM placed WHERE log_index = 100)",
            &["log index 100 (host web-1", "content or place changed"],
        ),
        (
            "deleted",
            "DELETE FROM records WHERE id = (SELECT record_id FROM placed WHERE log_index = 200)",
            &["log index 200: its record's row was deleted, and no signed entry of retention covers it"],
        ),
        (
            "unplaced",
            "DELETE FROM placed WHERE log_index = 250",
            &["log index 250: missing", "sequence 251 (row id", "neither in the log nor waiting"],
        ),
        (
            "swapped",
            "UPDATE placed SET log_index = -1 WHERE log_index = 300;
             UPDATE placed SET log_index = 300 WHERE log_index = 301;
             UPDATE placed SET log_index = 301 WHERE log_index = -1",
            &["log index 300 (host web-1", "log index 301 (host web-1"],
        ),
        (
            "checkpoint",
            "UPDATE checkpoints SET time = '2020-01-01T00:00:00.000000000Z' WHERE tree_size = 1000",
            &["checkpoint at tree size 1000", "bad signature"],
        ),
        (
            "tree_node",
            "UPDATE tree_nodes SET hash = sha256(hash) WHERE level = 3 AND idx = 7",
            &["tree node level 3 index 7: differs from the hashes of its children"],
        ),
        (
            "inserted",
            "WITH last AS (SELECT * FROM placed WHERE log_index = 999),
                  copy AS (
                      INSERT INTO records (host, boot, seq, line, session, identity, kind, time_ns, namespace, pod)
                      SELECT host, boot, seq + 1, line, session, identity, kind, time_ns, namespace, pod
                      FROM records WHERE id = (SELECT record_id FROM last)
                      RETURNING id)
             INSERT INTO placed (log_index, record_id, prev, leaf)
             SELECT 1000, copy.id, last.leaf, last.leaf FROM copy, last",
            &["log index 1000 (host web-1", "beyond the signed head"],
        ),
    ];
    for (name, sql, expect) in cases {
        let db = format!("tampered_{name}");
        pg.psql_admin(&format!("CREATE DATABASE {db} TEMPLATE signed"));
        pg.query(&db, sql);
        let o = verify(&db);
        let out = stdout(&o);
        eprintln!("{name}:\n{out}");
        assert!(!o.status.success(), "{name}: verify passed:\n{out}");
        for e in expect {
            assert!(
                out.lines()
                    .any(|l| l.starts_with("TAMPERED: ") && l.contains(e)),
                "{name}: no problem naming {e:?}:\n{out}"
            );
        }
    }
}

#[test]
fn an_embedded_store_migrated_to_postgres_verifies_with_the_same_roots_and_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let data = tmp.path().join("data");
    let embedded = Collector::start(&pki, &data, free_port(), &[]);
    finish_ship(
        start_ship(
            &pki,
            tmp.path(),
            "web-1",
            &records("web-1", 5000),
            &[embedded.port],
        ),
        5000,
    );
    embedded.stop();
    let checkpoints = std::fs::read_to_string(data.join("checkpoints.jsonl")).unwrap();
    let last: serde_json::Value =
        serde_json::from_str(checkpoints.lines().last().unwrap()).unwrap();
    assert_eq!(last["tree_size"], 5000);
    let root = last["root"].as_str().unwrap().to_string();

    let pg = Postgres::start();
    let store = database(&pg, "migrated");
    let o = run(&["migrate", "--data", data.to_str().unwrap(), "--to", &store]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).starts_with("migrated 5000 records and ")
            && stdout(&o).contains(&format!("tree size 5000, root {root}")),
        "{}",
        stdout(&o)
    );
    let key = std::fs::read_to_string(data.join("checkpoint-key.pub")).unwrap();
    let o = run(&["verify", "--store", &store, "--public-key", key.trim()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).starts_with("ok: 5000 records")
            && stdout(&o).contains(&format!("tree size 5000, root {root}")),
        "{}",
        stdout(&o)
    );
    // Once only: the database holds a log now.
    let o = run(&["migrate", "--data", data.to_str().unwrap(), "--to", &store]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("already holds 5000 records"),
        "{}",
        stderr(&o)
    );

    // A collector of the group goes on from the copy: the new log extends the migrated one
    // (a consistency proof from the embedded store's last checkpoint), sessions replay.
    let col = group_collector(&pki, &data, &store);
    finish_ship(
        start_ship(
            &pki,
            tmp.path(),
            "web-1",
            &records("web-1", 1000),
            &[col.port],
        ),
        1000,
    );
    assert!(wait_for(Duration::from_secs(30), || count(
        &pg,
        "migrated",
        "SELECT coalesce(max(tree_size), 0) FROM checkpoints"
    ) == 6000));
    let kept = tmp.path().join("kept-checkpoint.json");
    std::fs::write(&kept, checkpoints.lines().last().unwrap()).unwrap();
    let o = operator(
        &pki,
        col.port,
        &[
            "verify",
            "--public-key",
            key.trim(),
            "--checkpoint-file",
            kept.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("ok: 6000 records"), "{}", stdout(&o));
    let o = operator(&pki, col.port, &["replay", "sess-3", "--format", "jsonl"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Session sess-3 of both shipments: 20 records from the copy, 20 from the new stream.
    assert_eq!(stdout(&o).lines().count(), 40, "{}", stdout(&o));
    col.stop();
}

#[test]
fn the_database_is_reached_over_tls_with_its_certificate_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    // The database's certificate: one our CA signed for localhost and 127.0.0.1.
    let pg = Postgres::start_with_cert(Some((
        &pki.dir.join("collector.pem"),
        &pki.dir.join("collector-key.pem"),
    )));
    pg.psql_admin("CREATE DATABASE recorder");
    let store = format!(
        "postgres://postgres@localhost:{}/recorder?sslmode=require",
        pg.port
    );
    // Not trusted by the system's CAs: refused, and said why.
    let o = run(&[
        "collector",
        "--listen",
        "127.0.0.1:0",
        "--data",
        tmp.path().join("refused").to_str().unwrap(),
        "--store",
        &store,
        "--tls-ca",
        &pki.path("ca.pem"),
        "--tls-cert",
        &pki.path("collector.pem"),
        "--tls-key",
        &pki.path("collector-key.pem"),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("certificate"), "{}", stderr(&o));
    let col = Collector::start(
        &pki,
        &tmp.path().join("c1"),
        free_port(),
        &["--store", &store, "--store-ca", &pki.path("ca.pem")],
    );
    finish_ship(
        start_ship(
            &pki,
            tmp.path(),
            "web-1",
            &records("web-1", 100),
            &[col.port],
        ),
        100,
    );
    let encrypted = count(
        &pg,
        "postgres",
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND datname = 'recorder'",
    );
    let plain = count(
        &pg,
        "postgres",
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE NOT ssl AND datname = 'recorder'",
    );
    assert!(
        encrypted > 0 && plain == 0,
        "{encrypted} over TLS, {plain} plain"
    );
    let o = run(&[
        "verify",
        "--store",
        &store,
        "--store-ca",
        &pki.path("ca.pem"),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    col.stop();

    // The database now wants a client certificate: without one the collector is refused, with
    // one our CA issued for the role it logs in as (`sslcert`/`sslkey` in the URL, as libpq
    // names them) it stores, and PostgreSQL saw that certificate.
    pki.issue("operator", "postgres");
    pki.issue("agent", "web-2");
    pg.require_client_certs(&pki.dir.join("ca.pem"));
    let o = run(&[
        "verify",
        "--store",
        &store,
        "--store-ca",
        &pki.path("ca.pem"),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("certificate"), "{}", stderr(&o));
    let with_cert = format!(
        "{store}&sslcert={}&sslkey={}",
        pki.path("postgres.pem"),
        pki.path("postgres-key.pem")
    );
    let col = Collector::start(
        &pki,
        &tmp.path().join("c1"),
        free_port(),
        &["--store", &with_cert, "--store-ca", &pki.path("ca.pem")],
    );
    finish_ship(
        start_ship(
            &pki,
            tmp.path(),
            "web-2",
            &records("web-2", 100),
            &[col.port],
        ),
        100,
    );
    let shown = pg.query(
        "postgres",
        "SELECT DISTINCT client_dn FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE datname = 'recorder'",
    );
    assert!(shown.contains("CN=postgres"), "{shown}");
    let o = run(&[
        "verify",
        "--store",
        &with_cert,
        "--store-ca",
        &pki.path("ca.pem"),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    col.stop();
}

/// Names `addresses` as `name` in /etc/hosts for as long as it lives: a DNS name with several
/// addresses, as a group of collectors behind one name has.
struct HostsEntry {
    marker: String,
}

impl HostsEntry {
    fn add(name: &str, addresses: &[&str]) -> Self {
        let marker = format!("# recorder test {}", std::process::id());
        let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap();
        if !hosts.ends_with('\n') {
            hosts.push('\n');
        }
        for a in addresses {
            hosts.push_str(&format!("{a} {name} {marker}\n"));
        }
        std::fs::write("/etc/hosts", hosts).unwrap();
        Self { marker }
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        if let Ok(hosts) = std::fs::read_to_string("/etc/hosts") {
            let kept: String = hosts
                .lines()
                .filter(|l| !l.ends_with(&self.marker))
                .map(|l| format!("{l}\n"))
                .collect();
            let _ = std::fs::write("/etc/hosts", kept);
        }
    }
}

/// Batches a collector received, from its /metrics.
fn batches(metrics_port: u16) -> u64 {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", metrics_port)) else {
        return 0;
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix("recorder_collector_batches_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn one_name_with_two_addresses_fails_over_between_its_collectors() {
    let name = format!("group-{}.recorder.test", std::process::id());
    let _hosts = HostsEntry::add(&name, &["127.0.0.1", "127.0.0.2"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let o = run(&[
        "pki",
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--san",
        &name,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pki = Pki { dir };
    pki.issue("agent", "web-1");
    pki.issue("operator", "alice");
    let pg = Postgres::start();
    let store = database(&pg, "recorder");
    let port = free_port();
    let metrics = free_port();
    let first = Collector::start_on(
        &pki,
        &tmp.path().join("c1"),
        &format!("127.0.0.1:{port}"),
        &[
            "--store",
            &store,
            "--metrics-addr",
            &format!("127.0.0.1:{metrics}"),
        ],
    );
    share_key(&tmp.path().join("c1"), &tmp.path().join("c2"));
    let second = Collector::start_on(
        &pki,
        &tmp.path().join("c2"),
        &format!("127.0.0.2:{port}"),
        &["--store", &store],
    );
    let lines = records("web-1", 100_000);
    let file = tmp.path().join("web-1.jsonl");
    write_lines(&file, &lines);
    let url = format!("https://{name}:{port}");
    let mut ship = Command::new(recorder())
        .args(["ship", "--jsonl", file.to_str().unwrap(), "--spool"])
        .arg(tmp.path().join("spool"))
        .args(["--timeout", "120", "--collector", &url])
        .args(["--tls-ca", &pki.path("ca.pem")])
        .args([
            "--tls-cert",
            &pki.path("web-1.pem"),
            "--tls-key",
            &pki.path("web-1-key.pem"),
        ])
        .env("RECORDER_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The name's first address receives; it dies mid-stream.
    assert!(
        wait_for(Duration::from_secs(60), || batches(metrics) >= 5),
        "the first address received nothing: {}",
        first.log()
    );
    first.kill9();
    let status = ship.wait().unwrap();
    let err = read_all(ship.stderr.take().unwrap());
    assert!(status.success(), "{err}");
    assert!(
        wait_for(Duration::from_secs(30), || count(
            &pg,
            "recorder",
            "SELECT count(*) FROM waiting"
        ) == 0
            && count(&pg, "recorder", "SELECT count(*) FROM placed")
                == 100_000),
        "not every record placed once: {}",
        second.log()
    );
    assert_eq!(
        count(&pg, "recorder", "SELECT count(*) FROM records"),
        100_000
    );
    // The operator names the group too, and reaches the survivor.
    let o = run(&[
        "verify",
        "--collector",
        &url,
        "--tls-ca",
        &pki.path("ca.pem"),
        "--tls-cert",
        &pki.path("alice.pem"),
        "--tls-key",
        &pki.path("alice-key.pem"),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("ok: 100000 records"), "{}", stdout(&o));
    second.stop();
}

/// Sessions with a failed action, a gap of their own and a gap of their host: the lines of
/// `recorder sessions`, the verdict of `recorder replay` and an evidence bundle are the same on
/// the embedded store, on a group's PostgreSQL store, and on that store migrated from the
/// embedded one.
#[test]
fn errors_gaps_and_verdicts_are_the_same_on_postgres_as_on_the_embedded_store() {
    let t = |s: u32| format!("2026-12-05T10:00:{s:02}.000000000Z");
    let rec = |kind: &str, s: u32, session: &str, fields: &str| {
        format!(
            r#"{{"kind":"{kind}","time":"{}","host":"web-1","identity":"claude","session":"{session}","pid":7,"exec_id":"e-{session}"{fields}}}"#,
            t(s)
        )
    };
    let exec = r#","argv":["make"],"argv_truncated":false,"cgroup":"/a","cwd":"/","exe":"/usr/bin/make","parent_exec_id":"","ppid":1,"text":"make","uid":0"#;
    let lines = vec![
        rec("exec", 1, "s1", exec),
        rec("exec", 2, "s2", exec),
        rec(
            "loss",
            3,
            "",
            r#","count":4,"lost_kind":"exec","reason":"ring_buffer_full""#,
        ),
        rec("exit", 4, "s1", r#","duration_ms":3.0,"exit_code":2"#),
        rec(
            "notice",
            30,
            "s2",
            r#","reason":"io_uring","detail":"pid 7 set up an io_uring""#,
        ),
        rec("exit", 31, "s2", r#","duration_ms":29000.0,"exit_code":0"#),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let pg = Postgres::start();
    let data = tmp.path().join("embedded");
    let embedded = Collector::start(&pki, &data, free_port(), &["--checkpoint-secs", "1"]);
    let group = group_collector(&pki, &tmp.path().join("group"), &database(&pg, "verdicts"));
    for port in [embedded.port, group.port] {
        finish_ship(
            start_ship(&pki, tmp.path(), "web-1", &lines, &[port]),
            lines.len(),
        );
        std::fs::remove_dir_all(tmp.path().join("web-1-spool")).unwrap();
    }
    // Every line of the list, as JSON without the times (they are the records' own anyway).
    let list = |port: u16, extra: &[&str]| {
        let mut head = vec!["sessions", "--format", "jsonl"];
        head.extend(extra);
        let o = operator(&pki, port, &head);
        assert!(o.status.success(), "{}", stderr(&o));
        let mut rows: Vec<String> = stdout(&o)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                format!(
                    "{} failed={} gaps={} {}",
                    v["session"], v["failed"], v["gaps"], v["completeness"]
                )
            })
            .collect();
        rows.sort();
        rows
    };
    let want = [
        r#""s1" failed=1 gaps=1 "1 gap""#,
        // Its own io_uring notice, and the host's loss while it ran.
        r#""s2" failed=0 gaps=2 "2 gaps""#,
    ];
    assert!(wait_for(Duration::from_secs(20), || list(group.port, &[]) == want));
    assert_eq!(list(embedded.port, &[]), want);
    for port in [embedded.port, group.port] {
        assert_eq!(list(port, &["--failed"]), want[..1]);
        assert_eq!(list(port, &["--gaps"]), want);
        assert_eq!(list(port, &["--until", "2026-12-05T10:00:01Z"]), want[..1]);
        let o = operator(&pki, port, &["replay", "s1"]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stdout(&o).ends_with(
                "session s1: incomplete (1 gap)\n  gap at 2026-12-05T10:00:03.000000000Z (record 2): \
                 ring buffer loss: 4 exec event(s) dropped in the kernel\n"
            ),
            "{}",
            stdout(&o)
        );
        let bundle = tmp.path().join(format!("s2-{port}.html"));
        let o = operator(
            &pki,
            port,
            &["evidence", "s2", "-o", bundle.to_str().unwrap()],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let o = run(&["verify", "--bundle", bundle.to_str().unwrap()]);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        assert!(
            stdout(&o).contains("3 records and 1 host-wide records")
                && stdout(&o)
                    .contains("gap: record 2 at 2026-12-05T10:00:03.000000000Z: ring buffer loss")
                && stdout(&o).contains("gap: record 4 at 2026-12-05T10:00:30.000000000Z: io_uring"),
            "{}",
            stdout(&o)
        );
    }
    embedded.stop();
    group.stop();
    let migrated = database(&pg, "verdicts_migrated");
    let o = run(&[
        "migrate",
        "--data",
        data.to_str().unwrap(),
        "--to",
        &migrated,
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let col = group_collector(&pki, &data, &migrated);
    assert_eq!(list(col.port, &[]), want);
    assert_eq!(list(col.port, &["--failed"]), want[..1]);
    col.stop();
}

/// A record line of host `race`, sequence `seq`.
fn race_line(seq: u64) -> Vec<u8> {
    format!(
        r#"{{"kind":"exec","time":"2026-12-05T10:00:00.{seq:09}Z","host":"race","identity":"claude","session":"s1","pid":{seq},"exec_id":"r-{seq}","argv":["echo","{seq}"],"argv_truncated":false,"cgroup":"/agents/claude","cwd":"/","exe":"/usr/bin/echo","ppid":1,"text":"echo {seq}","uid":1000}}"#
    )
    .into_bytes()
}

/// Two collectors storing overlapping batches of one stream at the same instant (an agent that
/// failed over while its batch was in flight resends from its acknowledged point, with more
/// lines): each line is stored once, the one that lost the race stores the rest of its batch,
/// the stream's end is acknowledged, and the sequencer places every record once, in sequence
/// order, in a log that verifies. Through the store's library, which lets the test send the
/// same lines to both at once.
#[test]
fn overlapping_batches_stored_at_once_by_two_collectors_are_stored_once() {
    use recorder_store_postgres::{PgLog, Sequencer};
    let pg = Postgres::start();
    let url = database(&pg, "racing");
    let key_dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let open = || async {
            let signer =
                recorder_store::integrity::checkpoint::Signer::load_or_create(key_dir.path())
                    .unwrap();
            PgLog::open(
                &url,
                None,
                signer,
                recorder_store::CheckpointPolicy::default(),
            )
            .await
            .unwrap()
        };
        let (a, b) = (open().await, open().await);
        let ok = |_: &recorder_record::Record| Ok(());
        let mut stored = 0;
        let mut duplicates = 0;
        // Rounds: A is sent lines 1..=200 of the round, B 1..=300, at once (in every other
        // round B first); each round starts where the previous one ended.
        let mut first = 1;
        for round in 0..20 {
            let lines_a: Vec<Vec<u8>> = (first..first + 200).map(race_line).collect();
            let lines_b: Vec<Vec<u8>> = (first..first + 300).map(race_line).collect();
            let (x, y) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
            let (ra, rb) = tokio::join!(
                x.append("race", "boot-1", first, &lines_a, ok),
                y.append("race", "boot-1", first, &lines_b, ok),
            );
            let (ra, rb) = (ra.unwrap(), rb.unwrap());
            stored += ra.stored + rb.stored;
            duplicates += ra.duplicates + rb.duplicates;
            assert_eq!(ra.acked.max(rb.acked), Some(first + 299));
            first += 300;
        }
        assert_eq!(stored, 6000, "every line stored once");
        assert_eq!(
            duplicates, 4000,
            "the overlap of each round (200 lines), once"
        );
        let leading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut sequencer = Sequencer::new(a.clone(), "test".into(), leading).unwrap();
        while sequencer.step().await.unwrap() || a.placed().await.unwrap() < 6000 {}
        assert_eq!(a.placed().await.unwrap(), 6000);
        assert_eq!(a.waiting().await.unwrap(), 0);
        let records = a.read_range(0, 6000).await.unwrap();
        let seqs: Vec<u64> = records.iter().map(|r| r.sequence).collect();
        assert_eq!(seqs, (1..=6000).collect::<Vec<_>>());
        let v = a.verify().await.unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.records, 6000);
        // A waiting batch whose records were deleted by hand stops sequencing, and says so,
        // rather than being skipped (stored through B: the sequencer's own collector would
        // place it from memory, and `verify` would then name the deleted rows).
        let lines: Vec<Vec<u8>> = (6001..=6010).map(race_line).collect();
        b.append("race", "boot-1", 6001, &lines, ok).await.unwrap();
        pg.query("racing", "DELETE FROM records WHERE seq > 6000");
        let e = sequencer.step().await.unwrap_err().to_string();
        assert!(e.contains("has no row in records"), "{e}");
        assert_eq!(a.placed().await.unwrap(), 6000);
    });
}
