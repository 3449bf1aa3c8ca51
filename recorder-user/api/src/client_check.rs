//! Who may connect: a client certificate must chain to the CA, be within its dates, be meant for
//! client authentication, and not be named by the CA's revocation list (when the collector is
//! given one). The list is read again when its file changes, so a revocation takes effect in a
//! running collector within seconds; callers holding a stream open check again when the
//! generation moves (see [`ClientCheck::generation`]).
use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use rustls::{
    RootCertStore,
    server::{WebPkiClientVerifier, danger::ClientCertVerifier},
};
use rustls_pki_types::CertificateDer;

use crate::{
    revocation::RevocationList,
    tls::{self, TlsError},
};

pub struct ClientCheck {
    ca: Vec<CertificateDer<'static>>,
    roots: Arc<RootCertStore>,
    ca_path: PathBuf,
    crl: Option<PathBuf>,
    current: RwLock<Current>,
    generation: AtomicU64,
}

struct Current {
    verifier: Arc<dyn ClientCertVerifier>,
    /// The list's file as it was when last read, accepted or not (a bad file is reported once).
    seen: Option<Stamp>,
    /// How many certificates the list in force names.
    revoked: usize,
    /// The number of the list in force: a lower one is an older list put back, refused.
    number: u64,
}

/// What tells a file's change: a new list is written aside and renamed over the old one, and
/// a mounted ConfigMap or Secret swaps a symbolic link; both change the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        inode: meta.ino(),
        len: meta.len(),
        modified: meta.modified().ok(),
    })
}

impl ClientCheck {
    /// The CA certificates in `ca` (PEM), and the revocation list in `crl` if given; the list
    /// must be signed by the CA.
    pub fn load(ca: &Path, crl: Option<&Path>) -> Result<Self, TlsError> {
        let ca_certs = tls::load_certs(ca)?;
        let mut roots = RootCertStore::empty();
        for c in &ca_certs {
            roots
                .add(c.clone())
                .map_err(|e| TlsError::Config(format!("CA certificate {}: {e}", ca.display())))?;
        }
        let roots = Arc::new(roots);
        let seen = crl.and_then(stamp);
        let list = crl.map(|path| read_list(path, &ca_certs)).transpose()?;
        let (revoked, number) = list
            .as_ref()
            .map_or((0, 0), |l| (l.revoked.len(), l.number));
        let verifier = verifier(&roots, list)?;
        Ok(Self {
            ca: ca_certs,
            roots,
            ca_path: ca.to_path_buf(),
            crl: crl.map(Path::to_path_buf),
            current: RwLock::new(Current {
                verifier,
                seen,
                revoked,
                number,
            }),
            generation: AtomicU64::new(0),
        })
    }

    /// The check in force, for what takes a `ClientCertVerifier` (console tokens).
    pub fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.read().verifier.clone()
    }

    /// The CA's certificates, for a handshake that checks a certificate before `check` does
    /// (the console's, where one is optional).
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.clone()
    }

    /// Checks a client's certificate chain; the error says why in plain words.
    pub fn check(&self, certs: &[CertificateDer<'_>]) -> Result<(), String> {
        tls::check_client_chain(self.verifier().as_ref(), certs)
    }

    /// Moves each time a new revocation list takes effect: whoever admitted a caller at an
    /// older generation checks it again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// How many certificates the revocation list in force names.
    pub fn revoked(&self) -> usize {
        self.read().revoked
    }

    /// The revocation list's file, if there is one.
    pub fn crl_path(&self) -> Option<&Path> {
        self.crl.as_deref()
    }

    /// Reads the revocation list again if its file changed. `Ok(Some(n))`: a new list naming
    /// `n` certificates is in force. `Err`: the file changed but cannot be used (unreadable,
    /// removed, not signed by the CA, older than the list in force); the list in force stays,
    /// and the same file is not reported again.
    pub fn reload(&self) -> Result<Option<usize>, TlsError> {
        let Some(path) = &self.crl else {
            return Ok(None);
        };
        let now = stamp(path);
        if now == self.read().seen {
            return Ok(None);
        }
        let in_force = self.read().number;
        let fresh = read_list(path, &self.ca)
            .and_then(|list| {
                if list.number < in_force {
                    return Err(TlsError::Config(format!(
                        "revocation list {}: its number {} is lower than the list's in force \
                         ({in_force}): an older list put back would take revocations back",
                        path.display(),
                        list.number
                    )));
                }
                let (n, number) = (list.revoked.len(), list.number);
                Ok((verifier(&self.roots, Some(list))?, n, number))
            })
            .map_err(|e| match now {
                None => TlsError::Read {
                    path: path.display().to_string(),
                    why: "the revocation list is gone".into(),
                },
                Some(_) => e,
            });
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        current.seen = now;
        let (verifier, revoked, number) = fresh?;
        *current = Current {
            verifier,
            seen: now,
            revoked,
            number,
        };
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(Some(revoked))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::fmt::Debug for ClientCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCheck")
            .field("ca", &self.ca_path)
            .field("crl", &self.crl)
            .field("revoked", &self.revoked())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

fn read_list(path: &Path, ca: &[CertificateDer<'_>]) -> Result<RevocationList, TlsError> {
    if !path.exists() {
        return Err(TlsError::Read {
            path: path.display().to_string(),
            why: "no such file (`recorder pki init` writes the CA's revocation list as crl.pem; \
                  for a CA made before it did, `recorder pki crl --dir DIR` writes an empty one)"
                .into(),
        });
    }
    RevocationList::read(path, ca).map_err(|e| TlsError::Config(format!("revocation list {e}")))
}

/// The chain, dates and purpose check against `roots`, with `list` consulted for the end
/// certificate (the CA issues end certificates directly). The list's own dates are not
/// enforced: it stays in force until a newer one replaces it.
fn verifier(
    roots: &Arc<RootCertStore>,
    list: Option<RevocationList>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider);
    if let Some(list) = list {
        builder = builder
            .with_crls([list.der])
            .only_check_end_entity_revocation();
    }
    builder.build().map_err(|e| TlsError::Config(e.to_string()))
}

#[cfg(test)]
mod tests;
