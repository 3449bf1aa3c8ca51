//! Signed, expiring operator tokens for the web console. A browser cannot easily present a client
//! certificate, so an operator signs a short-lived token with the key of their operator
//! certificate (`recorder token`) and exchanges it for a session cookie.
//!
//! The format is `rct1.<claims>.<cert>.<sig>`, each part base64url without padding:
//!
//! - `claims`: JSON `{"sub": the certificate's CN, "role": "operator", "aud": "recorder-console",
//!   "iat": unix seconds, "exp": unix seconds, "jti": 16 random bytes in hex}`;
//! - `cert`: the operator certificate (DER), checked against the CA like a client certificate;
//! - `sig`: the signature by the certificate's key over the ASCII bytes `rct1.<claims>.<cert>`
//!   (ECDSA P-256 with SHA-256, ASN.1 DER signature; or Ed25519).
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use ring::{
    rand::{SecureRandom as _, SystemRandom},
    signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _},
};
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use serde::{Deserialize, Serialize};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};

use crate::{
    pki::{self, Role},
    tls::{self, TlsError},
};

/// The first part of every token (the format's version).
pub const PREFIX: &str = "rct1";
/// The `aud` claim: who the token is for.
pub const AUDIENCE: &str = "recorder-console";
/// The longest lifetime a token may have.
pub const MAX_TTL: Duration = Duration::from_hours(30 * 24);
/// The longest token accepted, in bytes (a token is about 1 KiB).
pub const MAX_LEN: usize = 16 * 1024;
/// How far in the future `iat` may be: clocks a little ahead of the verifier's.
pub const CLOCK_SKEW_SECS: u64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Read(#[from] TlsError),
    #[error("a token's lifetime must be from 1 second to 30 days, not {0}")]
    Lifetime(String),
    #[error(
        "the certificate of {name:?} is a certificate of role {role}; the console is for operator \
         certificates (`recorder pki issue --role operator`)"
    )]
    NotOperator { role: Role, name: String },
    #[error("{path}: {why}")]
    Certificate { path: String, why: String },
    #[error("{key} is not the private key of {cert}")]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("{path}: {why}")]
    Key { path: PathBuf, why: String },
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("the token is {0} bytes long; a console token is at most 16 KiB")]
    TooLong(usize),
    #[error("this is not a valid console token: {0}")]
    Malformed(String),
    #[error("the token's certificate is refused: {0}")]
    Refused(String),
    #[error("the token is not signed by its certificate's key")]
    BadSignature,
    #[error("the token claims role {0:?}; the console takes operator tokens only")]
    WrongRole(String),
    #[error("the token names {claimed:?} but its certificate is {certificate:?}'s")]
    WrongSubject {
        claimed: String,
        certificate: String,
    },
    #[error("the token is meant for {0:?}, not the recorder console")]
    WrongAudience(String),
    #[error("the token expired at {0}")]
    Expired(String),
    #[error("the token is issued at {0}, in the future (is a clock wrong?)")]
    IssuedInFuture(String),
    #[error("the token is valid for {0} seconds, longer than the 30 days allowed")]
    TooLongLived(u64),
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The operator's name: the certificate's common name.
    pub name: String,
    /// When the token was issued (unix seconds).
    pub issued: u64,
    /// When it expires (unix seconds).
    pub expires: u64,
    /// The token's random id (32 hex digits).
    pub id: String,
}

/// The claims as they are encoded.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    sub: String,
    role: String,
    aud: String,
    iat: u64,
    exp: u64,
    jti: String,
}

impl Wire {
    fn claims(self) -> Claims {
        Claims {
            name: self.sub,
            issued: self.iat,
            expires: self.exp,
            id: self.jti,
        }
    }
}

/// `unix` seconds as an RFC 3339 UTC time, e.g. `2026-12-05T14:00:00Z`.
pub fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .map_or_else(
            || format!("unix time {unix}"),
            |t| {
                format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                )
            },
        )
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The signature algorithms tokens are signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    P256,
    Ed25519,
}

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Alg::P256 => "ECDSA P-256",
            Alg::Ed25519 => "Ed25519",
        }
    }
}

/// A certificate's public key and validity.
struct CertKey {
    alg: Alg,
    public: Vec<u8>,
    not_before: i64,
    not_after: i64,
}

impl CertKey {
    /// The key of the certificate `der`; why not in plain words (to prefix with where it is).
    fn of(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("the certificate cannot be parsed: {e}"))?;
        let spki = cert.public_key();
        let oid = &spki.algorithm.algorithm;
        let alg = if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            match curve {
                Some(c) if c == OID_EC_P256 => Alg::P256,
                Some(c) => return Err(unsupported(&format!("ECDSA on curve {c}"))),
                None => return Err(unsupported("ECDSA on an unnamed curve")),
            }
        } else if *oid == OID_SIG_ED25519 {
            Alg::Ed25519
        } else if *oid == OID_PKCS1_RSAENCRYPTION {
            return Err(unsupported("RSA"));
        } else {
            return Err(unsupported(&format!("of algorithm {oid}")));
        };
        let validity = cert.validity();
        Ok(CertKey {
            alg,
            public: spki.subject_public_key.data.to_vec(),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }

    fn verify(&self, message: &[u8], sig: &[u8]) -> Result<(), TokenError> {
        let alg: &dyn signature::VerificationAlgorithm = match self.alg {
            Alg::P256 => &signature::ECDSA_P256_SHA256_ASN1,
            Alg::Ed25519 => &signature::ED25519,
        };
        signature::UnparsedPublicKey::new(alg, &self.public)
            .verify(message, sig)
            .map_err(|_| TokenError::BadSignature)
    }
}

