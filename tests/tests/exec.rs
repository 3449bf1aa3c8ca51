//! End-to-end: the agent records every process of a watched identity, from the kernel.
//! Root only: each test loads the real eBPF programs through the real `recorder` binary.
use std::collections::HashSet;

use recorder_tests::{Agent, Cgroup, argv, dump, of_kind};
use serde_json::Value;

fn find_exec<'a>(records: &'a [Value], want: &[&str]) -> &'a Value {
    records
        .iter()
        .find(|r| r["kind"] == "exec" && argv(r) == want)
        .unwrap_or_else(|| panic!("no exec record with argv {want:?} in:\n{}", dump(records)))
}

fn exit_of<'a>(records: &'a [Value], exec: &Value) -> &'a Value {
    records
        .iter()
        .find(|r| r["kind"] == "exit" && r["exec_id"] == exec["exec_id"])
        .unwrap_or_else(|| panic!("no exit record for {exec} in:\n{}", dump(records)))
}

#[test]
fn records_a_shell_pipeline_with_argv_lineage_session_and_exit_codes() {
    let cg = Cgroup::new("pipeline");
    let agent = Agent::start(&["--identity", &cg.identity_flag("demo")]);
    let script = r#"ls /; echo hi | grep -c h; sh -c "exit 3""#;
    let out = cg.run("/bin/bash", &["-c", script]);
    assert_eq!(out.status.code(), Some(3));
    let records = agent.wait_for("the exit of sh", |r| {
        r.iter().any(|x| x["kind"] == "exit" && x["exit_code"] == 3)
    });

    let bash = find_exec(&records, &["/bin/bash", "-c", script]);
    let ls = find_exec(&records, &["ls", "/"]);
    let grep = find_exec(&records, &["grep", "-c", "h"]);
    let sh = find_exec(&records, &["sh", "-c", "exit 3"]);
    // The chain: bash is the session root (its parent, the test, is outside the identity);
    // ls, grep (via a forked subshell that never exec'd) and sh descend from it.
    assert_eq!(bash["parent_exec_id"], "", "{bash}");
    for child in [ls, grep, sh] {
        assert_eq!(child["parent_exec_id"], bash["exec_id"], "{child}");
    }
    assert_eq!(ls["ppid"], bash["pid"]);
    assert_eq!(
        sh["pid"], bash["pid"],
        "bash runs its last command with exec, in place"
    );
    assert_eq!(bash["ppid"].as_u64(), Some(std::process::id() as u64));
    assert_eq!(bash["exe"], "/usr/bin/bash");
    assert_eq!(ls["exe"], "/usr/bin/ls");
    assert_eq!(
        sh["exe"], "/usr/bin/dash",
        "sh is dash on Debian; exe is the real file"
    );
    assert_eq!(bash["text"], format!("/bin/bash -c '{script}'"));
    assert_eq!(
        bash["cgroup"],
        format!("/{}", cg.path.file_name().unwrap().to_str().unwrap())
    );
    assert_eq!(
        bash["cwd"],
        std::env::current_dir().unwrap().to_str().unwrap()
    );

    // One session, one identity, for every record.
    let execs = of_kind(&records, "exec");
    assert_eq!(
        execs.len(),
        4,
        "exactly bash, ls, grep, sh:\n{}",
        dump(&records)
    );
    let sessions: HashSet<_> = records
        .iter()
        .map(|r| r["session"].as_str().unwrap())
        .collect();
    assert_eq!(sessions.len(), 1, "{}", dump(&records));
    assert!(
        records
            .iter()
            .all(|r| r["identity"] == "demo" && r["host"].as_str().is_some_and(|h| !h.is_empty()))
    );
    let ids: HashSet<_> = execs
        .iter()
        .map(|r| r["exec_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "exec ids are unique");

    // Exit codes as the processes really ended.
    assert_eq!(exit_of(&records, ls)["exit_code"], 0);
    assert_eq!(exit_of(&records, grep)["exit_code"], 0);
    assert_eq!(exit_of(&records, sh)["exit_code"], 3);
    assert!(exit_of(&records, sh)["duration_ms"].as_f64().unwrap() >= 0.0);
    // Order: each exit after its exec; ls before grep before sh.
    let pos = |r: &Value| records.iter().position(|x| x == r).unwrap();
    assert!(pos(bash) < pos(ls) && pos(ls) < pos(grep) && pos(grep) < pos(sh));
    assert!(pos(ls) < pos(exit_of(&records, ls)));
    // Times are RFC 3339 UTC with nanoseconds.
    let t = bash["time"].as_str().unwrap();
    assert!(
        t.len() == 30 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
        "{t}"
    );
}

#[test]
fn ignores_processes_outside_watched_cgroups() {
    let watched = Cgroup::new("watched");
    let other = Cgroup::new("other");
    let agent = Agent::start(&["--identity", &watched.identity_flag("w")]);
    let marker = format!("outside-marker-{}", std::process::id());
    // Outside: in another cgroup, and in the test's own cgroup.
    other.run("/bin/echo", &[&marker]);
    std::process::Command::new("/bin/echo")
        .arg(&marker)
        .output()
        .unwrap();
    // Inside, afterwards: proves the agent was recording while the others ran.
    watched.run("/bin/echo", &["inside"]);
    let records = agent.wait_for("the inside echo", |r| r.iter().any(|x| x["kind"] == "exit"));
    assert!(
        !records.iter().any(|r| r.to_string().contains(&marker)),
        "{}",
        dump(&records)
    );
    assert_eq!(of_kind(&records, "exec").len(), 1, "{}", dump(&records));
    assert_eq!(argv(of_kind(&records, "exec")[0]), ["/bin/echo", "inside"]);
}

#[test]
fn records_awkward_argv_exactly() {
    let cg = Cgroup::new("argv");
    let agent = Agent::start(&["--identity", &cg.identity_flag("a")]);
    let args = [
        "with space",
        "it's \"quoted\"",
        "line1\nline2",
        "日本語 ✓ é",
        "",
        "tab\there",
        "-",
        "$HOME",
    ];
    cg.run("/bin/true", &args);
    let records = agent.wait_for("the exit of true", |r| {
        r.iter().any(|x| x["kind"] == "exit")
    });
    let exec = of_kind(&records, "exec")[0];
    let mut want = vec!["/bin/true".to_string()];
    want.extend(args.iter().map(|s| s.to_string()));
    assert_eq!(argv(exec), want);
    assert_eq!(exec["argv_truncated"], false);
    // The text is the argv, shell-quoted: bash gives back the same words.
    let text = exec["text"].as_str().unwrap();
    let words = std::process::Command::new("bash")
        .args(["-c", &format!("printf '%s\\0' {text}")])
        .output()
        .unwrap()
        .stdout;
    let words: Vec<String> = words
        .split(|&b| b == 0)
        .filter(|_| true)
        .map(|w| String::from_utf8(w.to_vec()).unwrap())
        .collect();
    assert_eq!(&words[..words.len() - 1], &want[..]);
}

#[test]
fn truncates_huge_argv_at_the_documented_bound_and_says_so() {
    let cg = Cgroup::new("bigargv");
    let agent = Agent::start(&["--identity", &cg.identity_flag("big")]);
    // 300 arguments of 1000 bytes: 300 KB of argv.
    let args: Vec<String> = (0..300)
        .map(|i| format!("{i:04}{}", "x".repeat(996)))
        .collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cg.run("/bin/true", &refs);
    assert!(out.status.success());
    let records = agent.wait_for("the exit of true", |r| {
        r.iter().any(|x| x["kind"] == "exit")
    });
    let exec = of_kind(&records, "exec")[0];
    assert_eq!(exec["argv_truncated"], true);
    let total: usize = "/bin/true".len() + 1 + args.iter().map(|a| a.len() + 1).sum::<usize>();
    assert_eq!(exec["argv_bytes"].as_u64(), Some(total as u64));
    let got = argv(exec);
    // Kept: exactly the first 65536 bytes of the NUL-separated area.
    let kept: usize = got.iter().map(|a| a.len() + 1).sum::<usize>() - 1;
    assert_eq!(kept, 65536, "the bound is 64 KiB (docs/records.md)");
    assert_eq!(got[0], "/bin/true");
    assert_eq!(&got[1..got.len() - 1], &args[..got.len() - 2]);
    let last = got.last().unwrap();
    assert!(
        args[got.len() - 2].starts_with(last.as_str()) && last.len() < 1000,
        "the cut argument is a prefix"
    );
}

#[test]
fn keeps_the_original_argv_when_a_process_rewrites_or_renames_itself() {
    let cg = Cgroup::new("rewrite");
    let agent = Agent::start(&["--identity", &cg.identity_flag("r")]);
    // perl's $0 assignment overwrites the argv memory; prctl(PR_SET_NAME) renames the task.
    // (157 is prctl on x86_64, 15 is PR_SET_NAME.)
    let script = r#"my $n = "renamed"; syscall(157, 15, $n); $0 = "rewritten-name"; open(my $f, "<", "/proc/self/cmdline"); local $/; print <$f>; sleep 0.2"#;
    let out = cg.run("/usr/bin/perl", &["-e", script, "original-arg"]);
    let seen_by_proc = String::from_utf8_lossy(&out.stdout);
    assert!(
        seen_by_proc.starts_with("rewritten-name\0"),
        "the rewrite happened: {seen_by_proc:?}"
    );
    let records = agent.wait_for("the exit of perl", |r| {
        r.iter().any(|x| x["kind"] == "exit")
    });
    let exec = of_kind(&records, "exec")[0];
    assert_eq!(argv(exec), ["/usr/bin/perl", "-e", script, "original-arg"]);
}

#[test]
fn records_a_fileless_exec_and_says_so_in_exe() {
    let cg = Cgroup::new("memfd");
    let agent = Agent::start(&["--identity", &cg.identity_flag("f")]);
    let py = r#"
import os
fd = os.memfd_create("payload", 0)
os.write(fd, open("/bin/echo", "rb").read())
os.execve(fd, ["payload-echo", "from-memory"], {})
"#;
    let out = cg.run("/usr/bin/python3", &["-c", py]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-memory\n");
    let records = agent.wait_for("the exit of the memfd echo", |r| {
        r.iter().any(|x| x["kind"] == "exit")
    });
    let exec = find_exec(&records, &["payload-echo", "from-memory"]);
    assert_eq!(exec["exe"], "/memfd:payload (deleted)", "{exec}");
    let python = find_exec(&records, &["/usr/bin/python3", "-c", py]);
    assert_eq!(exec["parent_exec_id"], python["exec_id"]);
}

#[test]
fn follows_a_shell_that_moves_out_of_its_cgroup_and_says_so() {
    let watched = Cgroup::new("mig-watched");
    let elsewhere = Cgroup::new("mig-elsewhere");
    let agent = Agent::start(&["--identity", &watched.identity_flag("mover")]);
    let script = format!(
        "echo $$ > {}/cgroup.procs; /bin/echo moved; /usr/bin/id -u",
        elsewhere.path.display()
    );
    let out = watched.run("/bin/bash", &["-c", &script]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "moved\n0\n");
    let records = agent.wait_for("the id command", |r| {
        r.iter()
            .any(|x| x["kind"] == "exec" && argv(x) == ["/usr/bin/id", "-u"])
    });
    let bash = find_exec(&records, &["/bin/bash", "-c", &script]);
    let echo = find_exec(&records, &["/bin/echo", "moved"]);
    let id = find_exec(&records, &["/usr/bin/id", "-u"]);
    let elsewhere_path = format!("/{}", elsewhere.path.file_name().unwrap().to_str().unwrap());
    for r in [echo, id] {
        assert_eq!(r["identity"], "mover");
        assert_eq!(r["session"], bash["session"]);
        assert_eq!(r["parent_exec_id"], bash["exec_id"]);
        assert_eq!(r["cgroup"], elsewhere_path);
    }
    let notices: Vec<_> = of_kind(&records, "notice")
        .into_iter()
        .filter(|n| n["reason"] == "cgroup_migration")
        .collect();
    assert_eq!(
        notices.len(),
        1,
        "one notice per session and cgroup:\n{}",
        dump(&records)
    );
    assert_eq!(notices[0]["identity"], "mover");
    assert_eq!(notices[0]["session"], bash["session"]);
    assert_eq!(notices[0]["cgroup"], elsewhere_path);
}

#[test]
fn attributes_each_command_to_its_own_identity() {
    let a = Cgroup::new("ident-a");
    let b = Cgroup::new("ident-b");
    let agent = Agent::start(&[
        "--identity",
        &a.identity_flag("alpha"),
        "--identity",
        &b.identity_flag("beta"),
    ]);
    a.run("/bin/echo", &["from-a"]);
    b.run("/bin/echo", &["from-b"]);
    a.run("/bin/echo", &["again-a"]);
    let records = agent.wait_for("three exits", |r| of_kind(r, "exit").len() == 3);
    assert_eq!(
        find_exec(&records, &["/bin/echo", "from-a"])["identity"],
        "alpha"
    );
    assert_eq!(
        find_exec(&records, &["/bin/echo", "again-a"])["identity"],
        "alpha"
    );
    assert_eq!(
        find_exec(&records, &["/bin/echo", "from-b"])["identity"],
        "beta"
    );
    // Three separate sessions: each echo's parent (the test) is outside both identities.
    let sessions: HashSet<_> = of_kind(&records, "exec")
        .iter()
        .map(|r| r["session"].as_str().unwrap())
        .collect();
    assert_eq!(sessions.len(), 3);
}

#[test]
fn watches_cgroups_created_later_below_a_watched_one() {
    let parent = Cgroup::new("nested");
    let agent = Agent::start(&["--identity", &parent.identity_flag("tree")]);
    let child = parent.child("later");
    let grandchild = child.child("deeper");
    grandchild.run("/bin/echo", &["deep"]);
    let records = agent.wait_for("the deep echo", |r| r.iter().any(|x| x["kind"] == "exit"));
    let exec = find_exec(&records, &["/bin/echo", "deep"]);
    assert_eq!(exec["identity"], "tree");
    assert!(
        exec["cgroup"].as_str().unwrap().ends_with("/later/deeper"),
        "{exec}"
    );
}

#[test]
fn adopts_a_process_that_was_in_the_cgroup_before_the_agent_started() {
    let cg = Cgroup::new("adopt");
    // A shell that is already running inside the cgroup, waiting for a line on stdin.
    let mut shell = cg
        .command("/bin/bash")
        // `; true` keeps bash from exec'ing echo in place: it forks, which is when the agent
        // finds the shell.
        .args(["-c", "read line; /bin/echo after-agent; true"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let agent = Agent::start(&["--identity", &cg.identity_flag("early")]);
    use std::io::Write;
    shell.stdin.take().unwrap().write_all(b"go\n").unwrap();
    shell.wait().unwrap();
    let records = agent.wait_for("the echo", |r| {
        r.iter()
            .any(|x| x["kind"] == "exec" && argv(x) == ["/bin/echo", "after-agent"])
    });
    let bash = records
        .iter()
        .find(|r| r["kind"] == "exec" && r["adopted"] == true)
        .expect("an adopted exec record for the shell");
    assert_eq!(
        argv(bash),
        ["/bin/bash", "-c", "read line; /bin/echo after-agent; true"]
    );
    assert_eq!(bash["parent_exec_id"], "");
    let echo = find_exec(&records, &["/bin/echo", "after-agent"]);
    assert_eq!(echo["parent_exec_id"], bash["exec_id"]);
    assert_eq!(echo["session"], bash["session"]);
}

/// A process that never forks nor execs again (a long-running client the agent was restarted
/// under) is adopted when the agent starts, not at a fork that never comes.
#[test]
fn adopts_at_start_a_process_that_never_forks() {
    let cg = Cgroup::new("adopt-resident");
    let mut resident = cg
        .command("/usr/bin/python3")
        .args(["-c", "import time; time.sleep(60)"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let agent = Agent::start(&["--identity", &cg.identity_flag("resident")]);
    let pid = resident.id();
    // Adopted before the agent said it was ready: the record is there (within a flush).
    let records = agent.wait_for("the resident's adopted exec", |r| {
        r.iter()
            .any(|x| x["kind"] == "exec" && x["pid"] == pid && x["adopted"] == true)
    });
    let exec = records.iter().find(|x| x["pid"] == pid).unwrap();
    assert_eq!(
        argv(exec),
        ["/usr/bin/python3", "-c", "import time; time.sleep(60)"]
    );
    assert_eq!(exec["identity"], "resident");
    assert_eq!(exec["parent_exec_id"], "");
    // It is tracked: its end is recorded as its exit.
    resident.kill().unwrap();
    resident.wait().unwrap();
    let records = agent.wait_for("the resident's exit", |r| {
        r.iter().any(|x| x["kind"] == "exit" && x["pid"] == pid)
    });
    let exit = records
        .iter()
        .find(|x| x["kind"] == "exit" && x["pid"] == pid)
        .unwrap();
    assert_eq!(exit["exec_id"], exec["exec_id"]);
    assert_eq!(exit["signal"], 9, "{exit}");
}

#[test]
fn records_death_by_signal() {
    let cg = Cgroup::new("signal");
    let agent = Agent::start(&["--identity", &cg.identity_flag("sig")]);
    cg.run("/bin/sh", &["-c", "kill -KILL $$"]);
    let records = agent.wait_for("the exit", |r| r.iter().any(|x| x["kind"] == "exit"));
    let exit = of_kind(&records, "exit")[0];
    assert_eq!(exit["signal"], 9, "{exit}");
    assert_eq!(exit["signal_name"], "SIGKILL");
    assert!(exit.get("exit_code").is_none());
}

#[test]
fn resolves_a_unit_identity_to_the_units_cgroup() {
    // systemd is not PID 1 on the test machines, so the unit's cgroup is made by hand where
    // systemd would put it (a directory named after the unit); the agent finds it by name.
    let slice = Cgroup::new("slice");
    let unit_name = format!("recorder-test-{}.service", std::process::id());
    let unit = slice.child(&unit_name);
    let agent = Agent::start(&["--identity", &format!("svc=unit:{unit_name}")]);
    unit.run("/bin/echo", &["from-the-unit"]);
    let records = agent.wait_for("the exit", |r| r.iter().any(|x| x["kind"] == "exit"));
    let exec = find_exec(&records, &["/bin/echo", "from-the-unit"]);
    assert_eq!(exec["identity"], "svc");
    assert!(exec["cgroup"].as_str().unwrap().ends_with(&unit_name));
}
