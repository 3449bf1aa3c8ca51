//! `cargo xtask bench --only console`: the web console on a large store. A collector (embedded
//! store) is given 100,000 sessions of two records each and one session of 1,000 records; then,
//! over HTTPS with an operator token: the time to the first byte of the sessions page (first
//! and a deep page, filtered, searched) and of the JSON list, measured by curl; the time until
//! Chromium has rendered the sessions page and until it has checked the 1,000-record session's
//! proofs itself (WebCrypto); and the size of that session's evidence bundle and the time of
//! `recorder verify --bundle` on it. Medians over the runs.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, Command, Stdio},
};

use anyhow::Context as _;

use super::{
    stats::{Goal, Samples, line},
    store::checked,
};
use crate::util::recorder_bin;

const SESSIONS: usize = 100_000;
const BIG: usize = 1_000;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The browser's side, as the test drives it: login, then the sessions page `n` times (time to
/// the load event), then the big session until its integrity is checked in the page.
const BROWSER: &str = r#"
import json, sys, time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
base, token, session, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
o = webdriver.ChromeOptions()
for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--ignore-certificate-errors"]:
    o.add_argument(a)
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
d.get(base + "/login"); d.find_element(By.ID, "token").send_keys(token); d.find_element(By.ID, "login").click()
page, checked = [], []
for _ in range(n):
    d.get(base + "/")
    t = d.execute_script("const e = performance.getEntriesByType('navigation')[0]; return e.loadEventEnd - e.startTime;")
    page.append(t / 1000)
for _ in range(n):
    start = time.monotonic()
    d.get(base + "/session?host=web-1&session=" + session)
    while d.find_element(By.ID, "session").get_attribute("innerHTML").find('data-state="checking"') >= 0 or not d.find_elements(By.ID, "integrity"):
        time.sleep(0.01)
    assert d.find_element(By.ID, "integrity").get_attribute("data-state") == "verified"
    checked.append(time.monotonic() - start)
d.quit()
print(json.dumps({"page": page, "checked": checked}))
"#;

fn records(path: &std::path::Path) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let exec = |session: &str, identity: &str, i: usize, t: &str| {
        format!(
            r#"{{"kind":"exec","time":"{t}","host":"web-1","identity":"{identity}","session":"{session}","pid":{i},"exec_id":"x{i}","argv":["echo","marker-{i}"],"argv_truncated":false,"cgroup":"/agents","cwd":"/","exe":"/bin/echo","parent_exec_id":"","ppid":1,"text":"echo marker-{i}","uid":1000}}"#
        )
    };
    let exit = |session: &str, identity: &str, i: usize, t: &str| {
        format!(
            r#"{{"kind":"exit","time":"{t}","host":"web-1","identity":"{identity}","session":"{session}","pid":{i},"exec_id":"x{i}","duration_ms":1.0,"exit_code":0}}"#
        )
    };
    let time = |i: usize| {
        format!(
            "2026-12-01T{:02}:{:02}:{:02}.{:09}Z",
            (i / 3600) % 24,
            (i / 60) % 60,
            i % 60,
            i
        )
    };
    for i in 0..SESSIONS {
        let (session, identity) = (format!("bench-{i}"), format!("agent-{}", i % 10));
        writeln!(out, "{}", exec(&session, &identity, i, &time(i)))?;
        writeln!(out, "{}", exit(&session, &identity, i, &time(i)))?;
    }
    for j in 0..BIG / 2 {
        let i = SESSIONS + j;
        writeln!(out, "{}", exec("big", "agent-0", i, &time(i)))?;
        writeln!(out, "{}", exit("big", "agent-0", i, &time(i)))?;
    }
    out.flush()?;
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Seconds to the first byte and in all, by curl.
fn curl(url: &str, token: &str) -> anyhow::Result<(f64, f64)> {
    let out = checked(Command::new("curl").args([
        "-sk",
        "-o",
        "/dev/null",
        "--fail",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-w",
        "%{time_starttransfer} %{time_total}",
        url,
    ]))?;
    let mut parts = out.split_whitespace().map(str::parse::<f64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b))) => Ok((a, b)),
        _ => anyhow::bail!("curl printed {out:?}"),
    }
}

