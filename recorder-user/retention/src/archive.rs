//! Archives: a pruned segment copied, before its deletion, to object storage through the
//! `object_store` crate (S3 and S3-compatible stores, GCS, Azure, a local path). Under the
//! archive's prefix, `segments/NNNNNNNN.log` is the segment file byte for byte and
//! `segments/NNNNNNNN.json` its manifest: the signed ledger entry, a signed checkpoint that
//! covers it and the tree heads that place its records in that checkpoint's tree. The manifest
//! is written last, so a listed manifest always has its segment. Where the bucket has S3 Object
//! Lock with a default retention, S3 applies it to every object written here.
use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload, path::Path as ObjectPath};
use recorder_record::hex;
use recorder_store::{
    integrity::{Hash, checkpoint::Checkpoint, merkle},
    pruned::PrunedSegment,
    segment::{self, HEADER},
};
use serde::{Deserialize, Serialize};

use crate::config::ArchiveConfig;

/// What an archive keeps beside a segment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// The ledger entry of its deletion, signed with the collector's checkpoint key.
    pub entry: PrunedSegment,
    /// A signed checkpoint whose tree holds the segment's records.
    pub checkpoint: Checkpoint,
    /// Hex tree heads: with the segment's leaves they make the checkpoint's root.
    pub range_proof: Vec<String>,
    /// Hex: the collector's public key (an auditor pins the one they trust with `--key`).
    pub public_key: String,
}

impl Manifest {
    pub fn new(
        entry: PrunedSegment,
        checkpoint: Checkpoint,
        proof: &[Hash],
        public_key: &[u8],
    ) -> Self {
        Self {
            version: 1,
            entry,
            checkpoint,
            range_proof: proof.iter().map(|h| hex::encode(h)).collect(),
            public_key: hex::encode(public_key),
        }
    }
}

pub struct Archive {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    url: String,
}

impl Archive {
    /// Opens the archive at `config.url`. For `s3://` the AWS_* environment variables are read
    /// first, then `options`; an unknown option is an error.
    pub fn open(config: &ArchiveConfig) -> Result<Self, String> {
        // object_store's HTTP client takes the process's TLS provider: ring, as everywhere here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = url::Url::parse(&config.url)
            .map_err(|e| format!("archive url {:?}: {e}", config.url))?;
        let bad = |e: object_store::Error| format!("archive {}: {e}", config.url);
        let (store, prefix): (Arc<dyn ObjectStore>, ObjectPath) = if url.scheme() == "s3" {
            // Buckets with Object Lock refuse a write that does not name its checksum algorithm
            // (or carry Content-MD5): SHA-256 is sent, and named.
            let mut headers = http::HeaderMap::new();
            headers.insert(
                "x-amz-sdk-checksum-algorithm",
                http::HeaderValue::from_static("SHA256"),
            );
            let mut builder = object_store::aws::AmazonS3Builder::new()
                .with_client_options(
                    object_store::ClientOptions::new().with_default_headers(headers),
                )
                .with_checksum_algorithm(object_store::aws::Checksum::SHA256);
            // As AmazonS3Builder::from_env, after the client options (which it would replace).
            for (key, value) in std::env::vars() {
                if let Some(k) = key.strip_prefix("AWS_")
                    && let Ok(k) = format!("aws_{}", k.to_ascii_lowercase()).parse()
                {
                    builder = builder.with_config(k, value);
                }
            }
            builder = builder.with_url(config.url.as_str());
            for (key, value) in &config.options {
                let key = key
                    .parse()
                    .map_err(|_| format!("archive {}: unknown S3 option {key:?}", config.url))?;
                builder = builder.with_config(key, value);
            }
            let prefix = ObjectPath::from(url.path().trim_start_matches('/'));
            (Arc::new(builder.build().map_err(bad)?), prefix)
        } else {
            if url.scheme() == "file" {
                let dir = url
                    .to_file_path()
                    .map_err(|()| format!("archive {}: not a local path", config.url))?;
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("archive {}: {e}", dir.display()))?;
            }
            let (store, prefix) =
                object_store::parse_url_opts(&url, config.options.iter()).map_err(bad)?;
            (Arc::from(store), prefix)
        };
        Ok(Self {
            store,
            prefix,
            url: config.url.clone(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, name: &str) -> ObjectPath {
        self.prefix.clone().join("segments").join(name)
    }

    /// Writes a segment and then its manifest.
    pub async fn put(&self, bytes: Vec<u8>, manifest: &Manifest) -> Result<(), String> {
        let seg = manifest.entry.segment;
        let name = segment::segment_name(seg);
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| e.to_string())?;
        for (path, body) in [
            (self.path(&name), bytes),
            (self.path(&manifest_name(seg)), json),
        ] {
            self.store
                .put(&path, PutPayload::from(body))
                .await
                .map_err(|e| format!("archive {}: writing {path}: {e}", self.url))?;
        }
        Ok(())
    }

    /// Every manifest in the archive, by segment number; unreadable ones as errors.
    pub async fn manifests(&self) -> Result<Vec<(String, Result<Manifest, String>)>, String> {
        use futures::TryStreamExt as _;
        let dir = self.prefix.clone().join("segments");
        let mut names: Vec<ObjectPath> = self
            .store
            .list(Some(&dir))
            .map_ok(|m| m.location)
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| format!("archive {}: listing: {e}", self.url))?
            .into_iter()
            .filter(|p| p.extension() == Some("json"))
            .collect();
        names.sort();
        let mut out = Vec::new();
        for path in names {
            let read = self.get(&path).await.and_then(|bytes| {
                serde_json::from_slice::<Manifest>(&bytes)
                    .map_err(|e| format!("not a manifest: {e}"))
            });
            out.push((path.to_string(), read));
        }
        Ok(out)
    }

