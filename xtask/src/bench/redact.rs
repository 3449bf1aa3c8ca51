//! `cargo xtask bench --only redact`: what redaction with the default rules costs per record,
//! in process, against writing the record's JSON line (which every record costs anyway) in the
//! same run: a typical exec, a typical SQL statement with parameters, a shell line, and an exec
//! that carries a secret (the rare case that is changed). Medians over the rounds.
use std::time::Instant;

use recorder_record::Record;
use recorder_redact::{RedactionConfig, Redactor};

use super::stats::{Goal, Samples, line};

const N: u32 = 200_000;

fn record(kind: &str, fields: &str) -> Record {
    let line = format!(
        r#"{{"kind":"{kind}","time":"2026-12-05T10:00:00.000000000Z","host":"web-1","identity":"claude","session":"sfb1fbed7-2125fb398280-7861","pid":7123,"exec_id":"fb1fbed7-7123-35387756660089"{fields}}}"#
    );
    Record::parse(line.as_bytes()).expect("a valid record")
}

fn exec(argv: &str, text: &str) -> Record {
    record(
        "exec",
        &format!(
            r#","argv":{argv},"argv_truncated":false,"cgroup":"/agents/claude","cwd":"/home/claude/project","exe":"/usr/bin/git","parent_exec_id":"fb1fbed7-7100-35387756600000","ppid":7100,"text":"{text}","uid":1000"#
        ),
    )
}

/// Nanoseconds per call of `f`, over N calls.
fn per_call(mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..N {
        f();
    }
    start.elapsed().as_secs_f64() * 1e9 / f64::from(N)
}

pub fn bench(rounds: u32) -> anyhow::Result<()> {
    println!("== redaction, default rules, per record (in process)");
    let redactor = Redactor::new(
        b"bench key, 32 bytes long.......",
        &RedactionConfig::default(),
    )?;
    let cases = [
        (
            "exec `git status --short`",
            exec(r#"["git","status","--short"]"#, "git status --short"),
        ),
        (
            "exec `python3 manage.py migrate --noinput`",
            exec(
                r#"["python3","manage.py","migrate","--noinput"]"#,
                "python3 manage.py migrate --noinput",
            ),
        ),
        (
            "sql SELECT with 2 parameters",
            record(
                "sql",
                r#","db.name":"shop","db.server":"127.0.0.1:5432","db.system":"postgresql","db.user":"app","params":["42","2026-12-01"],"result":"SELECT 3","status":"ok","text":"SELECT id, total FROM orders WHERE customer_id = $1 AND created_at > $2","tls":true"#,
            ),
        ),
        (
            "shell `cd /srv/app && make test`",
            record("shell", r#","text":"cd /srv/app && make test""#),
        ),
        (
            "exec with a secret (mysql -pS3cret)",
            exec(
                r#"["mysql","-uroot","-pS3cret","shop"]"#,
                "mysql -uroot -pS3cret shop",
            ),
        ),
    ];
    for (i, (label, r)) in cases.iter().enumerate() {
        // The goal is for typical records; the rare one that holds a secret is copied and
        // changed.
        let goal = if i + 1 < cases.len() {
            Goal::AtMost(1000.0)
        } else {
            Goal::None
        };
        let (mut redact, mut write, mut ratio) =
            (Samples::default(), Samples::default(), Samples::default());
        for _ in 0..rounds.max(1) * 3 {
            let mut buf = Vec::with_capacity(1024);
            let w = per_call(|| {
                buf.clear();
                r.write_line(&mut buf);
                std::hint::black_box(&buf);
            });
            let d = per_call(|| {
                std::hint::black_box(redactor.redacted(std::hint::black_box(r)));
            });
            write.push(w);
            redact.push(d);
            ratio.push(d / w);
        }
        line(&format!("{label}: redaction"), &redact, " ns", 0, goal);
        line(
            &format!("{label}: its JSON line"),
            &write,
            " ns",
            0,
            Goal::None,
        );
        line(
            &format!("{label}: redaction / line"),
            &ratio,
            "",
            2,
            Goal::None,
        );
    }
    Ok(())
}