pub fn bench(rounds: u32) -> anyhow::Result<()> {
    println!("== web console: {SESSIONS} sessions, one of {BIG} records (embedded store)");
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    let p = |f: &str| pki.join(f).to_string_lossy().into_owned();
    let bin = recorder_bin();
    checked(Command::new(&bin).args(["pki", "init", "--dir", &p("")]))?;
    for (role, name) in [("agent", "web-1"), ("operator", "alice")] {
        checked(Command::new(&bin).args([
            "pki",
            "issue",
            "--dir",
            &p(""),
            "--role",
            role,
            "--name",
            name,
        ]))?;
    }
    let jsonl = dir.path().join("records.jsonl");
    records(&jsonl)?;
    let ui = free_port()?;
    let mut child = Command::new(&bin)
        .args(["collector", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .args(["--tls-ca", &p("ca.pem"), "--tls-cert", &p("collector.pem")])
        .args([
            "--tls-key",
            &p("collector-key.pem"),
            "--checkpoint-secs",
            "1",
        ])
        .args(["--ui-listen", &format!("127.0.0.1:{ui}")])
        .env("RECORDER_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut first = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut first)?;
    let _collector = Killed(child);
    let port = first
        .trim()
        .rsplit(':')
        .next()
        .context("no port")?
        .to_string();
    let collector = format!("https://127.0.0.1:{port}");
    checked(
        Command::new(&bin)
            .args(["ship", "--jsonl"])
            .arg(&jsonl)
            .arg("--spool")
            .arg(dir.path().join("spool"))
            .args(["--collector", &collector, "--tls-ca", &p("ca.pem")])
            .args([
                "--tls-cert",
                &p("web-1.pem"),
                "--tls-key",
                &p("web-1-key.pem"),
            ]),
    )?;
    let token = checked(Command::new(&bin).args([
        "token",
        "--tls-cert",
        &p("alice.pem"),
        "--tls-key",
        &p("alice-key.pem"),
    ]))?
    .trim()
    .to_string();
    let base = format!("https://127.0.0.1:{ui}");
    let runs = (rounds * 5) as usize;
    for (label, path) in [
        ("sessions page 1 (of 2,001)", "/"),
        ("sessions page 1,000", "/?page=1000"),
        ("sessions of one identity (10,000)", "/?identity=agent-3"),
        ("JSON list, page 1", "/api/sessions"),
        ("search, 250,000 records read", "/?q=marker-99999"),
    ] {
        let (mut ttfb, mut total) = (Samples::default(), Samples::default());
        for _ in 0..runs {
            let (a, b) = curl(&format!("{base}{path}"), &token)?;
            ttfb.push(a * 1000.0);
            total.push(b * 1000.0);
        }
        line(&format!("{label}: first byte"), &ttfb, " ms", 1, Goal::None);
        line(
            &format!("{label}: whole page"),
            &total,
            " ms",
            1,
            Goal::None,
        );
    }
    let out = checked(Command::new("python3").args([
        "-c",
        BROWSER,
        &base,
        &token,
        "big",
        &runs.to_string(),
    ]))?;
    let v: serde_json::Value = serde_json::from_str(out.trim())?;
    let samples = |k: &str| {
        Samples(
            v[k].as_array()
                .into_iter()
                .flatten()
                .filter_map(serde_json::Value::as_f64)
                .map(|s| s * 1000.0)
                .collect(),
        )
    };
    line(
        "Chromium: sessions page rendered (load event)",
        &samples("page"),
        " ms",
        0,
        Goal::None,
    );
    line(
        &format!("Chromium: {BIG}-record session verified in the page"),
        &samples("checked"),
        " ms",
        0,
        Goal::None,
    );
    let bundle = dir.path().join("big.html");
    checked(
        Command::new(&bin)
            .args(["evidence", "big", "-o"])
            .arg(&bundle)
            .args(["--collector", &collector, "--tls-ca", &p("ca.pem")])
            .args([
                "--tls-cert",
                &p("alice.pem"),
                "--tls-key",
                &p("alice-key.pem"),
            ]),
    )?;
    let size = std::fs::metadata(&bundle)?.len() as f64 / 1024.0;
    line(
        &format!("evidence bundle of {BIG} records"),
        &Samples(vec![size]),
        " KiB",
        0,
        Goal::None,
    );
    let mut verify = Samples::default();
    for _ in 0..runs {
        let started = std::time::Instant::now();
        checked(Command::new(&bin).args(["verify", "--bundle"]).arg(&bundle))?;
        verify.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    line("recorder verify --bundle", &verify, " ms", 0, Goal::None);
    Ok(())
}