    /// The archived copy of segment `seg`.
    pub async fn segment(&self, seg: u32) -> Result<Vec<u8>, String> {
        self.get(&self.path(&segment::segment_name(seg))).await
    }

    async fn get(&self, path: &ObjectPath) -> Result<Vec<u8>, String> {
        let got = self
            .store
            .get(path)
            .await
            .map_err(|e| format!("archive {}: reading {path}: {e}", self.url))?;
        let bytes = got
            .bytes()
            .await
            .map_err(|e| format!("archive {}: reading {path}: {e}", self.url))?;
        Ok(bytes.to_vec())
    }
}

pub fn manifest_name(seg: u32) -> String {
    format!("{seg:08}.json")
}

/// The leaf hashes of a segment file, each checked against the hash stored beside it, and
/// the log indexes they claim; the first problem found otherwise.
pub fn segment_leaves(bytes: &[u8]) -> Result<Vec<(u64, Hash)>, String> {
    if bytes.len() < HEADER.len() || &bytes[..HEADER.len()] != HEADER {
        return Err("not a log segment (bad header)".into());
    }
    let mut out = Vec::new();
    let mut offset = HEADER.len();
    while offset < bytes.len() {
        let frame = segment::decode_frame(&bytes[offset..])
            .map_err(|e| format!("byte offset {offset}: {e}"))?;
        let leaf = frame.computed_leaf();
        if leaf != frame.stored_leaf {
            return Err(format!(
                "log index {} (byte offset {offset}): content changed (it no longer matches its stored hash)",
                frame.entry.index
            ));
        }
        out.push((frame.entry.index, leaf));
        offset += frame.len;
    }
    Ok(out)
}

/// Checks an archived segment against its manifest: the entry's and the checkpoint's
/// signatures under `key`, every record's hash, the indexes the entry names, the leaves' hash
/// the entry signed, and that the records sit at their place in the checkpoint's tree.
/// Returns the problems found (none: it is intact).
pub fn check(bytes: &[u8], manifest: &Manifest, key: &[u8]) -> Vec<String> {
    let mut problems = Vec::new();
    let entry = &manifest.entry;
    if !entry.verify(key) {
        problems.push("the ledger entry's signature is not the collector's".to_string());
    }
    if !manifest.checkpoint.verify(key) {
        problems.push(format!(
            "the checkpoint (tree size {}) is not signed by the collector",
            manifest.checkpoint.tree_size
        ));
    }
    let leaves = match segment_leaves(bytes) {
        Ok(l) => l,
        Err(e) => {
            problems.push(e);
            return problems;
        }
    };
    for (n, (index, _)) in leaves.iter().enumerate() {
        if *index != entry.first_index + n as u64 {
            problems.push(format!(
                "record {n} says it is log index {index}, the entry says {}",
                entry.first_index + n as u64
            ));
            return problems;
        }
    }
    let hashes: Vec<Hash> = leaves.iter().map(|(_, h)| *h).collect();
    if hashes.len() as u64 != entry.records() {
        problems.push(format!(
            "holds {} records, the entry says {}",
            hashes.len(),
            entry.records()
        ));
        return problems;
    }
    let sha = recorder_store::pruned::sha256_hex(&recorder_store::pruned::leaves_bytes(&hashes));
    if sha != entry.leaves_sha256 {
        problems.push("its records' hashes are not those the entry signed".into());
    }
    let proof: Option<Vec<Hash>> = manifest
        .range_proof
        .iter()
        .map(|h| hex::decode(h).and_then(|v| v.try_into().ok()))
        .collect();
    let root = proof.and_then(|p| {
        merkle::root_from_range(
            &hashes,
            entry.first_index,
            manifest.checkpoint.tree_size,
            &p,
        )
    });
    if root.is_none() || root != manifest.checkpoint.root_hash() {
        problems.push(format!(
            "its records do not make the root of the signed checkpoint of tree size {} at log index {}..{}",
            manifest.checkpoint.tree_size, entry.first_index, entry.end_index
        ));
    }
    problems
}
