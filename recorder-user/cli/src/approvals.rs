//! `recorder approvals`, `recorder approve ID`, `recorder deny ID`: the actions agents hold until
//! an operator decides. A collector keeps the requests asked of it, in memory: with several
//! collectors named (a group), the list asks each, and a decision goes to the one that holds it.
use clap::Args;
use tonic::{Code, Status};

use crate::client::{TlsArgs, block_on, status};
use recorder_api::{
    proto::v1::{ApprovalRequest, DecideApprovalRequest, ListApprovalsRequest},
    status::code_name,
};
use recorder_record::time::{now_unix_ns, rfc3339_nanos};

const ABOUT_HOLDS: &str = "\
An agent holds an action when one of its approval rules matches: the process is stopped
(SIGSTOP) before its command's first instruction, or before its SQL statement or Kubernetes API
call leaves over TLS. It asks the collector and waits; `recorder approve` lets the action go on,
`recorder deny` stops it. If nobody decides before the agent's timeout, the agent denies it by
itself. The approver recorded is the name of the operator certificate. Needs an operator
certificate.

A collector keeps the requests asked of it, in memory. With a group of collectors, name every
one (--collector https://c1:7443,https://c2:7443): `recorder approvals` lists them all, and
approve/deny go to the collector that holds the request.";

#[derive(Debug, Args)]
#[command(after_help = format!("\
Examples:
  recorder approvals
  recorder approvals --json | jq -r .id

Columns: ID (give it to approve/deny), AGE (since the process was held), HOST, IDENTITY, PID,
ACTION (exec, sql, k8s), RULE (the rule that asked), TEXT (the command line, statement or call;
control characters escaped, long text cut: --json has it whole). Oldest first.

{ABOUT_HOLDS}"))]
pub(crate) struct ApprovalsArgs {
    /// One JSON object per line (every field, times in RFC 3339) instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Debug, Args)]
#[command(after_help = format!("\
Examples:
  recorder approve web-1/5f3a9c/17 --reason \"planned migration, ticket OPS-812\"
  recorder deny web-1/5f3a9c/18 --reason \"not in prod\"

Prints `approved ID (by NAME)` or `denied ID (by NAME)`. Fails when no collector holds the
request (never asked, or forgotten an hour after its decision), when it was already decided
(saying by whom), or when it expired (the agent denied it by itself at its timeout).

{ABOUT_HOLDS}"))]
pub(crate) struct DecideArgs {
    /// The request's id (the ID column of `recorder approvals`).
    pub id: String,
    /// Why: kept with the decision (the agent's approval record, the collector's log).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

pub(crate) fn list(args: &ApprovalsArgs) -> anyhow::Result<()> {
    let found = block_on(async {
        let mut found: Vec<(String, ApprovalRequest)> = Vec::new();
        let mut failures = Vec::new();
        for tls in args.tls.client_tls() {
            let reply = async {
                let channel = tls.connect().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut client =
                    recorder_api::proto::v1::collector_client::CollectorClient::new(channel)
                        .max_decoding_message_size(64 * 1024 * 1024);
                client
                    .list_approvals(ListApprovalsRequest {})
                    .await
                    .map_err(status)
            };
            match reply.await {
                Ok(r) => found.extend(
                    r.into_inner()
                        .pending
                        .into_iter()
                        .map(|p| (tls.url.clone(), p)),
                ),
                Err(e) => failures.push(format!("{}: {e:#}", tls.url)),
            }
        }
        match failures.len() {
            0 => Ok(found),
            n if n == args.tls.collector.len() => {
                anyhow::bail!("no collector answered: {}", failures.join("; "))
            }
            // Some of a group: show what the others hold, and say what is missing.
            _ => {
                for f in &failures {
                    eprintln!("recorder: warning: {f}");
                }
                Ok(found)
            }
        }
    })??;
    let now = now_unix_ns() as i64;
    if args.json {
        for (collector, r) in &found {
            let v = serde_json::json!({
                "id": r.id, "host": r.host, "identity": r.identity, "session": r.session,
                "pid": r.pid, "action": r.action, "text": r.text, "rule": r.rule,
                "held_at": rfc3339_nanos(r.held_unix_ns.into()),
                "deadline": rfc3339_nanos(r.deadline_unix_ns.into()),
                "collector": collector,
            });
            println!("{v}");
        }
        return Ok(());
    }
    if found.is_empty() {
        eprintln!("no action is waiting for approval");
        return Ok(());
    }
    let several = args.tls.collector.len() > 1;
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|(collector, r)| {
            let mut row = vec![
                plain(&r.id, 80),
                age(now - r.held_unix_ns),
                plain(&r.host, 40),
                plain(&r.identity, 30),
                r.pid.to_string(),
                plain(&r.action, 5),
                plain(&r.rule, 30),
            ];
            if several {
                row.push(plain(collector, 60));
            }
            row.push(plain(&r.text, 100));
            row
        })
        .collect();
    let mut header = vec!["ID", "AGE", "HOST", "IDENTITY", "PID", "ACTION", "RULE"];
    if several {
        header.push("COLLECTOR");
    }
    header.push("TEXT");
    print_table(&header, &rows);
    Ok(())
}

pub(crate) fn approve(args: &DecideArgs) -> anyhow::Result<()> {
    decide(args, true)
}

pub(crate) fn deny(args: &DecideArgs) -> anyhow::Result<()> {
    decide(args, false)
}

fn decide(args: &DecideArgs, approve: bool) -> anyhow::Result<()> {
    let req = DecideApprovalRequest {
        id: args.id.clone(),
        approve,
        reason: args.reason.clone().unwrap_or_default(),
    };
    let decision = block_on(async {
        let mut failures = Vec::new();
        let mut not_found = None;
        // The collector that holds the request answers; the others do not know it.
        for tls in args.tls.client_tls() {
            let channel = match tls.connect().await {
                Ok(c) => c,
                Err(e) => {
                    failures.push(format!("{}: {e}", tls.url));
                    continue;
                }
            };
            let mut client =
                recorder_api::proto::v1::collector_client::CollectorClient::new(channel);
            match client.decide_approval(req.clone()).await {
                Ok(d) => return Ok(d.into_inner()),
                Err(e) if e.code() == Code::NotFound => not_found = Some(e),
                Err(e) => return Err(refusal(e)),
            }
        }
        if let Some(e) = not_found {
            let mut msg = e.message().to_string();
            if !failures.is_empty() {
                msg = format!("{msg}; not asked: {}", failures.join("; "));
            }
            anyhow::bail!(msg)
        }
        anyhow::bail!("no collector answered: {}", failures.join("; "))
    })??;
    println!(
        "{} {} (by {})",
        decision.state,
        plain(&decision.id, usize::MAX),
        plain(&decision.approver, usize::MAX)
    );
    Ok(())
}

/// The collector's sentence when it says why not (already decided, expired); else the usual.
fn refusal(e: Status) -> anyhow::Error {
    match e.code() {
        Code::FailedPrecondition | Code::InvalidArgument => {
            anyhow::anyhow!("{} ({})", e.message(), code_name(e.code()))
        }
        _ => status(e),
    }
}

/// Text an agent sent, made safe for a terminal (control characters escaped) and cut to `max`
/// characters.
fn plain(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `42s`, `3m05s`, `2h04m`.
fn age(ns: i64) -> String {
    let s = ns.max(0) / 1_000_000_000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Columns as wide as their widest cell; the last one as it is.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == widths.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out
    };
    println!("{}", line(&mut header.iter().copied()));
    for r in rows {
        println!("{}", line(&mut r.iter().map(String::as_str)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_text_cannot_drive_the_terminal() {
        assert_eq!(plain("rm -rf /\n\x1b[2J", 100), "rm -rf /\\n\\u{1b}[2J");
        assert_eq!(plain("abcdef", 3), "abc…");
    }

    #[test]
    fn ages_are_short() {
        let s = 1_000_000_000;
        assert_eq!(age(42 * s), "42s");
        assert_eq!(age(185 * s), "3m05s");
        assert_eq!(age(7440 * s), "2h04m");
    }
}
