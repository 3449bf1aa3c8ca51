//! Tokens issued and checked against a real PKI; every way a token can be wrong.
use std::{fs, sync::Arc};

use super::*;

const HOUR: Duration = Duration::from_hours(1);

/// A CA with an operator `alice` and an agent `web-1`, and its verifier.
fn setup() -> (tempfile::TempDir, Arc<dyn ClientCertVerifier>) {
    let dir = tempfile::tempdir().unwrap();
    pki::init(dir.path(), &[], 30).unwrap();
    pki::issue(dir.path(), Role::Operator, "alice", 30).unwrap();
    pki::issue(dir.path(), Role::Agent, "web-1", 30).unwrap();
    let verifier = crate::client_check::ClientCheck::load(&dir.path().join(pki::CA_CERT), None)
        .unwrap()
        .verifier();
    (dir, verifier)
}

fn files(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    )
}

/// A token for `name`'s certificate and key with the claims `wire`, no checks at all.
fn forge(dir: &Path, name: &str, wire: &Wire) -> String {
    let (cert, key) = files(dir, name);
    let der = tls::load_certs(&cert).unwrap().remove(0);
    let rng = SystemRandom::new();
    let signer = Signer::load(Alg::P256, &tls::load_key(&key).unwrap(), &key, &cert, &rng).unwrap();
    encode(wire, &der, &signer, &rng).unwrap()
}

fn wire(name: &str, iat: u64, exp: u64) -> Wire {
    Wire {
        sub: name.into(),
        role: "operator".into(),
        aud: AUDIENCE.into(),
        iat,
        exp,
        jti: "00112233445566778899aabbccddeeff".into(),
    }
}

#[test]
fn round_trip_names_the_operator() {
    let (dir, verifier) = setup();
    let (cert, key) = files(dir.path(), "alice");
    let token = issue(&cert, &key, 8 * HOUR).unwrap();
    assert!(token.starts_with("rct1."));
    assert_eq!(token.split('.').count(), 4);
    let now = now_unix();
    let claims = verify(&token, verifier.as_ref(), now).unwrap();
    assert_eq!(claims.name, "alice");
    assert_eq!(claims.expires - claims.issued, 8 * 3600);
    assert!(claims.issued.abs_diff(now) < 60);
    assert_eq!(claims.id.len(), 32);
    assert_eq!(read_unverified(&token).unwrap(), claims);
    // Surrounding whitespace (a pasted line) is fine.
    let pasted = format!(" {token}\n");
    assert_eq!(verify(&pasted, verifier.as_ref(), now).unwrap(), claims);
    // Two tokens differ by their ids.
    let other = issue(&cert, &key, 8 * HOUR).unwrap();
    assert_ne!(
        verify(&other, verifier.as_ref(), now).unwrap().id,
        claims.id
    );
}

#[test]
fn agent_certificates_are_refused() {
    let (dir, verifier) = setup();
    let (cert, key) = files(dir.path(), "web-1");
    let err = issue(&cert, &key, HOUR).unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::NotOperator {
                role: Role::Agent,
                ..
            }
        ),
        "{err}"
    );
    let now = now_unix();
    let token = forge(dir.path(), "web-1", &wire("web-1", now, now + 3600));
    let err = verify(&token, verifier.as_ref(), now).unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::NotOperator {
                role: Role::Agent,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("the console is for operator"));
}

#[test]
fn expired_tokens_are_refused() {
    let (dir, verifier) = setup();
    let (cert, key) = files(dir.path(), "alice");
    let token = issue(&cert, &key, HOUR).unwrap();
    let claims = read_unverified(&token).unwrap();
    let err = verify(&token, verifier.as_ref(), claims.expires).unwrap_err();
    assert!(matches!(err, TokenError::Expired(_)), "{err}");
    assert_eq!(
        err.to_string(),
        format!("the token expired at {}", rfc3339(claims.expires))
    );
    let err = verify(&token, verifier.as_ref(), now_unix() + 2 * 3600).unwrap_err();
    assert!(matches!(err, TokenError::Expired(_)), "{err}");
}

