//! End-to-end: lines typed into an interactive bash (through a real pseudo-terminal) become
//! `shell` records, builtins and redirections included, attributed to the bash process.
use std::{path::Path, process::Command};

use recorder_tests::{Agent, Cgroup, dump, of_kind, pty::Pty};
use serde_json::Value;

const PROMPT: &str = "recorder-test$ ";

/// The lines typed: a builtin that changes directory (into this test's own `dir`: the tests run
/// side by side), an export, a redirection, and `exit`.
fn lines(dir: &Path) -> [String; 4] {
    [
        format!("cd {}", dir.display()),
        "export X=1".into(),
        "echo hi > f".into(),
        "exit".into(),
    ]
}

/// Runs an interactive bash in `cg`, started in `start`, typing `lines(dir)` at its prompts.
/// Returns its pid.
fn interactive_bash(cg: &Cgroup, start: &Path, dir: &Path) -> u32 {
    let mut cmd: Command = cg.command("/bin/bash");
    cmd.args(["--norc", "--noprofile", "-i"])
        .current_dir(start)
        .env_clear()
        .env("PS1", PROMPT)
        .env("TERM", "dumb")
        .env("HISTFILE", "/dev/null")
        .env("PATH", "/usr/bin:/bin");
    let mut bash = Pty::spawn(cmd);
    let pid = bash.pid();
    for (i, line) in lines(dir).iter().enumerate() {
        bash.wait_for(PROMPT, i + 1);
        bash.type_line(line);
    }
    let status = bash.wait();
    assert!(
        status.success(),
        "bash: {status}; terminal:\n{}",
        bash.output()
    );
    pid
}

#[test]
fn lines_typed_into_an_interactive_bash_are_recorded_exactly() {
    let cg = Cgroup::new("shell");
    let agent = Agent::start(&["--identity", &cg.identity_flag("shell-agent")]);
    let (start, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pid = interactive_bash(&cg, start.path(), dir.path());
    // What the lines did, so the test knows bash really ran them.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("f")).unwrap(),
        "hi\n"
    );

    let records = agent.wait_for("bash's exit", |r| {
        r.iter().any(|x| x["kind"] == "exit" && x["pid"] == pid)
    });
    let exec = records
        .iter()
        .find(|r| r["kind"] == "exec" && r["pid"] == pid)
        .unwrap_or_else(|| panic!("no exec record of bash; records:\n{}", dump(&records)));
    let shell: Vec<&Value> = of_kind(&records, "shell");
    let texts: Vec<&str> = shell.iter().map(|r| r["text"].as_str().unwrap()).collect();
    assert_eq!(texts, lines(dir.path()), "{}", dump(&records));
    for r in &shell {
        assert_eq!(r["identity"], "shell-agent");
        assert_eq!(r["pid"], pid);
        assert_eq!(r["exec_id"], exec["exec_id"], "{r}");
        assert_eq!(r["session"], exec["session"], "{r}");
    }
    // In the order typed, each before bash's exit.
    let position = |pred: &dyn Fn(&Value) -> bool| records.iter().position(pred).unwrap();
    let exit_at = position(&|x| x["kind"] == "exit" && x["pid"] == pid);
    let last_line_at = position(&|x| x["kind"] == "shell" && x["text"] == "exit");
    assert!(last_line_at < exit_at, "{}", dump(&records));
}

#[test]
fn an_unwatched_interactive_bash_is_not_recorded() {
    let watched = Cgroup::new("shell-watched");
    let unwatched = Cgroup::new("shell-unwatched");
    let agent = Agent::start(&["--identity", &watched.identity_flag("shell-agent")]);
    let (start, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pid = interactive_bash(&unwatched, start.path(), dir.path());
    // A positive control after it: a watched process, recorded, shows the agent was reading.
    let out = watched.run("/bin/true", &[]);
    assert!(out.status.success());
    let records = agent.wait_for("the watched control process", |r| {
        r.iter()
            .any(|x| x["kind"] == "exit" && x["identity"] == "shell-agent")
    });
    assert!(
        records
            .iter()
            .all(|r| r["pid"] != pid && r["kind"] != "shell"),
        "{}",
        dump(&records)
    );
}
