//! The CA's certificate revocation list: `crl.pem` beside `ca.pem`, a standard X.509 CRL in PEM.
//! `recorder pki revoke` adds a certificate to it; collectors given the list (`--tls-crl`)
//! refuse every certificate it names, agent or operator, and every console token signed with
//! one (see `client_check`). The CA's key signs the list: only who holds that key can change
//! it, and a collector takes a list only once it has checked that signature.
use std::{
    fs,
    path::{Path, PathBuf},
    str::FromStr,
};

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, pem::PemObject as _};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::pki::{self, PkiError};

/// The list's file name in the PKI directory.
pub const CRL_FILE: &str = "crl.pem";

/// Why a certificate is revoked (the RFC 5280 reasons that apply to this PKI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Unspecified,
    /// Its private key was lost or stolen.
    KeyCompromise,
    /// A new certificate replaces it.
    Superseded,
    /// The host or person no longer uses it.
    CessationOfOperation,
    /// The host or person changed role or team.
    AffiliationChanged,
}

impl Reason {
    pub const NAMES: &str = "unspecified, key-compromise, superseded, cessation-of-operation, \
                             affiliation-changed";

    fn code(self) -> RevocationReason {
        match self {
            Reason::Unspecified => RevocationReason::Unspecified,
            Reason::KeyCompromise => RevocationReason::KeyCompromise,
            Reason::Superseded => RevocationReason::Superseded,
            Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
            Reason::AffiliationChanged => RevocationReason::AffiliationChanged,
        }
    }
}

impl FromStr for Reason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "unspecified" => Reason::Unspecified,
            "key-compromise" => Reason::KeyCompromise,
            "superseded" => Reason::Superseded,
            "cessation-of-operation" => Reason::CessationOfOperation,
            "affiliation-changed" => Reason::AffiliationChanged,
            _ => return Err(format!("unknown reason {s:?} (one of {})", Self::NAMES)),
        })
    }
}

/// One revoked certificate, as the list keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The certificate's serial number (DER integer bytes).
    pub serial: Vec<u8>,
    /// When it was revoked (unix seconds).
    pub at: i64,
    /// The RFC 5280 reason code, when one was given.
    pub reason: Option<u8>,
}

/// A revocation list whose signature was checked against the CA.
#[derive(Debug, Clone)]
pub struct RevocationList {
    /// The list's number: each new list of a CA has a higher one (see `next_number`), so a
    /// reader can refuse an older list put back in place of a newer one.
    pub number: u64,
    pub revoked: Vec<Revoked>,
    pub der: CertificateRevocationListDer<'static>,
}

impl RevocationList {
    /// Reads `path` (PEM, exactly one list) and checks that a certificate of `ca` signed it.
    pub fn read(path: &Path, ca: &[CertificateDer<'_>]) -> Result<Self, PkiError> {
        let bad = |why: String| PkiError::Revocation {
            path: path.to_path_buf(),
            why,
        };
        let ders: Vec<_> = CertificateRevocationListDer::pem_file_iter(path)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| bad(e.to_string()))?;
        let [der] = <[_; 1]>::try_from(ders).map_err(|ders| {
            bad(format!(
                "holds {} revocation lists; a CA's list is exactly one",
                ders.len()
            ))
        })?;
        Self::checked(der, ca).map_err(bad)
    }

    /// `der` read, once a certificate of `ca` is found to have signed it; why not in plain words.
    pub fn checked(
        der: CertificateRevocationListDer<'static>,
        ca: &[CertificateDer<'_>],
    ) -> Result<Self, String> {
        let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der)
            .map_err(|e| format!("not a revocation list: {e}"))?;
        let signer = ca
            .iter()
            .filter_map(|c| X509Certificate::from_der(c).ok().map(|(_, c)| c))
            .find(|c| c.subject() == crl.issuer())
            .ok_or_else(|| {
                format!(
                    "issued by {}, which is not the collector's CA",
                    crl.issuer()
                )
            })?;
        crl.verify_signature(signer.public_key())
            .map_err(|e| format!("not signed by the CA's key ({e})"))?;
        let number = crl
            .crl_number()
            .and_then(|n| u64::try_from(n.clone()).ok())
            .unwrap_or(0);
        let revoked = crl
            .iter_revoked_certificates()
            .map(|r| Revoked {
                serial: r.raw_serial().to_vec(),
                at: r.revocation_date.timestamp(),
                reason: r.reason_code().map(|(_, code)| code.0),
            })
            .collect();
        Ok(Self {
            number,
            revoked,
            der,
        })
    }
}

/// What `revoke` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The certificate's common name.
    pub name: String,
    /// Its serial number, in hex with colons (as `openssl x509 -serial` shows it, lower case).
    pub serial: String,
    /// False when the list named it already (then the list is left as it was).
    pub added: bool,
    /// How many certificates the list names now.
    pub listed: usize,
    /// The list's file.
    pub path: PathBuf,
}

