//! Signed checkpoints: (tree size, root, time) signed with the collector's Ed25519 key. The
//! signed bytes are a small text, so an auditor can check a checkpoint with any Ed25519 tool:
//!
//! ```text
//! recorder checkpoint v1
//! tree_size 1234
//! root 5dc9…(64 hex digits)
//! time 2026-11-28T10:14:23.000000000Z
//! ```
use std::{fs, io::Write as _, os::unix::fs::OpenOptionsExt as _, path::Path};

use ring::{
    rand::SystemRandom,
    signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey},
};
use serde::{Deserialize, Serialize};

use recorder_record::hex;

use super::Hash;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the signing key {path} is not a valid Ed25519 PKCS#8 key")]
    BadKey { path: String },
    #[error("cannot generate a signing key")]
    KeyGen,
}

/// One checkpoint as stored (one JSON line in `checkpoints.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub tree_size: u64,
    /// Hex SHA-256 tree head.
    pub root: String,
    pub time: String,
    /// Hex Ed25519 signature of `signed_text()`.
    pub signature: String,
}

impl Checkpoint {
    pub fn signed_text(tree_size: u64, root: &Hash, time: &str) -> String {
        format!(
            "recorder checkpoint v1\ntree_size {tree_size}\nroot {}\ntime {time}\n",
            hex::encode(root)
        )
    }

    pub fn root_hash(&self) -> Option<Hash> {
        hex::decode(&self.root)?.try_into().ok()
    }

    /// Whether the signature is valid for this public key.
    pub fn verify(&self, public_key: &[u8]) -> bool {
        let (Some(root), Some(sig)) = (self.root_hash(), hex::decode(&self.signature)) else {
            return false;
        };
        let text = Self::signed_text(self.tree_size, &root, &self.time);
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(text.as_bytes(), &sig)
            .is_ok()
    }
}

/// The collector's signing key, kept in the data directory (`checkpoint-key.p8`, mode 0600) with
/// its public half beside it (`checkpoint-key.pub`, hex) for auditors.
pub struct Signer {
    key: Ed25519KeyPair,
}

pub const KEY_FILE: &str = "checkpoint-key.p8";
pub const PUBLIC_KEY_FILE: &str = "checkpoint-key.pub";

impl Signer {
    /// Loads the key from `dir`, generating it on first start.
    pub fn load_or_create(dir: &Path) -> Result<Self, CheckpointError> {
        let path = dir.join(KEY_FILE);
        let io = |source| CheckpointError::Io {
            path: path.display().to_string(),
            source,
        };
        let pkcs8 = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| CheckpointError::KeyGen)?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io)?;
                f.write_all(doc.as_ref())
                    .and_then(|()| f.sync_all())
                    .map_err(io)?;
                doc.as_ref().to_vec()
            }
            Err(e) => return Err(io(e)),
        };
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| CheckpointError::BadKey {
            path: path.display().to_string(),
        })?;
        let pub_path = dir.join(PUBLIC_KEY_FILE);
        let pub_hex = format!("{}\n", hex::encode(key.public_key().as_ref()));
        if fs::read_to_string(&pub_path).ok().as_deref() != Some(pub_hex.as_str()) {
            fs::write(&pub_path, pub_hex).map_err(|source| CheckpointError::Io {
                path: pub_path.display().to_string(),
                source,
            })?;
        }
        Ok(Self { key })
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    /// Signs other statements of the log (the ledger of pruned segments) with the same key.
    pub fn sign_bytes(&self, text: &[u8]) -> Vec<u8> {
        self.key.sign(text).as_ref().to_vec()
    }

    pub fn sign(&self, tree_size: u64, root: &Hash, time: String) -> Checkpoint {
        let sig = self
            .key
            .sign(Checkpoint::signed_text(tree_size, root, &time).as_bytes());
        Checkpoint {
            tree_size,
            root: hex::encode(root),
            time,
            signature: hex::encode(sig.as_ref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_rejects_changes() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer::load_or_create(dir.path()).unwrap();
        let cp = signer.sign(3, &[7; 32], "2026-11-28T10:14:23.000000000Z".into());
        assert!(cp.verify(&signer.public_key()));
        let mut bad = cp.clone();
        bad.tree_size = 2;
        assert!(!bad.verify(&signer.public_key()));
        // The same key is loaded again on restart.
        let again = Signer::load_or_create(dir.path()).unwrap();
        assert_eq!(again.public_key(), signer.public_key());
        let pub_hex = fs::read_to_string(dir.path().join(PUBLIC_KEY_FILE)).unwrap();
        assert_eq!(pub_hex.trim(), hex::encode(&signer.public_key()));
    }
}
