//! `recorder watch`: live records and alerts.
use std::io::Write as _;

use clap::Args;
use tokio_stream::StreamExt as _;

use crate::client::{TlsArgs, block_on, status};
use recorder_api::proto::v1::{WatchRequest, watch_event::Event};
use recorder_record::Kind;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  recorder watch --identity claude
  recorder watch --kind sql --kind k8s
  recorder watch --alerts-only

Prints each record as it is stored (its JSON line) and each alert as a JSON object
{\"alert\": {rule, severity, description, time, detail, records}, \"record\": {...}}. Runs until interrupted.
Needs an operator certificate.")]
pub(crate) struct WatchArgs {
    /// Only this identity (repeatable).
    #[arg(long)]
    pub identity: Vec<String>,
    /// Only this kind of record: exec, exit, shell, sql, k8s, loss, notice (repeatable).
    #[arg(long)]
    pub kind: Vec<Kind>,
    /// Only alerts, no records.
    #[arg(long)]
    pub alerts_only: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

pub(crate) fn run(args: &WatchArgs) -> anyhow::Result<()> {
    let req = WatchRequest {
        identities: args.identity.clone(),
        kinds: args.kind.iter().map(|k| k.as_str().to_string()).collect(),
    };
    block_on(async {
        let mut client = args.tls.connect().await?;
        let mut stream = client.watch(req).await.map_err(status)?.into_inner();
        let stdout = std::io::stdout();
        while let Some(ev) = stream.next().await {
            let ev = ev.map_err(status)?;
            let mut out = stdout.lock();
            match ev.event {
                Some(Event::Record(r)) if !args.alerts_only => {
                    out.write_all(&r.line)?;
                    out.write_all(b"\n")?;
                }
                Some(Event::Alert(a)) => {
                    let record: serde_json::Value = a
                        .record
                        .as_ref()
                        .and_then(|r| serde_json::from_slice(&r.line).ok())
                        .unwrap_or_default();
                    let v = serde_json::json!({
                        "alert": {"rule": a.rule, "severity": a.severity, "description": a.description, "time": a.time, "detail": a.detail, "records": a.records},
                        "record": record,
                    });
                    writeln!(out, "{v}")?;
                }
                Some(Event::Lagged(n)) => {
                    eprintln!("recorder: watch fell behind; {n} events skipped");
                }
                _ => {}
            }
            out.flush()?;
        }
        Ok::<_, anyhow::Error>(())
    })?
}
