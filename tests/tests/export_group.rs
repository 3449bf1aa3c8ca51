//! Exporters on a group of collectors sharing PostgreSQL: only the sequencing collector
//! delivers, from a cursor the group keeps in the database; when it is killed with SIGKILL the
//! survivor takes over the lease and goes on from that cursor. Debian's rsyslog receives.
mod collector_support;

use std::{collections::HashMap, path::Path, time::Duration};

use collector_support::*;
use recorder_tests::{postgres::Postgres, rsyslog::Rsyslog};

fn sequencer_port(pg: &Postgres, db: &str) -> Option<u16> {
    pg.query(
        db,
        "SELECT holder FROM sequencer_lease WHERE expires > now()",
    )
    .rsplit(':')
    .next()
    .and_then(|p| p.parse().ok())
}

/// Event id → times received, from rsyslog's `HOST TAB MSGID TAB SD TAB MSG` lines.
fn received(r: &Rsyslog) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for line in r.output().lines() {
        let sd = line.split('\t').nth(2).unwrap_or_default();
        let start = sd
            .find("event_id=\"")
            .unwrap_or_else(|| panic!("no event id in a received line: {line:?}"))
            + 10;
        let id = &sd[start..start + sd[start..].find('"').unwrap()];
        *out.entry(id.to_string()).or_default() += 1;
    }
    out
}

#[test]
fn the_sequencing_collector_delivers_and_the_survivor_goes_on_from_the_shared_cursor() {
    const N: usize = 60_000;
    let pg = Postgres::start();
    pg.psql_admin("CREATE DATABASE recorder");
    let store = format!(
        "postgres://postgres@127.0.0.1:{}/recorder?sslmode=disable",
        pg.port
    );
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let syslog = Rsyslog::start(&tmp.path().join("rsyslog"), free_port(), None);
    let config = tmp.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[[export]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{}\"\nconfirm_ms = 500\n",
            syslog.port
        ),
    )
    .unwrap();
    let start = |dir: &Path| {
        Collector::start(
            &pki,
            dir,
            free_port(),
            &["--store", &store, "--config", config.to_str().unwrap()],
        )
    };
    let first = start(&tmp.path().join("c1"));
    std::fs::create_dir_all(tmp.path().join("c2")).unwrap();
    std::fs::copy(
        tmp.path().join("c1/checkpoint-key.p8"),
        tmp.path().join("c2/checkpoint-key.p8"),
    )
    .unwrap();
    let second = start(&tmp.path().join("c2"));
    assert!(wait_for(Duration::from_secs(10), || sequencer_port(
        &pg, "recorder"
    )
    .is_some()));
    let (leader, survivor) = if sequencer_port(&pg, "recorder") == Some(first.port) {
        (first, second)
    } else {
        (second, first)
    };
    let lines = records("web-1", N);
    let o = ship(&pki, survivor.port, tmp.path(), "a", &lines, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The leader delivers; kill it with SIGKILL part way.
    assert!(
        wait_for(Duration::from_secs(60), || syslog.output().lines().count()
            >= N / 3),
        "{} received\n{}",
        received(&syslog).len(),
        leader.log()
    );
    leader.kill9();
    let received_at_kill = received(&syslog).len();
    let cursor_at_kill: u64 = pg
        .query(
            "recorder",
            "SELECT coalesce(max(next), 0) FROM export_cursors",
        )
        .parse()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(15), || survivor
            .log()
            .contains("this collector delivers now")),
        "the survivor did not take over delivery: {}",
        survivor.log()
    );
    assert!(
        wait_for(Duration::from_secs(120), || received(&syslog).len() == N),
        "{} of {N} received\n{}",
        received(&syslog).len(),
        survivor.log()
    );
    let got = received(&syslog);
    let twice: usize = got.values().map(|n| n - 1).sum();
    assert!(
        got.values().all(|&n| n <= 2),
        "a record arrived more than twice"
    );
    let mut seqs: Vec<usize> = got
        .keys()
        .map(|id| id.rsplit('/').next().unwrap().parse().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=N).collect::<Vec<_>>(),
        "every record, under its own event id"
    );
    let cursor = || -> u64 {
        pg.query(
            "recorder",
            "SELECT next FROM export_cursors WHERE name = 'siem'",
        )
        .parse()
        .unwrap_or(0)
    };
    assert!(
        wait_for(Duration::from_secs(10), || cursor() == N as u64),
        "the group's cursor is at {}, not at the end",
        cursor()
    );
    println!(
        "group: {N} records at rsyslog; leader killed (SIGKILL) with {received_at_kill} received and the shared cursor at {cursor_at_kill}; sent again by the survivor (same event id): {twice}"
    );
    survivor.stop();
}
