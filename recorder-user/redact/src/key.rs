//! The deployment's redaction key: 32 random bytes in a file only the agent reads (mode
//! 0600), made on first start. Agents of one deployment given the same file make the same
//! markers, so one secret is linkable across hosts.
use std::{
    fs,
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::Path,
};

use ring::rand::{SecureRandom as _, SystemRandom};

use crate::RedactError;

/// Where the key is kept when the configuration does not say.
pub const DEFAULT_KEY_FILE: &str = "/var/lib/recorder/redaction.key";
const KEY_BYTES: usize = 32;

fn error(path: &Path, why: impl std::fmt::Display) -> RedactError {
    RedactError::Key {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

/// The key in `path`, made if the file does not exist.
pub fn load_or_create(path: &Path) -> Result<Vec<u8>, RedactError> {
    match fs::read(path) {
        Ok(key) if key.len() >= 16 => {
            let mode = fs::metadata(path)
                .map_err(|e| error(path, e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(error(
                    path,
                    format!("readable by others (mode {:o}): chmod 600 it", mode & 0o777),
                ));
            }
            Ok(key)
        }
        Ok(key) => Err(error(
            path,
            format!("{} bytes; a key has at least 16", key.len()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = vec![0u8; KEY_BYTES];
            SystemRandom::new()
                .fill(&mut key)
                .map_err(|_| error(path, "no randomness to make a key"))?;
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|e| error(path, e))?;
            }
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| error(path, e))?;
            f.write_all(&key)
                .and_then(|()| f.sync_all())
                .map_err(|e| error(path, e))?;
            Ok(key)
        }
        Err(e) => Err(error(path, e)),
    }
}

/// A key for this run only, when none can be kept: markers then differ after a restart.
pub fn ephemeral() -> Result<Vec<u8>, RedactError> {
    let mut key = vec![0u8; KEY_BYTES];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| RedactError::Key {
            path: "(in memory)".into(),
            why: "no randomness to make a key".into(),
        })?;
    Ok(key)
}
