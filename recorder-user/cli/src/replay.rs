//! `recorder replay SESSION`: a session command by command, with results.
use std::{collections::HashMap, fmt::Write as _, io::Write as _};

use clap::Args;
use serde_json::Value;
use tokio_stream::StreamExt as _;

use crate::client::{Format, TlsArgs, block_on, status};
use recorder_api::proto::v1::{GetSessionRequest, ListSessionsRequest, StoredRecord};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  recorder replay 4f1c2a-17 --collector https://collector.example:7443 \\
      --tls-ca ca.pem --tls-cert alice.pem --tls-key alice-key.pem
  # the stored records, byte for byte what the agent wrote
  recorder replay 4f1c2a-17 --format jsonl > session.jsonl
  # and prove every record against the collector's latest signed checkpoint
  recorder replay 4f1c2a-17 --prove --public-key $(cat checkpoint-key.pub)
  # every session recorded in one Kubernetes pod, oldest first
  recorder replay --namespace agents --pod claude-7d9f5-x2k4q

Each command shows its time, pid and text, then its result: the exit code (or signal) and
duration of a process, joined to its exec by exec_id; the status and result of a SQL statement;
the status of a Kubernetes call. Needs an operator certificate.")]
pub(crate) struct ReplayArgs {
    /// The session id (from `recorder sessions`). Without it, --pod or --namespace names the
    /// sessions to replay.
    #[arg(required_unless_present_any = ["pod", "namespace"])]
    pub session: Option<String>,
    /// Only records of this Kubernetes namespace; without SESSION, every session in it.
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Only records of this Kubernetes pod; without SESSION, every session in it.
    #[arg(long, value_name = "POD")]
    pub pod: Option<String>,
    /// The host, when two hosts have a session of this id.
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Prove each record against the latest signed checkpoint (inclusion proofs); fails if any
    /// record is not in the signed log.
    #[arg(long)]
    pub prove: bool,
    /// With --prove: the checkpoint key the signature must verify with (hex, or a file).
    #[arg(long, value_name = "HEX|FILE", requires = "prove")]
    pub public_key: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

pub(crate) fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    let pinned = super::verify::pinned_key(args.public_key.as_deref())?;
    let host = args.host.clone().unwrap_or_default();
    let namespace = args.namespace.clone().unwrap_or_default();
    let pod = args.pod.clone().unwrap_or_default();
    let (records, proof, verdicts) = block_on(async {
        let mut client = args.tls.connect().await?;
        // The sessions to replay: the one named, or those of the pod/namespace, oldest first.
        let sessions = if let Some(session) = &args.session {
            vec![(session.clone(), host.clone())]
        } else {
            let req = ListSessionsRequest {
                host: host.clone(),
                namespace: namespace.clone(),
                pod: pod.clone(),
                ..ListSessionsRequest::default()
            };
            let mut found = client
                .list_sessions(req)
                .await
                .map_err(status)?
                .into_inner()
                .sessions;
            if found.is_empty() {
                anyhow::bail!("no session recorded in {}", where_(&namespace, &pod));
            }
            found.reverse();
            found.into_iter().map(|s| (s.session, s.host)).collect()
        };
        let mut out: Vec<StoredRecord> = Vec::new();
        let mut verdicts = Vec::new();
        for (session, host) in sessions {
            let req = GetSessionRequest { session, host };
            let mut stream = client
                .get_session(req.clone())
                .await
                .map_err(status)?
                .into_inner();
            while let Some(r) = stream.next().await {
                let r = r.map_err(status)?;
                if in_workload(&r, &namespace, &pod) {
                    out.push(r);
                }
            }
            // The verdict after the records: a refused replay says so as a replay.
            if args.format == Format::Table {
                verdicts.push(verdict(&mut client, req).await?);
            }
        }
        let proof = if args.prove {
            Some(super::prove::prove(&mut client, &out, pinned.as_deref()).await?)
        } else {
            None
        };
        Ok::<_, anyhow::Error>((out, proof, verdicts))
    })??;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Jsonl => {
            for r in &records {
                out.write_all(&r.line)?;
                out.write_all(b"\n")?;
            }
        }
        Format::Table => {
            for line in render(&records) {
                writeln!(out, "{line}")?;
            }
            for line in verdicts {
                writeln!(out, "{line}")?;
            }
        }
    }
    if let Some(summary) = proof {
        // Keep the JSON Lines output exactly the stored lines.
        match args.format {
            Format::Jsonl => eprintln!("{summary}"),
            Format::Table => writeln!(out, "{summary}")?,
        }
    }
    Ok(())
}

/// The session's completeness verdict, as the collector judges it: `complete`, or each gap.
async fn verdict(
    client: &mut recorder_api::proto::v1::collector_client::CollectorClient<
        tonic::transport::Channel,
    >,
    req: GetSessionRequest,
) -> anyhow::Result<String> {
    let session = req.session.clone();
    let reply = client.get_evidence(req).await.map_err(status)?.into_inner();
    let evidence: recorder_session::Evidence = serde_json::from_slice(&reply.json)
        .map_err(|e| anyhow::anyhow!("the collector's evidence is not readable: {e}"))?;
    let v = &evidence.verdict;
    let mut text = format!("session {session}: {}", v.label());
    for g in &v.gaps {
        let _ = write!(
            text,
            "\n  gap at {} (record {}): {}",
            g.time, g.index, g.what
        );
    }
    Ok(text)
}

