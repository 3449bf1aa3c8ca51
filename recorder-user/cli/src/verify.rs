//! `recorder verify`: check the log's integrity, offline on a data directory or online through
//! a collector.
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;

use crate::client::{block_on, status};
use recorder_api::{
    proto::v1::{ConsistencyProofRequest, GetCheckpointRequest, VerifyRequest},
    tls::ClientTls,
};
use recorder_record::hex;
use recorder_store::{
    integrity::{Hash, checkpoint::Checkpoint, merkle},
    scan,
};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  # offline, on a data directory (or a copy of one); pin the key an auditor recorded earlier
  recorder verify --data /var/lib/recorder --public-key 3b6a27bc…
  # directly on a group's PostgreSQL database (read only; ingest goes on meanwhile)
  recorder verify --store 'postgres://auditor@db.example/recorder' --public-key 3b6a27bc…
  # online, through the collector (operator certificate)
  recorder verify --collector https://collector.example:7443 --tls-ca ca.pem --tls-cert alice.pem --tls-key alice-key.pem
  # ...and prove that today's log extends the one seen last time (kept in the file)
  recorder verify --collector ... --public-key KEY --checkpoint-file audit/last-checkpoint.json
  # an archive of pruned segments (S3 reads AWS_* from the environment)
  recorder verify --archive s3://audit-bucket/recorder --public-key 3b6a27bc…
  recorder verify --archive file:///srv/archive --public-key 3b6a27bc…
  # a session's evidence bundle (recorder evidence), offline
  recorder verify --bundle session-4f1c2a-17.html --public-key 3b6a27bc…

Checks every record's hash, its log position, the hash chain of every (host, boot) stream, the
Merkle root of every signed checkpoint and every signature. Prints each problem with its place
(segment file, record number, byte offset, log index, host stream, sequence) and exits 1 if
there is any; exits 0 and prints a summary if the log is intact. Segments deleted by retention
are listed with their log indexes and the rule that let them go; their records' hashes, kept,
still make every checkpoint's root, and the signed ledger of deletions is checked. With
--archive, every archived segment is checked against its signed deletion entry and placed in a
signed checkpoint's tree.")]
pub(crate) struct VerifyArgs {
    /// The collector's data directory (offline check).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["collector", "store"])]
    pub data: Option<PathBuf>,
    /// An archive of pruned segments (`s3://bucket/prefix`, `gs://…`, `az://…`,
    /// `file:///path`), checked on its own.
    #[arg(long, value_name = "URL", conflicts_with_all = ["collector", "store", "data"])]
    pub archive: Option<String>,
    /// With --archive: an object store option, KEY=VALUE, as in the collector's
    /// `[retention.archive]` options (for S3: `endpoint`, `region`, `aws_allow_http`…).
    #[arg(long, value_name = "KEY=VALUE", requires = "archive")]
    pub archive_option: Vec<String>,
    /// An evidence bundle (`recorder evidence`), checked on its own: every record's proof, the
    /// checkpoint's signature (pin the collector's key with --public-key).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["collector", "store", "data", "archive"])]
    pub bundle: Option<PathBuf>,
    /// A PostgreSQL log, checked directly in one snapshot (read only): `postgres://…`.
    #[arg(long, value_name = "URL", conflicts_with = "collector")]
    pub store: Option<String>,
    /// With --store: the CA certificate (PEM) of the database's server certificate (default:
    /// the system's CAs).
    #[arg(long, value_name = "FILE", requires = "store")]
    pub store_ca: Option<PathBuf>,
    /// Expected checkpoint public key (hex, or a file holding it); default: the data
    /// directory's checkpoint-key.pub, or the key the collector reports.
    #[arg(long, value_name = "HEX|FILE")]
    pub public_key: Option<String>,
    /// The collector (online check).
    #[arg(long, value_name = "URL", env = "RECORDER_COLLECTOR", requires_all = ["tls_ca", "tls_cert", "tls_key"])]
    pub collector: Option<String>,
    #[arg(long, value_name = "FILE", env = "RECORDER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    #[arg(long, value_name = "FILE", env = "RECORDER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE", env = "RECORDER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Online: a checkpoint kept from an earlier run. The collector must prove (RFC 6962
    /// consistency proof) that today's signed log extends it; the file is then updated to the
    /// latest checkpoint.
    #[arg(long, value_name = "FILE", requires = "collector")]
    pub checkpoint_file: Option<PathBuf>,
}

