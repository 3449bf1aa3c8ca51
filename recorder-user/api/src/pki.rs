//! A small PKI for a first install: one CA, a server certificate for the collector, and client
//! certificates for agents and operators. The role is the certificate's organisational unit
//! (`OU=agent` / `OU=operator`) and the name its common name (the host name for an agent), so the
//! collector reads both from the verified peer certificate.
use std::{
    fmt, fs,
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    str::FromStr,
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("invalid name {0:?}: use letters, digits, '-', '_' and '.'")]
    BadName(String),
    #[error("the certificate has no {0}")]
    Missing(&'static str),
    #[error("the certificate cannot be parsed: {0}")]
    Parse(String),
    #[error("{path}: {why}")]
    Revocation { path: PathBuf, why: String },
}

/// What a client certificate allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// May only ingest, for the host named by its common name.
    Agent,
    /// May only read: sessions, replay, export, watch, verify.
    Operator,
    /// The collector's own server certificate; no client rights.
    Collector,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Operator => "operator",
            Role::Collector => "collector",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "agent" => Ok(Role::Agent),
            "operator" => Ok(Role::Operator),
            "collector" => Ok(Role::Collector),
            _ => Err(format!("unknown role {s:?} (expected agent or operator)")),
        }
    }
}

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn check_name(name: &str) -> Result<(), PkiError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(PkiError::BadName(name.to_string()));
    }
    Ok(())
}

pub(crate) fn write_new(path: &Path, text: &str, private: bool) -> Result<(), PkiError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                PkiError::Exists(path.to_path_buf())
            } else {
                io(path)(e)
            }
        })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(path))
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    // An hour of slack for clocks that are a little behind.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

/// Parameters of a leaf certificate for `role`/`name`.
pub fn leaf_params(
    role: Role,
    name: &str,
    sans: &[String],
    days: i64,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(sans.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "recorder");
    dn.push(DnType::OrganizationalUnitName, role.as_str());
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if role == Role::Collector {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    Ok(params)
}

/// `pki init`: the CA, its (empty) revocation list and the collector's certificate (valid for
/// localhost, 127.0.0.1 and `extra_sans`). Returns the files written.
pub fn init(dir: &Path, extra_sans: &[String], days: i64) -> Result<Vec<PathBuf>, PkiError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    for f in [
        CA_CERT,
        CA_KEY,
        crate::revocation::CRL_FILE,
        "collector.pem",
        "collector-key.pem",
    ] {
        if dir.join(f).exists() {
            return Err(PkiError::Exists(dir.join(f)));
        }
    }
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "recorder");
    dn.push(DnType::CommonName, "recorder CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca, days.max(3650));
    let ca_cert = ca.self_signed(&ca_key)?;
    write_new(&dir.join(CA_KEY), &ca_key.serialize_pem(), true)?;
    write_new(&dir.join(CA_CERT), &ca_cert.pem(), false)?;
    let issuer = Issuer::new(ca, ca_key);
    let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    sans.extend(extra_sans.iter().cloned());
    let mut out = vec![dir.join(CA_CERT), dir.join(CA_KEY)];
    out.extend(write_leaf(
        dir,
        &issuer,
        Role::Collector,
        "collector",
        &sans,
        days,
    )?);
    out.push(crate::revocation::rewrite(dir)?.0);
    Ok(out)
}

/// `pki issue`: a client certificate signed by the CA in `dir`.
pub fn issue(dir: &Path, role: Role, name: &str, days: i64) -> Result<Vec<PathBuf>, PkiError> {
    check_name(name)?;
    let issuer = load_issuer(dir)?;
    write_leaf(dir, &issuer, role, name, &[], days)
}

/// The CA in `dir`, to sign with.
pub fn load_issuer(dir: &Path) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key_path = dir.join(CA_KEY);
    let cert_path = dir.join(CA_CERT);
    let key_pem = fs::read_to_string(&key_path).map_err(io(&key_path))?;
    let cert_pem = fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
    let key = KeyPair::from_pem(&key_pem)?;
    Ok(Issuer::from_ca_cert_pem(&cert_pem, key)?)
}

fn write_leaf(
    dir: &Path,
    issuer: &Issuer<'_, KeyPair>,
    role: Role,
    name: &str,
    sans: &[String],
    days: i64,
) -> Result<Vec<PathBuf>, PkiError> {
    let key = KeyPair::generate()?;
    let cert = leaf_params(role, name, sans, days)?.signed_by(&key, issuer)?;
    let (cert_path, key_path) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    write_new(&key_path, &key.serialize_pem(), true)?;
    write_new(&cert_path, &cert.pem(), false)?;
    Ok(vec![cert_path, key_path])
}

/// Who a (verified) certificate names: its role (OU) and name (CN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub role: Role,
    pub name: String,
}

pub fn peer_of(der: &[u8]) -> Result<Peer, PkiError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Parse(e.to_string()))?;
    let subject = cert.subject();
    let ou = subject
        .iter_organizational_unit()
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or(PkiError::Missing(
            "organisational unit (OU=agent or OU=operator)",
        ))?;
    let role = ou
        .parse::<Role>()
        .map_err(|_| PkiError::Parse(format!("unknown role OU={ou}")))?;
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or(PkiError::Missing("common name"))?
        .to_string();
    Ok(Peer { role, name })
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::{CertificateDer, pem::PemObject as _};

    use super::*;

    #[test]
    fn issues_certificates_that_name_their_role() {
        let dir = tempfile::tempdir().unwrap();
        let files = init(dir.path(), &[], 30).unwrap();
        assert_eq!(files.len(), 5);
        issue(dir.path(), Role::Agent, "web-1", 30).unwrap();
        issue(dir.path(), Role::Operator, "alice", 30).unwrap();
        let pem = fs::read(dir.path().join("web-1.pem")).unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(
            peer_of(&der).unwrap(),
            Peer {
                role: Role::Agent,
                name: "web-1".into()
            }
        );
        let der = CertificateDer::from_pem_file(dir.path().join("alice.pem")).unwrap();
        assert_eq!(
            peer_of(&der).unwrap(),
            Peer {
                role: Role::Operator,
                name: "alice".into()
            }
        );
        assert!(matches!(
            init(dir.path(), &[], 30),
            Err(PkiError::Exists(_))
        ));
        assert!(matches!(
            issue(dir.path(), Role::Agent, "web-1", 30),
            Err(PkiError::Exists(_))
        ));
        assert!(matches!(
            issue(dir.path(), Role::Agent, "../x", 30),
            Err(PkiError::BadName(_))
        ));
        assert!(peer_of(b"junk").is_err());
    }
}