/// `namespace NS, pod P` for messages.
fn where_(namespace: &str, pod: &str) -> String {
    match (namespace.is_empty(), pod.is_empty()) {
        (false, false) => format!("namespace {namespace}, pod {pod}"),
        (false, true) => format!("namespace {namespace}"),
        _ => format!("pod {pod}"),
    }
}

/// Whether a record ran in the namespace and pod asked for (empty: any). A session's records
/// come from one pod, but a session may also hold host-wide records (a `loss`) without one.
fn in_workload(record: &StoredRecord, namespace: &str, pod: &str) -> bool {
    if namespace.is_empty() && pod.is_empty() {
        return true;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&record.line) else {
        return false;
    };
    let field =
        |want: &str, key: &str| want.is_empty() || v.get(key).and_then(Value::as_str) == Some(want);
    field(namespace, "k8s.namespace.name") && field(pod, "k8s.pod.name")
}

/// The human form: one line per command, with its result.
pub(crate) fn render(records: &[StoredRecord]) -> Vec<String> {
    let parsed: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_slice(&r.line).unwrap_or(Value::Null))
        .collect();
    let mut exits: HashMap<&str, &Value> = HashMap::new();
    for v in &parsed {
        if v["kind"] == "exit"
            && let Some(id) = v["exec_id"].as_str()
        {
            exits.insert(id, v);
        }
    }
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut out = Vec::new();
    for v in &parsed {
        let head = format!(
            "{}  pid {:<7}",
            s(v, "time"),
            v["pid"].as_u64().unwrap_or(0)
        );
        let line = match v["kind"].as_str().unwrap_or("") {
            "exec" => {
                let text = if s(v, "text").is_empty() {
                    v["argv"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default()
                } else {
                    s(v, "text")
                };
                let result = match exits.get(s(v, "exec_id").as_str()) {
                    Some(e) => {
                        let how =
                            match (e.get("exit_code").and_then(Value::as_i64), e.get("signal")) {
                                (Some(code), _) => format!("exit {code}"),
                                (None, Some(sig)) => format!(
                                    "signal {}",
                                    sig.as_str().map_or(sig.to_string(), str::to_string)
                                ),
                                _ => "ended".to_string(),
                            };
                        match e.get("duration_ms").filter(|d| d.is_number()) {
                            // Whole or fractional milliseconds, as the agent wrote them.
                            Some(ms) => format!("{how}, {ms} ms"),
                            None => how,
                        }
                    }
                    None => "no exit recorded".to_string(),
                };
                format!("{head} $ {text}    => {result}")
            }
            "exit" => continue,
            "shell" => format!("{head} shell> {}", s(v, "text")),
            "sql" => format!(
                "{head} sql {}@{}/{}: {}    => {} {}",
                s(v, "db.user"),
                s(v, "db.server"),
                s(v, "db.name"),
                s(v, "text"),
                s(v, "status"),
                v.get("result")
                    .map(|r| r.as_str().map_or(r.to_string(), str::to_string))
                    .unwrap_or_default()
            ),
            "k8s" => match v.get("status").and_then(Value::as_u64) {
                Some(status) => format!("{head} k8s api {}    => {status}", s(v, "text")),
                // A kubectl command (its API calls follow), or a call with no response.
                None => format!("{head} k8s {} {}", s(v, "source"), s(v, "text")),
            },
            "loss" => format!("{head} ! loss: {} records ({})", v["count"], s(v, "reason")),
            "notice" => format!("{head} ! notice {}: {}", s(v, "reason"), s(v, "detail")),
            "approval" => {
                let (who, detail) = (s(v, "approver"), s(v, "detail"));
                let by = if who.is_empty() {
                    String::new()
                } else {
                    format!(" by {who}")
                };
                let why = if detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({detail})")
                };
                format!(
                    "{head} ? approval {}{by}, rule {}: {}{why}",
                    s(v, "state"),
                    s(v, "rule"),
                    s(v, "text")
                )
            }
            other => format!("{head} {other}"),
        };
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(line: &str) -> StoredRecord {
        StoredRecord {
            line: line.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn joins_exits_to_their_exec() {
        let c =
            r#""time":"2026-11-28T10:00:00.000000000Z","host":"h","identity":"a","session":"s""#;
        let recs = [
            rec(&format!(
                r#"{{"kind":"exec",{c},"pid":7,"exec_id":"e1","text":"ls -l","argv":["ls","-l"]}}"#
            )),
            rec(&format!(
                r#"{{"kind":"exec",{c},"pid":8,"exec_id":"e2","text":"sleep 9","argv":["sleep","9"]}}"#
            )),
            rec(&format!(
                r#"{{"kind":"exit",{c},"pid":7,"exec_id":"e1","exit_code":0,"duration_ms":2.9}}"#
            )),
            rec(&format!(
                r#"{{"kind":"exit",{c},"pid":8,"exec_id":"e2","signal":"SIGKILL","duration_ms":50}}"#
            )),
        ];
        assert_eq!(
            render(&recs),
            [
                "2026-11-28T10:00:00.000000000Z  pid 7       $ ls -l    => exit 0, 2.9 ms",
                "2026-11-28T10:00:00.000000000Z  pid 8       $ sleep 9    => signal SIGKILL, 50 ms",
            ]
        );
    }
}
