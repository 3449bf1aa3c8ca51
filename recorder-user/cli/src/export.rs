//! `recorder export`: stored records by log position, as JSON Lines (for a SIEM or an audit).
use std::io::Write as _;

use clap::Args;
use tokio_stream::StreamExt as _;

use crate::client::{TlsArgs, block_on, status};
use recorder_api::proto::v1::ExportRequest;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  recorder export > all.jsonl
  recorder export --from 120000 --limit 1000 --with-position

Prints the stored record lines exactly as the agents wrote them. With --with-position each line
is wrapped: {\"index\": N, \"host\": ..., \"boot\": ..., \"sequence\": ..., \"record\": {...}}.
Needs an operator certificate.")]
pub(crate) struct ExportArgs {
    /// First log index.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// At most this many records (0 = to the end).
    #[arg(long, default_value_t = 0)]
    pub limit: u64,
    /// Include the log position and stream of each record.
    #[arg(long)]
    pub with_position: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

pub(crate) fn run(args: &ExportArgs) -> anyhow::Result<()> {
    block_on(async {
        let mut client = args.tls.connect().await?;
        let mut stream = client
            .export(ExportRequest {
                from_index: args.from,
                limit: args.limit,
            })
            .await
            .map_err(status)?
            .into_inner();
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        while let Some(r) = stream.next().await {
            let r = r.map_err(status)?;
            if args.with_position {
                let record: serde_json::Value = serde_json::from_slice(&r.line).unwrap_or_default();
                let v = serde_json::json!({"index": r.index, "host": r.host, "boot": r.boot, "sequence": r.sequence, "record": record});
                writeln!(out, "{v}")?;
            } else {
                out.write_all(&r.line)?;
                out.write_all(b"\n")?;
            }
        }
        out.flush()?;
        Ok::<_, anyhow::Error>(())
    })?
}