fn unsupported(kind: &str) -> String {
    format!("its key is {kind}; console tokens are signed with ECDSA P-256 or Ed25519 keys")
}

/// A private key to sign tokens with.
enum Signer {
    P256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl Signer {
    /// The key in `key` (read from `path`), of the certificate `cert_path` whose key is `alg`.
    fn load(
        alg: Alg,
        key: &PrivateKeyDer<'_>,
        path: &Path,
        cert_path: &Path,
        rng: &SystemRandom,
    ) -> Result<Self, TokenError> {
        let bad = |why: String| TokenError::Key {
            path: path.to_path_buf(),
            why,
        };
        let pkcs8 = match key {
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der(),
            PrivateKeyDer::Pkcs1(_) => {
                return Err(bad(format!(
                    "an RSA key cannot sign console tokens (the certificate's key is {})",
                    alg.name()
                )));
            }
            _ => {
                return Err(bad(
                    "the key is not in PKCS#8 form (a PEM \"PRIVATE KEY\", as `recorder pki` \
                     writes)"
                        .into(),
                ));
            }
        };
        let loaded = match alg {
            Alg::P256 => {
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, rng)
                    .map(Signer::P256)
            }
            Alg::Ed25519 => Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map(Signer::Ed25519),
        };
        loaded.map_err(|e| {
            if e.to_string() == "WrongAlgorithm" {
                TokenError::KeyMismatch {
                    key: path.to_path_buf(),
                    cert: cert_path.to_path_buf(),
                }
            } else {
                bad(format!("not a usable {} private key ({e})", alg.name()))
            }
        })
    }

    fn public(&self) -> &[u8] {
        match self {
            Signer::P256(k) => k.public_key().as_ref(),
            Signer::Ed25519(k) => k.public_key().as_ref(),
        }
    }

    fn sign(&self, message: &[u8], rng: &SystemRandom) -> Result<Vec<u8>, TokenError> {
        match self {
            Signer::P256(k) => k
                .sign(rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|e| TokenError::Sign(e.to_string())),
            Signer::Ed25519(k) => Ok(k.sign(message).as_ref().to_vec()),
        }
    }
}

/// The token for `wire`, with the certificate `cert_der`, signed by `signer`.
fn encode(
    wire: &Wire,
    cert_der: &[u8],
    signer: &Signer,
    rng: &SystemRandom,
) -> Result<String, TokenError> {
    let json = serde_json::to_vec(wire).map_err(|e| TokenError::Sign(e.to_string()))?;
    let mut token = format!(
        "{PREFIX}.{}.{}",
        URL_SAFE_NO_PAD.encode(json),
        URL_SAFE_NO_PAD.encode(cert_der)
    );
    let sig = signer.sign(token.as_bytes(), rng)?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(token)
}

/// 16 random bytes in hex.
fn random_id(rng: &SystemRandom) -> Result<String, TokenError> {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes)
        .map_err(|_| TokenError::Sign("no random bytes from the system".into()))?;
    Ok(bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// A token for the operator certificate `cert_pem` (the first certificate of the file), signed by
/// its key `key_pem`, valid for `ttl` (at most 30 days; cut to the certificate's own expiry).
pub fn issue(cert_pem: &Path, key_pem: &Path, ttl: Duration) -> Result<String, TokenError> {
    if ttl.as_secs() == 0 || ttl > MAX_TTL {
        return Err(TokenError::Lifetime(format!("{} seconds", ttl.as_secs())));
    }
    let certs = tls::load_certs(cert_pem)?;
    let cert = &certs[0];
    let cert_err = |why: String| TokenError::Certificate {
        path: cert_pem.display().to_string(),
        why,
    };
    let peer = pki::peer_of(cert).map_err(|e| cert_err(e.to_string()))?;
    if peer.role != Role::Operator {
        return Err(TokenError::NotOperator {
            role: peer.role,
            name: peer.name,
        });
    }
    let cert_key = CertKey::of(cert).map_err(cert_err)?;
    let now = now_unix();
    let not_after = u64::try_from(cert_key.not_after).unwrap_or(0);
    if not_after <= now {
        return Err(cert_err(format!(
            "the certificate expired at {}",
            rfc3339(not_after)
        )));
    }
    if cert_key.not_before > i64::try_from(now).unwrap_or(i64::MAX) {
        return Err(cert_err(format!(
            "the certificate is not valid before {}",
            rfc3339(u64::try_from(cert_key.not_before).unwrap_or(0))
        )));
    }
    let rng = SystemRandom::new();
    let key = tls::load_key(key_pem)?;
    let signer = Signer::load(cert_key.alg, &key, key_pem, cert_pem, &rng)?;
    if signer.public() != cert_key.public.as_slice() {
        return Err(TokenError::KeyMismatch {
            key: key_pem.to_path_buf(),
            cert: cert_pem.to_path_buf(),
        });
    }
    let wire = Wire {
        sub: peer.name,
        role: Role::Operator.as_str().to_string(),
        aud: AUDIENCE.to_string(),
        iat: now,
        exp: now.saturating_add(ttl.as_secs()).min(not_after),
        jti: random_id(&rng)?,
    };
    encode(&wire, cert, &signer, &rng)
}

/// A token taken apart, nothing checked yet.
struct Parsed<'a> {
    /// `rct1.<claims>.<cert>`: what the signature covers.
    signed: &'a str,
    wire: Wire,
    cert: Vec<u8>,
    sig: Vec<u8>,
}