pub(crate) fn pinned_key(arg: Option<&str>) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(s) = arg else { return Ok(None) };
    let text = if std::path::Path::new(s).is_file() {
        std::fs::read_to_string(s).with_context(|| format!("reading {s}"))?
    } else {
        s.to_string()
    };
    let key = hex::decode(&text)
        .filter(|k| k.len() == 32)
        .ok_or_else(|| anyhow::anyhow!("--public-key: not a 32-byte hex Ed25519 key"))?;
    Ok(Some(key))
}

pub(crate) fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    let pinned = pinned_key(args.public_key.as_deref())?;
    if let Some(dir) = &args.data {
        return offline(dir, pinned.as_deref());
    }
    if let Some(url) = &args.store {
        return offline_postgres(url, args.store_ca.as_deref(), pinned);
    }
    if let Some(path) = &args.bundle {
        return crate::evidence::verify_bundle(path, pinned.as_deref());
    }
    if let Some(url) = &args.archive {
        return crate::archive::verify(url, &args.archive_option, pinned.as_deref());
    }
    online(args, pinned.as_deref())
}

/// Through the collector, with an operator certificate.
fn online(args: &VerifyArgs, pinned: Option<&[u8]>) -> anyhow::Result<()> {
    let (Some(url), Some(ca), Some(cert), Some(key)) =
        (&args.collector, &args.tls_ca, &args.tls_cert, &args.tls_key)
    else {
        bail!(
            "give --data DIR (offline) or --collector URL with --tls-ca, --tls-cert, --tls-key (online)"
        );
    };
    let tls = ClientTls {
        url: url.clone(),
        ca: ca.clone(),
        cert: cert.clone(),
        key: key.clone(),
    };
    let kept: Option<Checkpoint> = match &args.checkpoint_file {
        Some(path) if path.exists() => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a checkpoint", path.display()))?,
            )
        }
        _ => None,
    };
    let (resp, cp, consistency) = block_on(async {
        let channel = tls.connect().await?;
        let mut client = recorder_api::proto::v1::collector_client::CollectorClient::new(channel);
        let resp = client
            .verify(VerifyRequest {})
            .await
            .map_err(status)?
            .into_inner();
        let cp = match client.get_checkpoint(GetCheckpointRequest {}).await {
            Ok(r) => Some(r.into_inner()),
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) => return Err(status(s)),
        };
        let consistency = match (&kept, &cp) {
            (Some(old), Some(new)) if old.tree_size <= new.tree_size => Some(
                client
                    .get_consistency_proof(ConsistencyProofRequest {
                        old_size: old.tree_size,
                        new_size: new.tree_size,
                    })
                    .await
                    .map_err(status)?
                    .into_inner()
                    .path,
            ),
            _ => None,
        };
        Ok::<_, anyhow::Error>((resp, cp, consistency))
    })??;
    for p in &resp.pruned {
        println!("pruned: {p}");
    }
    let mut problems = resp.problems;
    if let Some(cp) = &cp {
        let key = pinned.map_or_else(|| cp.public_key.clone(), <[u8]>::to_vec);
        let local = Checkpoint {
            tree_size: cp.tree_size,
            root: hex::encode(&cp.root),
            time: cp.time.clone(),
            signature: hex::encode(&cp.signature),
        };
        if !local.verify(&key) {
            problems.push(format!(
                "latest checkpoint (tree size {}): signature does not verify with key {}",
                cp.tree_size,
                hex::encode(&key)
            ));
        }
        if pinned.is_some_and(|p| p != cp.public_key.as_slice()) {
            problems.push(format!(
                "the collector signs with key {}, not the pinned key",
                hex::encode(&cp.public_key)
            ));
        }
        if let Some(old) = &kept {
            check_extends(old, cp, &key, consistency.as_deref(), &mut problems);
        }
        if let Some(path) = &args.checkpoint_file
            && problems.is_empty()
        {
            let json = serde_json::to_string(&local).context("encoding the checkpoint")?;
            std::fs::write(path, format!("{json}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    report(
        &problems,
        resp.records,
        resp.checkpoints,
        cp.map(|c| (c.tree_size, hex::encode(&c.root))),
    )
}

/// Today's signed log must extend the checkpoint kept earlier: same key, signature valid, and a
/// valid consistency proof from its tree to today's.
fn check_extends(
    old: &Checkpoint,
    new: &recorder_api::proto::v1::Checkpoint,
    key: &[u8],
    proof: Option<&[Vec<u8>]>,
    problems: &mut Vec<String>,
) {
    let place = format!(
        "kept checkpoint (tree size {}, {})",
        old.tree_size, old.time
    );
    if !old.verify(key) {
        problems.push(format!(
            "{place}: its signature does not verify with key {}",
            hex::encode(key)
        ));
        return;
    }
    if old.tree_size > new.tree_size {
        problems.push(format!(
            "{place}: the collector's latest checkpoint has only {} records: records were removed",
            new.tree_size
        ));
        return;
    }
    let hashes: Option<Vec<Hash>> =
        proof.and_then(|p| p.iter().map(|h| h.as_slice().try_into().ok()).collect());
    let (Some(old_root), Ok(new_root), Some(path)) = (
        old.root_hash(),
        <Hash>::try_from(new.root.as_slice()),
        hashes,
    ) else {
        problems.push(format!(
            "{place}: no usable consistency proof from the collector"
        ));
        return;
    };
    if !merkle::verify_consistency(old.tree_size, new.tree_size, &old_root, &new_root, &path) {
        problems.push(format!(
            "{place}: the log signed now (tree size {}) does not extend it: records at or below log index {} were changed, removed or reordered",
            new.tree_size,
            old.tree_size.saturating_sub(1)
        ));
    }
}

fn offline(dir: &std::path::Path, pinned: Option<&[u8]>) -> anyhow::Result<()> {
    let scan = scan::scan(dir, pinned, |_| {})?;
    let mut problems: Vec<String> = scan
        .problems
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    if let Some((seg, offset)) = scan.torn_tail {
        problems.push(format!(
            "{}/{} byte offset {offset}: incomplete record at the end (a crash mid-write leaves this; the collector removes it on start)",
            scan::SEGMENT_DIR,
            recorder_store::segment::segment_name(seg)
        ));
    }
    let latest = scan
        .checkpoints
        .last()
        .map(|c| (c.tree_size, c.root.clone()));
    for p in &scan.pruned {
        println!("pruned: {}", p.describe());
    }
    report(
        &problems,
        scan.records,
        scan.checkpoints.len() as u64,
        latest,
    )?;
    if scan.pruned_records > 0 {
        println!(
            "of which {} pruned by retention: their hashes, kept, were checked in the tree",
            scan.pruned_records
        );
    }
    Ok(())
}

fn offline_postgres(
    url: &str,
    ca: Option<&std::path::Path>,
    pinned: Option<Vec<u8>>,
) -> anyhow::Result<()> {
    use recorder_store_postgres::{PgLog, is_postgres_url, redact};
    if !is_postgres_url(url) {
        bail!("--store {url:?}: give a postgres:// (or postgresql://) connection string");
    }
    let (v, latest, was_pinned) = block_on(async {
        let (log, was_pinned) = PgLog::open_to_read(url, ca, pinned)
            .await
            .with_context(|| redact(url))?;
        let v = log.verify().await.with_context(|| redact(url))?;
        let latest = log.latest_checkpoint().await?;
        Ok::<_, anyhow::Error>((v, latest, was_pinned))
    })??;
    if !was_pinned {
        eprintln!(
            "recorder: checkpoints checked against the key the database names; pin the key with --public-key to rule out a changed key"
        );
    }
    for p in &v.pruned {
        println!("pruned: {}", p.describe());
    }
    if v.waiting > 0 {
        eprintln!(
            "recorder: {} records are stored but not yet placed in the log by a sequencer (not checked)",
            v.waiting
        );
    }
    report(
        &v.problems,
        v.records,
        v.checkpoints,
        latest.map(|c| (c.tree_size, c.root)),
    )
}

fn report(
    problems: &[String],
    records: u64,
    checkpoints: u64,
    latest: Option<(u64, String)>,
) -> anyhow::Result<()> {
    for p in problems {
        println!("TAMPERED: {p}");
    }
    if !problems.is_empty() {
        bail!("the log fails verification: {} problem(s)", problems.len());
    }
    match latest {
        Some((size, root)) => println!(
            "ok: {records} records, {checkpoints} signed checkpoint{}; latest checkpoint: tree size {size}, root {root}{}",
            if checkpoints == 1 { "" } else { "s" },
            match size.cmp(&records) {
                std::cmp::Ordering::Less => format!(" ({} records since)", records - size),
                // Online, ingest went on while the log was read.
                std::cmp::Ordering::Greater => {
                    format!(
                        " (signed while the verify ran, {} records past those checked)",
                        size - records
                    )
                }
                std::cmp::Ordering::Equal => String::new(),
            }
        ),
        None => println!("ok: {records} records, no checkpoint yet"),
    }
    Ok(())
}
