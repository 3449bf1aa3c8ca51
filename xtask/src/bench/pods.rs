//! Identities selected by Kubernetes pod on a busy node: 100 pods served by the local API server
//! (each with its container cgroup in kubelet's layout and a process in it), 5 of them selected,
//! pod labels changing 5 times a second, a command a second in each selected pod. The agent's
//! RSS and CPU against the same agent watching the same commands by cgroup path, with no pods to
//! follow; and the time from a new pod's first process to its first record.
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::Context as _;
use recorder_tests::{
    Agent, Cgroup,
    kube_api::KubeApi,
    kubelet::{Driver, NODE, Qos, Runtime, TestPod},
};

use super::{
    Build, Builds, cpu_us,
    exec::rss_kib,
    start_agent,
    stats::{Goal, Samples, line},
};

const PODS: usize = 100;
const SELECTED: usize = 5;
/// How long each agent is measured, once ready.
const WINDOW: Duration = Duration::from_secs(20);
/// New selected pods timed from their first process to their first record, per round.
const NEW_PODS: usize = 5;

#[derive(Default, Clone)]
struct Runs {
    rss_by_path: Samples,
    rss_by_pod: Samples,
    cpu_by_path: Samples,
    cpu_by_pod: Samples,
    first_record_ms: Samples,
    commands: u64,
    recorded: u64,
}

pub fn bench(builds: &Builds, rounds: u32) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let api = KubeApi::start(dir.path());
    let root = Cgroup::new("bench-pods");
    let mut pods: Vec<TestPod> = (0..PODS)
        .map(|i| {
            let (driver, qos, runtime) = match i % 3 {
                0 => (Driver::Systemd, Qos::Burstable, Runtime::Containerd),
                1 => (Driver::Systemd, Qos::BestEffort, Runtime::CriO),
                _ => (Driver::Cgroupfs, Qos::Guaranteed, Runtime::Containerd),
            };
            let pod = TestPod::new(&root.path, driver, qos, runtime, &format!("pod-{i}"));
            if i < SELECTED {
                pod
            } else {
                pod.with_labels(&[("app", "web"), ("tier", "web")])
            }
        })
        .collect();
    for pod in &mut pods {
        pod.start_container();
        api.put_pod(pod.object());
    }
    // The same commands, watched by path: one plain cgroup for the baseline agent.
    let plain = Cgroup::new("bench-pods-plain");
    let kubeconfig = api.kubeconfig().to_str().context("kubeconfig")?.to_string();
    let by_pod = [
        "--identity",
        "claude=k8s:namespace=agents;labels=app=claude",
        "--node-name",
        NODE,
        "--kubeconfig",
        &kubeconfig,
        "--copy-label",
        "app",
    ];
    let by_path_flag = plain.identity_flag("claude");
    let by_path = ["--identity", by_path_flag.as_str()];

    let mut runs = vec![Runs::default(); builds.len()];
    for round in 0..rounds {
        for (b, _, build) in builds.iter() {
            let r = &mut runs[b];
            let (rss, cpu, _) = measure(build, &by_path, &api, &mut pods, |_| {
                plain.run("/bin/true", &[]);
            })?;
            r.rss_by_path.push(rss);
            r.cpu_by_path.push(cpu);
            let (rss, cpu, agent) = measure(build, &by_pod, &api, &mut pods, |pods| {
                for pod in &pods[..SELECTED] {
                    pod.exec("/bin/true", &[]);
                }
            })?;
            r.rss_by_pod.push(rss);
            r.cpu_by_pod.push(cpu);
            for i in 0..NEW_PODS {
                r.first_record_ms
                    .push(first_record_ms(&agent, &api, &root, round, i)?);
            }
            let records = agent.stop();
            r.commands += (WINDOW.as_secs() as usize * SELECTED) as u64;
            r.recorded += records
                .iter()
                .filter(|x| x["kind"] == "exec" && x["argv"][0] == "/bin/true")
                .count() as u64;
        }
        eprintln!("[bench] pods round {} of {rounds}", round + 1);
    }
    println!(
        "Kubernetes pods ({PODS} pods on the node, {SELECTED} selected, 5 label changes/s, \
         {} s windows, {rounds} rounds, medians (spread)):",
        WINDOW.as_secs()
    );
    for (b, build, _) in builds.iter() {
        let r = &runs[b];
        println!("  {build}:");
        line(
            "agent RSS, identity by cgroup path",
            &r.rss_by_path,
            " MiB",
            1,
            Goal::None,
        );
        line(
            "agent RSS, by pod selector",
            &r.rss_by_pod,
            " MiB",
            1,
            Goal::AtMost(64.0),
        );
        line(
            "agent CPU, by cgroup path",
            &r.cpu_by_path,
            " %",
            2,
            Goal::None,
        );
        line(
            "agent CPU, by pod selector",
            &r.cpu_by_pod,
            " %",
            2,
            Goal::AtMost(2.0),
        );
        line(
            "new pod: first process to first record",
            &r.first_record_ms,
            " ms",
            1,
            Goal::AtMost(1000.0),
        );
        println!(
            "  commands in selected pods run / recorded: {} / {}",
            r.commands, r.recorded
        );
    }
    Ok(())
}

