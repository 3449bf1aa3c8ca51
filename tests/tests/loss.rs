//! End-to-end: nothing is lost silently. With a deliberately tiny ring buffer and a paused
//! consumer an exec storm overflows it, and every exec is either recorded or counted in a
//! `loss` record.
use std::time::{Duration, Instant};

use recorder_tests::{Agent, Cgroup, argv, of_kind};
use serde_json::Value;

const EXECS: u64 = 3000;

fn execs_accounted(records: &[Value]) -> (u64, u64) {
    let recorded = of_kind(records, "exec").len() as u64;
    let lost: u64 = of_kind(records, "loss")
        .iter()
        .filter(|r| r["lost_kind"] == "exec")
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    (recorded, lost)
}

#[test]
fn an_exec_storm_into_a_tiny_ring_buffer_is_recorded_or_counted_exactly() {
    let cg = Cgroup::new("storm");
    // 8 KiB holds one exec event (4.7 KiB of fixed fields plus argv): the consumer must keep
    // up with every single exec, and cannot.
    let agent = Agent::start(&[
        "--identity",
        &cg.identity_flag("storm"),
        "--ring-buffer-kib",
        "8",
    ]);
    let script = format!("for i in $(seq {EXECS}); do /bin/true; done");
    // A consumer that cannot keep up, for certain: the agent is paused for the storm (woken as
    // soon as an event is written, it could otherwise drain each exec before the next).
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGSTOP) };
    let out = cg.run("/bin/bash", &["-c", &script]);
    // SAFETY: as above.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGCONT) };
    assert!(out.status.success());
    // bash itself, seq, and EXECS × true.
    let generated = EXECS + 2;
    let start = Instant::now();
    let records = loop {
        let records = agent.records();
        let (recorded, lost) = execs_accounted(&records);
        if recorded + lost >= generated || start.elapsed() > Duration::from_secs(15) {
            break records;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (recorded, lost) = execs_accounted(&records);
    assert_eq!(
        recorded + lost,
        generated,
        "recorded {recorded} + lost {lost} must be the {generated} execs made"
    );
    assert!(
        lost > 0,
        "the tiny ring buffer should have overflowed (recorded {recorded})"
    );
    assert!(recorded > 0);
    for loss in of_kind(&records, "loss") {
        assert_eq!(loss["identity"], "storm");
        assert_eq!(loss["reason"], "ring_buffer_full");
    }
    // What was recorded is real: every recorded true has its exact argv.
    let trues = of_kind(&records, "exec")
        .iter()
        .filter(|r| argv(r) == ["/bin/true"])
        .count() as u64;
    assert!(trues + 2 >= recorded);
    eprintln!("storm: {generated} execs, {recorded} recorded, {lost} counted as lost");
}