fn parse(token: &str) -> Result<Parsed<'_>, TokenError> {
    if token.len() > MAX_LEN {
        return Err(TokenError::TooLong(token.len()));
    }
    let token = token.trim();
    let malformed = |why: &str| TokenError::Malformed(why.to_string());
    if token.is_empty() {
        return Err(malformed("it is empty"));
    }
    let rest = token
        .strip_prefix(PREFIX)
        .and_then(|r| r.strip_prefix('.'))
        .ok_or_else(|| malformed("it does not start with \"rct1.\""))?;
    let parts: Vec<&str> = rest.split('.').collect();
    let [claims, cert, sig] = parts[..] else {
        return Err(TokenError::Malformed(format!(
            "it has {} parts after \"rct1.\", not 3 (claims.certificate.signature)",
            parts.len()
        )));
    };
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| TokenError::Malformed(format!("its {what} is not base64url ({e})")))
    };
    let claims = decode(claims, "claims part")?;
    let cert = decode(cert, "certificate part")?;
    let sig = decode(sig, "signature part")?;
    let wire: Wire = serde_json::from_slice(&claims).map_err(|e| {
        TokenError::Malformed(format!("its claims are not the expected JSON ({e})"))
    })?;
    Ok(Parsed {
        signed: &token[..token.len() - sig_len(token)],
        wire,
        cert,
        sig,
    })
}

/// The length of `.<sig>` at the end of a token.
fn sig_len(token: &str) -> usize {
    token.rfind('.').map_or(0, |i| token.len() - i)
}

/// The claims of a token, read without any check (to show what `issue` made, say). Never trust
/// them: `verify` is what checks a token.
pub fn read_unverified(token: &str) -> Result<Claims, TokenError> {
    parse(token).map(|p| p.wire.claims())
}

/// Checks a token at `now_unix`: its certificate against the CA (`verifier`, as for client
/// certificates; see `client_check`), that it is an operator certificate, the signature
/// by the certificate's key, and the claims (the certificate's name, the console audience, not
/// expired, not issued in the future, at most 30 days long).
pub fn verify(
    token: &str,
    verifier: &dyn ClientCertVerifier,
    now_unix: u64,
) -> Result<Claims, TokenError> {
    let p = parse(token)?;
    let der = CertificateDer::from(p.cert.as_slice());
    tls::check_client_chain_at(
        verifier,
        std::slice::from_ref(&der),
        UnixTime::since_unix_epoch(Duration::from_secs(now_unix)),
    )
    .map_err(TokenError::Refused)?;
    let peer = pki::peer_of(&p.cert).map_err(|e| TokenError::Refused(e.to_string()))?;
    if peer.role != Role::Operator {
        return Err(TokenError::NotOperator {
            role: peer.role,
            name: peer.name,
        });
    }
    CertKey::of(&p.cert)
        .map_err(TokenError::Refused)?
        .verify(p.signed.as_bytes(), &p.sig)?;
    let w = p.wire;
    if w.role != Role::Operator.as_str() {
        return Err(TokenError::WrongRole(w.role));
    }
    if w.sub != peer.name {
        return Err(TokenError::WrongSubject {
            claimed: w.sub,
            certificate: peer.name,
        });
    }
    if w.aud != AUDIENCE {
        return Err(TokenError::WrongAudience(w.aud));
    }
    if w.jti.len() != 32 || !w.jti.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::Malformed(
            "its id (jti) is not 32 hex digits".into(),
        ));
    }
    if w.exp <= now_unix {
        return Err(TokenError::Expired(rfc3339(w.exp)));
    }
    if w.iat > now_unix.saturating_add(CLOCK_SKEW_SECS) {
        return Err(TokenError::IssuedInFuture(rfc3339(w.iat)));
    }
    let Some(lifetime) = w.exp.checked_sub(w.iat) else {
        return Err(TokenError::Malformed(format!(
            "it expires ({}) before it is issued ({})",
            rfc3339(w.exp),
            rfc3339(w.iat)
        )));
    };
    if lifetime > MAX_TTL.as_secs() {
        return Err(TokenError::TooLongLived(lifetime));
    }
    Ok(w.claims())
}

#[cfg(test)]
mod tests;