/// `pki revoke`: adds the certificate in `cert` (PEM, issued by the CA in `dir`) to the CA's
/// revocation list, and writes the list again with the next number.
pub fn revoke(dir: &Path, cert: &Path, reason: Reason) -> Result<Revocation, PkiError> {
    let ca = ca_certs(dir)?;
    if !cert.is_file() {
        return Err(PkiError::Revocation {
            path: cert.to_path_buf(),
            why: "no such certificate file (`--name NAME` reads DIR/NAME.pem)".into(),
        });
    }
    let der = crate::tls::load_certs(cert)
        .map_err(|e| PkiError::Parse(e.to_string()))?
        .remove(0);
    let (_, parsed) =
        X509Certificate::from_der(&der).map_err(|e| PkiError::Parse(e.to_string()))?;
    let issued_here = ca.iter().any(|c| {
        X509Certificate::from_der(c)
            .is_ok_and(|(_, c)| parsed.verify_signature(Some(c.public_key())).is_ok())
    });
    if !issued_here || parsed.is_ca() {
        return Err(PkiError::Revocation {
            path: cert.to_path_buf(),
            why: "not a certificate issued by this CA (only agent, operator and collector \
                  certificates it issued can be revoked)"
                .into(),
        });
    }
    let name = pki::peer_of(&der).map_or_else(|_| parsed.subject().to_string(), |p| p.name);
    let serial = parsed.raw_serial().to_vec();
    let (mut revoked, number) = existing(dir, &ca)?;
    let added = !revoked.iter().any(|r| r.serial == serial);
    let path = dir.join(CRL_FILE);
    if added {
        revoked.push(Revoked {
            serial: serial.clone(),
            at: OffsetDateTime::now_utc().unix_timestamp(),
            reason: Some(reason.code() as u8),
        });
        write(dir, &revoked, next_number(number))?;
    }
    Ok(Revocation {
        name,
        serial: parsed.raw_serial_as_string().to_lowercase(),
        added,
        listed: revoked.len(),
        path,
    })
}

/// `pki crl`: writes the CA's list again with the next number, as it is (an empty list when
/// there is none). Returns the file and how many certificates it names.
pub fn rewrite(dir: &Path) -> Result<(PathBuf, usize), PkiError> {
    let ca = ca_certs(dir)?;
    let (revoked, number) = existing(dir, &ca)?;
    write(dir, &revoked, next_number(number))?;
    Ok((dir.join(CRL_FILE), revoked.len()))
}

/// The number of the list after one numbered `previous`: the time in milliseconds, or one more
/// than `previous` if that is higher. Numbers keep growing even when `crl.pem` is lost and a
/// new list is started, so collectors (which refuse a lower number) take the new one.
fn next_number(previous: u64) -> u64 {
    let now = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    u64::try_from(now).unwrap_or(0).max(previous + 1)
}

fn ca_certs(dir: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    crate::tls::load_certs(&dir.join(pki::CA_CERT)).map_err(|e| PkiError::Parse(e.to_string()))
}

/// The list in `dir` and its number (none yet: empty, 0).
fn existing(dir: &Path, ca: &[CertificateDer<'_>]) -> Result<(Vec<Revoked>, u64), PkiError> {
    let path = dir.join(CRL_FILE);
    if !path.exists() {
        return Ok((Vec::new(), 0));
    }
    let list = RevocationList::read(&path, ca)?;
    Ok((list.revoked, list.number))
}

/// Signs the list with the CA's key and replaces `crl.pem` in one rename, so a collector
/// reading it meanwhile sees the old list or the new one, never half of one.
fn write(dir: &Path, revoked: &[Revoked], number: u64) -> Result<(), PkiError> {
    let issuer = pki::load_issuer(dir)?;
    let now = OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update: now,
        // Collectors do not enforce it (a list stays in force until a newer one replaces it);
        // other readers of the file may, so it is far away.
        next_update: now + Duration::days(3650),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|r| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&r.serial),
                revocation_time: OffsetDateTime::from_unix_timestamp(r.at).unwrap_or(now),
                reason_code: r.reason.and_then(reason_of_code),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let pem = params.signed_by(&issuer)?.pem()?;
    let path = dir.join(CRL_FILE);
    let tmp = dir.join(format!(".{CRL_FILE}.new"));
    // A file left by an interrupted run is ours to replace.
    let _ = fs::remove_file(&tmp);
    pki::write_new(&tmp, &pem, false)?;
    fs::rename(&tmp, &path).map_err(|source| PkiError::Io { path, source })
}

fn reason_of_code(code: u8) -> Option<RevocationReason> {
    use RevocationReason as R;
    [
        R::Unspecified,
        R::KeyCompromise,
        R::CaCompromise,
        R::AffiliationChanged,
        R::Superseded,
        R::CessationOfOperation,
        R::CertificateHold,
        R::RemoveFromCrl,
        R::PrivilegeWithdrawn,
        R::AaCompromise,
    ]
    .into_iter()
    .find(|r| *r as u8 == code)
}

#[cfg(test)]
mod tests;
