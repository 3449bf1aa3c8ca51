//! Kubernetes API calls against a local HTTPS API server, by kubectl (Go TLS, HTTP/2) in a loop
//! and by one curl process (OpenSSL, HTTP/2) making many requests: no agent, agent on but the
//! client unwatched, and watched; the added time per hooked TLS call.
use std::time::Duration;

use anyhow::Context as _;
use recorder_tests::{Cgroup, kube_api::KubeApi};

use super::{
    Builds, cpu_us, start_agent,
    stats::{Goal, Samples, line},
    timed_bash,
};

/// What one build's agent did over the rounds.
#[derive(Default, Clone)]
struct Runs {
    unwatched: Samples,
    watched: Samples,
    cpu_per_call: Samples,
    generated: u64,
    recorded: u64,
}

pub fn bench(builds: &Builds, rounds: u32) -> anyhow::Result<()> {
    // kubectl throttles itself past a burst of 10 requests (then 5/s): each run fetches 8 names
    // (8 GETs on one HTTP/2 connection), 25 runs in a row. curl makes all its calls in one
    // process, on one connection.
    const KUBECTL_RUNS: usize = 25;
    const KUBECTL_NAMES: usize = 8;
    const CURL_CALLS: usize = 1000;
    let dir = tempfile::tempdir()?;
    let api = KubeApi::start(dir.path());
    let kubeconfig = api
        .kubeconfig()
        .to_str()
        .context("kubeconfig path")?
        .to_string();
    let cache = api.cache_dir().to_str().context("cache path")?.to_string();
    let env = [("KUBECACHEDIR", cache.as_str())];
    // `kubectl get` fetches each name it is given, one request each.
    let names = ["web-2"; KUBECTL_NAMES].join(" ");
    let kubectl_many = format!(
        "for i in $(seq {KUBECTL_RUNS}); do \
         kubectl --kubeconfig {kubeconfig} get pods -n team-a -o name {names} >/dev/null || exit 1; done"
    );
    let url = format!("{}/api/v1/namespaces/team-a/pods/web-2", api.url());
    let ca = api.ca_cert().to_str().context("CA path")?.to_string();
    // One process, one HTTP/2 connection, many requests: the per-call cost of the OpenSSL probes.
    let curl_many = format!(
        "urls=(); for i in $(seq {CURL_CALLS}); do urls+=({url}); done; \
         curl -sS --http2 --cacert {ca} -o /dev/null \"${{urls[@]}}\""
    );
    let clients = [
        (
            "kubectl get, 25 runs of 8 calls (Go TLS, HTTP/2)",
            kubectl_many,
        ),
        ("curl, one process (OpenSSL, HTTP/2)", curl_many),
    ];
    let watched = Cgroup::new("bench-kube-watched");
    let unwatched = Cgroup::new("bench-kube-unwatched");
    for (label, script) in clients {
        timed_bash(&unwatched, &script, &env)?; // warm-up: page cache, discovery cache
        let served_before = api.requests().len();
        timed_bash(&unwatched, &script, &env)?;
        let calls = (api.requests().len() - served_before) as f64;
        let mut base = Samples::default();
        let mut runs = vec![Runs::default(); builds.len()];
        for round in 0..rounds {
            if round % 2 == 0 {
                base.push(timed_bash(&unwatched, &script, &env)?);
            }
            for (b, _, build) in builds.iter() {
                let r = &mut runs[b];
                let agent = start_agent(build, &["--identity", &watched.identity_flag("bench")]);
                r.unwatched.push(timed_bash(&unwatched, &script, &env)?);
                let cpu0 = cpu_us(agent.pid())?;
                let served_before = api.requests().len();
                r.watched.push(timed_bash(&watched, &script, &env)?);
                r.generated += (api.requests().len() - served_before) as u64;
                std::thread::sleep(Duration::from_millis(500));
                let cpu1 = cpu_us(agent.pid())?;
                let records = agent.stop();
                let api_records = records
                    .iter()
                    .filter(|r| r["kind"] == "k8s" && r["source"] == "api")
                    .count() as u64;
                r.recorded += api_records;
                r.cpu_per_call
                    .push((cpu1 - cpu0) / api_records.max(1) as f64);
            }
            if round % 2 == 1 {
                base.push(timed_bash(&unwatched, &script, &env)?);
            }
            eprintln!("[bench] {label}, round {} of {rounds}", round + 1);
        }
        println!("{label}: {calls:.0} API calls per run ({rounds} rounds, medians (spread)):");
        let rate = |s: &Samples| Samples(s.0.iter().map(|secs| calls / secs).collect());
        line("no agent", &rate(&base), " calls/s", 0, Goal::None);
        for (b, build, _) in builds.iter() {
            let r = &runs[b];
            println!("  {build}:");
            line(
                "agent on, client unwatched / no agent",
                &base.ratio_to(&r.unwatched),
                "",
                3,
                Goal::None,
            );
            line(
                "watched, every call recorded / no agent",
                &base.ratio_to(&r.watched),
                "",
                3,
                Goal::None,
            );
            let added = Samples(
                r.watched
                    .0
                    .iter()
                    .zip(&base.0)
                    .map(|(w, b)| (w - b) * 1e6 / calls)
                    .collect(),
            );
            line("added time per hooked call", &added, " us", 1, Goal::None);
            line(
                "agent CPU per API call",
                &r.cpu_per_call,
                " us",
                1,
                Goal::None,
            );
            println!(
                "  API calls served / recorded: {} / {}",
                r.generated, r.recorded
            );
        }
    }
    Ok(())
}