#[test]
fn changed_claims_are_refused() {
    let (dir, verifier) = setup();
    let (cert, key) = files(dir.path(), "alice");
    let token = issue(&cert, &key, HOUR).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
    // One digit of `exp` (the JSON's last number before `"jti"`), pushed up by one.
    let at = claims.windows(6).position(|w| w == b"\"jti\":").unwrap() - 2;
    assert!(claims[at].is_ascii_digit());
    claims[at] = if claims[at] == b'9' {
        b'8'
    } else {
        claims[at] + 1
    };
    let changed = format!(
        "rct1.{}.{}.{}",
        URL_SAFE_NO_PAD.encode(&claims),
        parts[2],
        parts[3]
    );
    let err = verify(&changed, verifier.as_ref(), now_unix()).unwrap_err();
    assert!(matches!(err, TokenError::BadSignature), "{err}");
    assert_eq!(
        err.to_string(),
        "the token is not signed by its certificate's key"
    );
    // Another operator's signature over the same claims does not do either.
    pki::issue(dir.path(), Role::Operator, "bob", 30).unwrap();
    let bob = issue(
        &dir.path().join("bob.pem"),
        &dir.path().join("bob-key.pem"),
        HOUR,
    )
    .unwrap();
    let swapped = format!(
        "rct1.{}.{}.{}",
        parts[1],
        parts[2],
        bob.rsplit('.').next().unwrap()
    );
    let err = verify(&swapped, verifier.as_ref(), now_unix()).unwrap_err();
    assert!(matches!(err, TokenError::BadSignature), "{err}");
}

#[test]
fn claims_that_do_not_fit_are_refused() {
    let (dir, verifier) = setup();
    let now = now_unix();
    let check = |w: &Wire| verify(&forge(dir.path(), "alice", w), verifier.as_ref(), now);
    assert_eq!(check(&wire("alice", now, now + 60)).unwrap().name, "alice");
    let err = check(&wire("bob", now, now + 60)).unwrap_err();
    assert!(matches!(err, TokenError::WrongSubject { .. }), "{err}");
    let mut w = wire("alice", now, now + 60);
    w.aud = "elsewhere".into();
    let err = check(&w).unwrap_err();
    assert!(matches!(err, TokenError::WrongAudience(_)), "{err}");
    let mut w = wire("alice", now, now + 60);
    w.role = "agent".into();
    let err = check(&w).unwrap_err();
    assert!(matches!(err, TokenError::WrongRole(_)), "{err}");
    let err = check(&wire("alice", now + 3600, now + 7200)).unwrap_err();
    assert!(matches!(err, TokenError::IssuedInFuture(_)), "{err}");
    check(&wire("alice", now + 200, now + 7200)).unwrap();
    let err = check(&wire("alice", now - 1, now + 31 * 24 * 3600)).unwrap_err();
    assert!(matches!(err, TokenError::TooLongLived(_)), "{err}");
    let err = check(&wire("alice", now + 100, now + 50)).unwrap_err();
    assert!(matches!(err, TokenError::Malformed(_)), "{err}");
    let mut w = wire("alice", now, now + 60);
    w.jti = "x".into();
    let err = check(&w).unwrap_err();
    assert!(matches!(err, TokenError::Malformed(_)), "{err}");
}

#[test]
fn tokens_of_another_ca_are_refused() {
    let (_dir, verifier) = setup();
    let other = tempfile::tempdir().unwrap();
    pki::init(other.path(), &[], 30).unwrap();
    pki::issue(other.path(), Role::Operator, "alice", 30).unwrap();
    let (cert, key) = files(other.path(), "alice");
    let token = issue(&cert, &key, HOUR).unwrap();
    let err = verify(&token, verifier.as_ref(), now_unix()).unwrap_err();
    assert!(matches!(err, TokenError::Refused(_)), "{err}");
    assert!(err.to_string().contains("not issued by"), "{err}");
}

