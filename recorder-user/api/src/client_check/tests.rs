//! The client check against a real PKI while its revocation list changes underneath it.
use std::fs;

use super::*;
use crate::{
    pki::{self, Role},
    revocation::{self, CRL_FILE, Reason},
    token,
};

fn cert(dir: &Path, name: &str) -> Vec<CertificateDer<'static>> {
    tls::load_certs(&dir.join(format!("{name}.pem"))).unwrap()
}

fn setup() -> (tempfile::TempDir, ClientCheck) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki::init(dir, &[], 30).unwrap();
    pki::issue(dir, Role::Agent, "web-1", 30).unwrap();
    pki::issue(dir, Role::Operator, "alice", 30).unwrap();
    let check = ClientCheck::load(&dir.join(pki::CA_CERT), Some(&dir.join(CRL_FILE))).unwrap();
    (tmp, check)
}

#[test]
fn a_revocation_takes_effect_at_the_next_reload() {
    let (tmp, check) = setup();
    let dir = tmp.path();
    check.check(&cert(dir, "web-1")).unwrap();
    assert_eq!((check.generation(), check.revoked()), (0, 0));
    assert_eq!(check.reload().unwrap(), None, "nothing changed");

    revocation::revoke(dir, &dir.join("web-1.pem"), Reason::KeyCompromise).unwrap();
    check.check(&cert(dir, "web-1")).unwrap();
    assert_eq!(check.reload().unwrap(), Some(1));
    assert_eq!((check.generation(), check.revoked()), (1, 1));
    let why = check.check(&cert(dir, "web-1")).unwrap_err();
    assert!(why.contains("revoked"), "{why}");
    check.check(&cert(dir, "alice")).unwrap();
    assert_eq!(check.reload().unwrap(), None);

    // A token signed with a revoked operator certificate is refused with its certificate.
    let token = token::issue(
        &dir.join("alice.pem"),
        &dir.join("alice-key.pem"),
        std::time::Duration::from_mins(10),
    )
    .unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    token::verify(&token, check.verifier().as_ref(), now).unwrap();
    revocation::revoke(dir, &dir.join("alice.pem"), Reason::Unspecified).unwrap();
    assert_eq!(check.reload().unwrap(), Some(2));
    let err = token::verify(&token, check.verifier().as_ref(), now)
        .unwrap_err()
        .to_string();
    assert!(err.contains("revoked"), "{err}");
}

#[test]
fn a_bad_or_missing_list_keeps_the_one_in_force_and_is_reported_once() {
    let (tmp, check) = setup();
    let dir = tmp.path();
    revocation::revoke(dir, &dir.join("web-1.pem"), Reason::Unspecified).unwrap();
    assert_eq!(check.reload().unwrap(), Some(1));

    // Another CA's list (same subject, other key) written over it.
    let other = tmp.path().join("other");
    pki::init(&other, &[], 30).unwrap();
    fs::copy(other.join(CRL_FILE), dir.join("replacement")).unwrap();
    fs::rename(dir.join("replacement"), dir.join(CRL_FILE)).unwrap();
    let err = check.reload().unwrap_err().to_string();
    assert!(err.contains("not signed by the CA's key"), "{err}");
    assert!(
        check.check(&cert(dir, "web-1")).is_err(),
        "the old list stays"
    );
    assert_eq!(check.generation(), 1);
    assert_eq!(check.reload().unwrap(), None, "reported once");

    fs::remove_file(dir.join(CRL_FILE)).unwrap();
    let err = check.reload().unwrap_err().to_string();
    assert!(err.contains("gone"), "{err}");
    assert!(
        check.check(&cert(dir, "web-1")).is_err(),
        "the old list stays"
    );
    assert_eq!(check.reload().unwrap(), None);

    // A new list, started without the lost one, takes effect: numbered by the clock, it is
    // still higher (the lost one was numbered at most a millisecond ahead).
    std::thread::sleep(std::time::Duration::from_millis(5));
    revocation::revoke(dir, &dir.join("alice.pem"), Reason::Unspecified).unwrap();
    assert_eq!(check.reload().unwrap(), Some(1));
    check.check(&cert(dir, "web-1")).unwrap();
    assert!(check.check(&cert(dir, "alice")).is_err());
}

#[test]
fn an_older_list_put_back_is_refused() {
    let (tmp, check) = setup();
    let dir = tmp.path();
    revocation::revoke(dir, &dir.join("web-1.pem"), Reason::Unspecified).unwrap();
    fs::copy(dir.join(CRL_FILE), dir.join("kept.pem")).unwrap();
    revocation::revoke(dir, &dir.join("alice.pem"), Reason::Unspecified).unwrap();
    assert_eq!(check.reload().unwrap(), Some(2));
    fs::rename(dir.join("kept.pem"), dir.join(CRL_FILE)).unwrap();
    let err = check.reload().unwrap_err().to_string();
    assert!(err.contains("lower than the list's in force"), "{err}");
    assert!(check.check(&cert(dir, "alice")).is_err(), "still revoked");
    assert_eq!(check.revoked(), 2);
}

#[test]
fn a_list_the_ca_did_not_sign_stops_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let (ours, theirs) = (tmp.path().join("ours"), tmp.path().join("theirs"));
    pki::init(&ours, &[], 30).unwrap();
    pki::init(&theirs, &[], 30).unwrap();
    let err = ClientCheck::load(&ours.join(pki::CA_CERT), Some(&theirs.join(CRL_FILE)))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not signed by the CA's key"), "{err}");
    let err = ClientCheck::load(&ours.join(pki::CA_CERT), Some(&ours.join("nope.pem")))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("nope.pem"), "{err}");
    // Without a list, nothing is revoked and nothing reloads.
    let check = ClientCheck::load(&ours.join(pki::CA_CERT), None).unwrap();
    assert_eq!((check.reload().unwrap(), check.revoked()), (None, 0));
}
