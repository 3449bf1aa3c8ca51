//! `recorder evidence SESSION -o FILE`: one self-contained file an auditor verifies offline
//! (in a browser, or with `recorder verify --bundle`), and that check itself.
use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use clap::Args;
use recorder_api::proto::v1::GetSessionRequest;
use recorder_record::hex;
use recorder_session::{Evidence, check};

use crate::client::{TlsArgs, block_on, status};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  recorder evidence 4f1c2a-17 -o session-4f1c2a-17.html --collector https://collector.example:7443 \\
      --tls-ca ca.pem --tls-cert alice.pem --tls-key alice-key.pem
  # the auditor, offline: open the file in a browser, or
  recorder verify --bundle session-4f1c2a-17.html --public-key $(cat checkpoint-key.pub)

The file is one HTML page: the session's records exactly as stored, each with its inclusion
proof against the collector's latest signed checkpoint, that checkpoint and the collector's
public key, and a viewer. Opened in a browser (no network needed) it checks every proof and
the signature with WebCrypto, then shows the session as the web console does. Records newer
than the latest checkpoint are waited for (up to --wait seconds) until a checkpoint covers them.
Needs an operator certificate.")]
pub(crate) struct EvidenceArgs {
    /// The session id (from `recorder sessions`).
    pub session: String,
    /// The host, when two hosts have a session of this id.
    #[arg(long)]
    pub host: Option<String>,
    /// Where to write the bundle (an HTML file).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// How long to wait for a signed checkpoint that covers every record of the session.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub wait: u64,
    #[command(flatten)]
    pub tls: TlsArgs,
}

pub(crate) fn run(args: &EvidenceArgs) -> anyhow::Result<()> {
    let evidence = block_on(async {
        let mut client = args.tls.connect().await?;
        let started = std::time::Instant::now();
        let mut said = false;
        loop {
            let req = GetSessionRequest {
                session: args.session.clone(),
                host: args.host.clone().unwrap_or_default(),
            };
            let reply = client.get_evidence(req).await.map_err(status)?.into_inner();
            let evidence: Evidence = serde_json::from_slice(&reply.json)
                .context("the collector's evidence is not readable")?;
            let pending = evidence
                .records
                .iter()
                .chain(&evidence.context)
                .filter(|r| r.proof.is_none())
                .count();
            if pending == 0 {
                return Ok::<_, anyhow::Error>(evidence);
            }
            if started.elapsed() >= Duration::from_secs(args.wait) {
                bail!(
                    "{pending} records of the session are not covered by a signed checkpoint yet \
                     after {} s; try again later, or with a longer --wait",
                    args.wait
                );
            }
            if !said {
                eprintln!(
                    "waiting for a signed checkpoint that covers {pending} newer records of the session…"
                );
                said = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })??;
    let checked = check(&evidence);
    if !checked.ok() {
        for p in &checked.problems {
            eprintln!("{p}");
        }
        bail!(
            "the collector's evidence for session {} does not check ({} problems); nothing written",
            args.session,
            checked.problems.len()
        );
    }
    let html = recorder_console::bundle::write(&evidence).map_err(anyhow::Error::msg)?;
    std::fs::write(&args.output, &html)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let cp = evidence.checkpoint.as_ref().map_or(0, |c| c.tree_size);
    println!(
        "wrote {}: session {} on {} ({} records, {} host-wide), {} KiB; every record proven \
         against the checkpoint of tree size {cp}; {}",
        args.output.display(),
        evidence.session.session,
        evidence.session.host,
        evidence.records.len(),
        evidence.context.len(),
        html.len().div_ceil(1024),
        checked.verdict.label(),
    );
    Ok(())
}

/// `recorder verify --bundle FILE`: the bundle's checks, from the command line.
pub(crate) fn verify_bundle(path: &std::path::Path, pinned: Option<&[u8]>) -> anyhow::Result<()> {
    let html =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let evidence = recorder_console::bundle::read(&html)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut checked = check(&evidence);
    if let Some(key) = pinned
        && hex::decode(&evidence.public_key).as_deref() != Some(key)
    {
        checked.problems.insert(
            0,
            recorder_session::Problem {
                index: None,
                what: format!(
                    "the bundle is signed with key {}, not the expected {}",
                    evidence.public_key,
                    hex::encode(key)
                ),
            },
        );
    }
    let s = &evidence.session;
    if checked.ok() {
        println!(
            "verified: {} — session {} of {} on {}: {} records and {} host-wide records, each \
             included in the checkpoint of tree size {} signed {} by key {}; {}",
            path.display(),
            s.session,
            s.identity,
            s.host,
            evidence.records.len(),
            evidence.context.len(),
            evidence.checkpoint.as_ref().map_or(0, |c| c.tree_size),
            evidence.checkpoint.as_ref().map_or("", |c| c.time.as_str()),
            evidence.public_key,
            checked.verdict.label(),
        );
        if pinned.is_none() {
            println!(
                "note: compare the key with the collector's published checkpoint-key.pub \
                 (or pass --public-key): a bundle carries the key it was signed with"
            );
        }
        for g in &checked.verdict.gaps {
            println!("gap: record {} at {}: {}", g.index, g.time, g.what);
        }
        return Ok(());
    }
    for p in &checked.problems {
        println!("TAMPERED: {p}");
    }
    if checked.pending > 0 {
        println!(
            "{} records are not covered by the bundle's checkpoint",
            checked.pending
        );
    }
    bail!(
        "{}: the evidence does not verify ({} problems)",
        path.display(),
        checked.problems.len() + usize::from(checked.pending > 0)
    )
}