/// One agent over the window, `tick` run once a second while a non-selected pod's labels change
/// every 200 ms. Returns (RSS MiB at the end, CPU % of one core over the window, the agent).
fn measure(
    build: &Build,
    args: &[&str],
    api: &KubeApi,
    pods: &mut [TestPod],
    tick: impl Fn(&[TestPod]),
) -> anyhow::Result<(f64, f64, Agent)> {
    let agent = start_agent(build, args);
    let cpu0 = cpu_us(agent.pid())?;
    let start = Instant::now();
    let mut changes = 0usize;
    let mut next_tick = Duration::ZERO;
    while start.elapsed() < WINDOW {
        if start.elapsed() >= next_tick {
            tick(pods);
            next_tick += Duration::from_secs(1);
        }
        // Label churn on pods the selector does not take (a deployment rolling, annotations...).
        let pod = &mut pods[SELECTED + changes % (PODS - SELECTED)];
        pod.labels = vec![
            ("app".into(), "web".into()),
            ("revision".into(), changes.to_string()),
        ];
        api.put_pod(pod.object());
        changes += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let cpu = (cpu_us(agent.pid())? - cpu0) / start.elapsed().as_micros() as f64 * 100.0;
    let (rss, _) = rss_kib(agent.pid())?;
    Ok((rss as f64 / 1024.0, cpu, agent))
}

/// A new selected pod, played as kubelet does (cgroup, first process, then the pod with its
/// container in its status): milliseconds from its first process to its first record.
fn first_record_ms(
    agent: &Agent,
    api: &KubeApi,
    root: &Cgroup,
    round: u32,
    i: usize,
) -> anyhow::Result<f64> {
    let mut pod = TestPod::new(
        &root.path,
        Driver::Systemd,
        Qos::Burstable,
        Runtime::Containerd,
        &format!("new-{round}-{i}"),
    );
    let started = pod.start_container();
    api.put_pod(pod.object());
    let records = agent.wait_for("the new pod's first record", |records| {
        records.iter().any(|r| r["k8s.pod.uid"] == pod.uid.as_str())
    });
    let first = records
        .iter()
        .find(|r| r["k8s.pod.uid"] == pod.uid.as_str())
        .context("the new pod's record")?;
    let at = recorder_record::time::parse_rfc3339(first["time"].as_str().context("time")?)
        .context("an RFC 3339 time")? as f64;
    let started = started.duration_since(UNIX_EPOCH)?.as_nanos() as f64;
    api.delete_pod(&pod.namespace, &pod.name);
    pod.stop_container();
    Ok((at - started) / 1e6)
}
