//! `recorder sessions`: list recorded sessions.
use clap::Args;

use crate::client::{Format, TlsArgs, block_on, status};
use recorder_api::proto::v1::ListSessionsRequest;
// The COMPLETENESS column: `complete`, or how many gaps may concern the session.
use recorder_record::completeness::label as completeness;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  recorder sessions --identity claude --since 2026-11-28T00:00:00Z
  recorder sessions --host web-1 --format jsonl | jq .session
  recorder sessions --namespace agents --pod claude-7d9f5-x2k4q
  # yesterday afternoon's sessions whose record may be incomplete
  recorder sessions --since 2026-12-04T14:00:00Z --until 2026-12-04T15:00:00Z --gaps

COMPLETENESS is `complete`, or how many gaps may concern the session: a loss (ring buffer,
spool), a notice (TLS through an unhooked library, io_uring, a process leaving its cgroup) in it
or on its host while it ran, a process found already running; `recorder replay` lists them.
Needs an operator certificate. Newest activity first. Then: recorder replay SESSION")]
pub(crate) struct SessionsArgs {
    /// Only sessions of this identity.
    #[arg(long)]
    pub identity: Option<String>,
    /// Only sessions on this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only sessions in this Kubernetes namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only sessions in this Kubernetes pod.
    #[arg(long)]
    pub pod: Option<String>,
    /// Only sessions active at or after this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub since: Option<String>,
    /// Only sessions active at or before this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub until: Option<String>,
    /// Only sessions with a failed action (non-zero exit or signal, SQL error, API 4xx/5xx).
    #[arg(long)]
    pub failed: bool,
    /// Only sessions whose record may be incomplete (see the COMPLETENESS column).
    #[arg(long)]
    pub gaps: bool,
    /// At most this many sessions.
    #[arg(long)]
    pub limit: Option<u32>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub tls: TlsArgs,
}

fn time_arg(flag: &str, value: Option<&String>) -> anyhow::Result<i64> {
    match value {
        Some(s) => Ok(recorder_record::time::parse_rfc3339(s).ok_or_else(|| {
            anyhow::anyhow!("{flag} {s:?} is not an RFC 3339 time (e.g. 2026-11-28T10:00:00Z)")
        })? as i64),
        None => Ok(0),
    }
}

pub(crate) fn run(args: &SessionsArgs) -> anyhow::Result<()> {
    let since = time_arg("--since", args.since.as_ref())?;
    let until = time_arg("--until", args.until.as_ref())?;
    let req = ListSessionsRequest {
        identity: args.identity.clone().unwrap_or_default(),
        host: args.host.clone().unwrap_or_default(),
        since_unix_ns: since,
        limit: args.limit.unwrap_or(0),
        namespace: args.namespace.clone().unwrap_or_default(),
        pod: args.pod.clone().unwrap_or_default(),
        until_unix_ns: until,
        failed: args.failed,
        gaps: args.gaps,
    };
    let sessions = block_on(async {
        let mut client = args.tls.connect().await?;
        client
            .list_sessions(req)
            .await
            .map_err(status)
            .map(|r| r.into_inner().sessions)
    })??;
    match args.format {
        Format::Jsonl => {
            for s in sessions {
                let v = serde_json::json!({
                    "session": s.session, "identity": s.identity, "host": s.host,
                    "first_time": s.first_time, "last_time": s.last_time,
                    "commands": s.commands, "records": s.records,
                    "namespace": s.namespace, "pod": s.pod,
                    "failed": s.failed, "gaps": s.gaps, "completeness": completeness(s.gaps),
                });
                println!("{v}");
            }
        }
        Format::Table => {
            // The pod column only when some session ran in one.
            let pods = sessions.iter().any(|s| !s.pod.is_empty());
            let pod_of = |namespace: &str, pod: &str| {
                if pods && !pod.is_empty() {
                    format!(" {:<40}", format!("{namespace}/{pod}"))
                } else if pods {
                    format!(" {:<40}", "-")
                } else {
                    String::new()
                }
            };
            println!(
                "{:<28} {:<16} {:<16}{} {:<30} {:<30} {:>8} {:>6} {:<12}",
                "SESSION",
                "IDENTITY",
                "HOST",
                if pods {
                    format!(" {:<40}", "NAMESPACE/POD")
                } else {
                    String::new()
                },
                "FIRST",
                "LAST",
                "COMMANDS",
                "ERRORS",
                "COMPLETENESS"
            );
            for s in sessions {
                println!(
                    "{:<28} {:<16} {:<16}{} {:<30} {:<30} {:>8} {:>6} {:<12}",
                    s.session,
                    s.identity,
                    s.host,
                    pod_of(&s.namespace, &s.pod),
                    s.first_time,
                    s.last_time,
                    s.commands,
                    s.failed,
                    completeness(s.gaps)
                );
            }
        }
    }
    Ok(())
}