#[test]
fn issue_checks_the_key_and_the_lifetime() {
    let (dir, _verifier) = setup();
    let (cert, key) = files(dir.path(), "alice");
    let (_, agent_key) = files(dir.path(), "web-1");
    let err = issue(&cert, &agent_key, HOUR).unwrap_err();
    assert!(matches!(err, TokenError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("is not the private key of"));
    for ttl in [
        Duration::ZERO,
        Duration::from_millis(500),
        MAX_TTL + Duration::from_secs(1),
    ] {
        let err = issue(&cert, &key, ttl).unwrap_err();
        assert!(matches!(err, TokenError::Lifetime(_)), "{err}");
    }
    // The CA's certificate is not an operator certificate.
    let err = issue(
        &dir.path().join(pki::CA_CERT),
        &dir.path().join(pki::CA_KEY),
        HOUR,
    )
    .unwrap_err();
    assert!(matches!(err, TokenError::Certificate { .. }), "{err}");
    let err = issue(&dir.path().join("nope.pem"), &key, HOUR).unwrap_err();
    assert!(matches!(err, TokenError::Read(_)), "{err}");
    // A token outliving its certificate is cut to the certificate's expiry.
    pki::issue(dir.path(), Role::Operator, "dave", 1).unwrap();
    let (cert, key) = files(dir.path(), "dave");
    let token = issue(&cert, &key, MAX_TTL).unwrap();
    let claims = read_unverified(&token).unwrap();
    assert!(claims.expires - claims.issued <= 24 * 3600);
}

#[test]
fn ed25519_keys_sign_tokens_too() {
    let (dir, verifier) = setup();
    let issuer = pki::load_issuer(dir.path()).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = pki::leaf_params(Role::Operator, "carol", &[], 30)
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let (cert_path, key_path) = files(dir.path(), "carol");
    fs::write(&cert_path, cert.pem()).unwrap();
    fs::write(&key_path, key.serialize_pem()).unwrap();
    let token = issue(&cert_path, &key_path, HOUR).unwrap();
    assert_eq!(
        verify(&token, verifier.as_ref(), now_unix()).unwrap().name,
        "carol"
    );
    let err = issue(&cert_path, &dir.path().join("alice-key.pem"), HOUR).unwrap_err();
    assert!(matches!(err, TokenError::KeyMismatch { .. }), "{err}");
}

#[test]
fn garbage_gives_errors() {
    let (dir, verifier) = setup();
    let (cert, key) = files(dir.path(), "alice");
    let token = issue(&cert, &key, HOUR).unwrap();
    let now = now_unix();
    let mut inputs: Vec<String> = [
        "",
        " \n",
        "rct1",
        "rct1.",
        "rct1..",
        "rct1...",
        "rct1....",
        "rct2.a.b.c",
        "rct1.a.b",
        "rct1.!!!.b.c",
        "rct1.e30.e30.e30",
        "rct1.é.é.é",
        "eyJhbGciOiJIUzI1NiJ9.e30.abc",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    inputs.push("a".repeat(20 * 1024));
    inputs.push(format!("rct1.{}", "A".repeat(20 * 1024)));
    inputs.push(format!("{token}."));
    inputs.push(format!("{token}A"));
    inputs.push(token[..token.len() - 10].to_string());
    inputs.push(token.replacen("rct1.", "rct1.A", 1));
    let rng = SystemRandom::new();
    for n in [0, 1, 2, 3, 16, 100, 1000] {
        let part = || {
            let mut bytes = vec![0u8; n];
            rng.fill(&mut bytes).unwrap();
            URL_SAFE_NO_PAD.encode(bytes)
        };
        inputs.push(format!("rct1.{}.{}.{}", part(), part(), part()));
        inputs.push(part());
    }
    let parts: Vec<&str> = token.split('.').collect();
    // Claims that are JSON, but of something else.
    for json in ["{}", "[]", "null", "{\"sub\":1}", "{\"sub\":\"alice\"}"] {
        inputs.push(format!(
            "rct1.{}.{}.{}",
            URL_SAFE_NO_PAD.encode(json),
            parts[2],
            parts[3]
        ));
    }
    for input in &inputs {
        let err = verify(input, verifier.as_ref(), now).unwrap_err();
        assert!(!err.to_string().is_empty());
    }
    let err = verify(&"a".repeat(20 * 1024), verifier.as_ref(), now).unwrap_err();
    assert!(matches!(err, TokenError::TooLong(20480)), "{err}");
    let err = verify("", verifier.as_ref(), now).unwrap_err();
    assert_eq!(
        err.to_string(),
        "this is not a valid console token: it is empty"
    );
}

#[test]
fn times_read_as_rfc3339() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_796_479_200), "2026-12-05T14:00:00Z");
    assert_eq!(rfc3339(u64::MAX), format!("unix time {}", u64::MAX));
}
