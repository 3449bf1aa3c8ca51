//! Who may use the console: an operator certificate presented in the TLS handshake, a session
//! cookie given for an operator token at `/login`, or the token itself as a bearer (scripts).
//! Agent and collector certificates, their tokens, and everything else are refused.
//!
//! A browser sends a certificate or a cookie with any request, a cross-site one too: forms that
//! change something (approvals) carry a token only the console's own pages know ([`Auth::csrf`]).
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use http::HeaderMap;
use recorder_api::{
    client_check::ClientCheck,
    pki::{self, Role},
    token,
};
use ring::rand::{SecureRandom as _, SystemRandom};
use rustls_pki_types::CertificateDer;

/// The cookie's name.
pub(crate) const COOKIE: &str = "recorder_console";
/// A console login lasts at most this long, even for a longer token.
const MAX_LOGIN_SECS: u64 = 12 * 3600;

/// An operator let in, and how.
#[derive(Debug, Clone)]
pub(crate) struct Operator {
    pub name: String,
    /// `certificate`, `cookie` or `token`.
    pub by: &'static str,
    /// The cookie's login id (empty for the others): form tokens die with the login.
    pub login: String,
}

/// The client certificates of the connection a request came on.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerCerts(pub Arc<Vec<CertificateDer<'static>>>);

pub(crate) struct Auth {
    clients: Arc<ClientCheck>,
    logins: Mutex<HashMap<String, Login>>,
    random: SystemRandom,
    /// Signs form tokens; drawn at start (a restart makes open pages' forms stale).
    csrf: ring::hmac::Key,
}

struct Login {
    name: String,
    expires: u64,
    /// The token it was given for, checked again when a new revocation list takes effect.
    token: String,
    /// The revocation list's generation the token was last checked at.
    generation: u64,
    /// Why the login ended before its time (its token's certificate was revoked): said again
    /// to every later request with its cookie, until the login would have expired.
    ended: Option<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Auth {
    pub(crate) fn new(clients: Arc<ClientCheck>) -> Self {
        let random = SystemRandom::new();
        let csrf = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &random)
            .expect("the system's random source");
        Self {
            clients,
            logins: Mutex::new(HashMap::new()),
            random,
            csrf,
        }
    }

    /// The form token of this operator's pages: a cross-site page cannot read it, so it cannot
    /// send a form as this operator.
    pub(crate) fn csrf(&self, op: &Operator) -> String {
        let tag = ring::hmac::sign(&self.csrf, csrf_message(op).as_bytes());
        recorder_record::hex::encode(tag.as_ref())
    }

    /// Whether `token` is this operator's form token (compared in constant time).
    pub(crate) fn csrf_ok(&self, op: &Operator, token: &str) -> bool {
        recorder_record::hex::decode(token).is_some_and(|tag| {
            ring::hmac::verify(&self.csrf, csrf_message(op).as_bytes(), &tag).is_ok()
        })
    }

    /// Moves each time a new revocation list takes effect (see `ClientCheck::generation`).
    pub(crate) fn generation(&self) -> u64 {
        self.clients.generation()
    }

    /// The operator making this request; Err says why it is refused (None: no credentials).
    pub(crate) fn operator(
        &self,
        certs: &PeerCerts,
        headers: &HeaderMap,
    ) -> Result<Option<Operator>, String> {
        if !certs.0.is_empty() {
            return self.by_certificate(&certs.0).map(Some);
        }
        if let Some(token) = bearer(headers) {
            let claims = self.verify(token)?;
            return Ok(Some(Operator {
                name: claims.name,
                by: "token",
                login: String::new(),
            }));
        }
        if let Some(id) = cookie(headers) {
            let mut logins = self
                .logins
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = now();
            logins.retain(|_, l| l.expires > now);
            let Some(login) = logins.get_mut(id) else {
                return Err("the console session expired or is unknown: log in again".into());
            };
            // A revocation since the login ends it: its token's certificate is checked again.
            let generation = self.clients.generation();
            if login.ended.is_none() && login.generation != generation {
                match self.verify(&login.token) {
                    Ok(_) => login.generation = generation,
                    Err(why) => login.ended = Some(format!("the console session ended: {why}")),
                }
            }
            if let Some(why) = &login.ended {
                return Err(why.clone());
            }
            return Ok(Some(Operator {
                name: login.name.clone(),
                by: "cookie",
                login: id.to_string(),
            }));
        }
        Ok(None)
    }

    fn by_certificate(&self, certs: &[CertificateDer<'static>]) -> Result<Operator, String> {
        self.clients.check(certs)?;
        let first = certs.first().ok_or("no client certificate")?;
        let peer = pki::peer_of(first).map_err(|e| e.to_string())?;
        if peer.role != Role::Operator {
            return Err(format!(
                "certificate {:?} has role {}: the console is for operator certificates",
                peer.name, peer.role
            ));
        }
        Ok(Operator {
            name: peer.name,
            by: "certificate",
            login: String::new(),
        })
    }

    /// Exchanges a token for a login; returns the cookie's value, the operator and its lifetime.
    pub(crate) fn login(&self, token: &str) -> Result<(String, String, u64), String> {
        let generation = self.clients.generation();
        let claims = self.verify(token.trim())?;
        let now = now();
        let lifetime = claims.expires.saturating_sub(now).min(MAX_LOGIN_SECS);
        let mut id = [0u8; 32];
        self.random
            .fill(&mut id)
            .map_err(|_| "no randomness for a session id".to_string())?;
        let id = recorder_record::hex::encode(&id);
        self.logins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                id.clone(),
                Login {
                    name: claims.name.clone(),
                    expires: now + lifetime,
                    token: token.trim().to_string(),
                    generation,
                    ended: None,
                },
            );
        Ok((id, claims.name, lifetime))
    }

    /// A token checked now, with the revocation list in force.
    fn verify(&self, token: &str) -> Result<token::Claims, String> {
        token::verify(token, self.clients.verifier().as_ref(), now())
            .map_err(|e| format!("the token is refused: {e}"))
    }

    pub(crate) fn logout(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            self.logins
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(id);
        }
    }
}

fn csrf_message(op: &Operator) -> String {
    format!("csrf\0{}\0{}\0{}", op.by, op.name, op.login)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// The `Set-Cookie` value of a login (or, with `max_age` 0, of a logout).
pub(crate) fn set_cookie(id: &str, max_age: u64) -> String {
    format!("{COOKIE}={id}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict")
}
