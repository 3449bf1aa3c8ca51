//! The revocation list written by `pki init` / `pki revoke` / `pki crl` and read back against the
//! CA; every way a list or a certificate to revoke can be wrong.
use super::*;
use crate::pki::Role;

fn serial_of(path: &Path) -> Vec<u8> {
    let der = crate::tls::load_certs(path).unwrap().remove(0);
    X509Certificate::from_der(&der)
        .unwrap()
        .1
        .raw_serial()
        .to_vec()
}

fn list(dir: &Path) -> RevocationList {
    RevocationList::read(&dir.join(CRL_FILE), &ca_certs(dir).unwrap()).unwrap()
}

#[test]
fn init_writes_an_empty_list_and_revoke_adds_each_certificate_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki::init(dir, &[], 30).unwrap();
    pki::issue(dir, Role::Agent, "web-1", 30).unwrap();
    pki::issue(dir, Role::Operator, "alice", 30).unwrap();
    let first = list(dir);
    assert_eq!(first.revoked.len(), 0);
    let now = OffsetDateTime::now_utc().unix_timestamp() as u64 * 1000;
    assert!(first.number.abs_diff(now) < 60_000, "numbered by the time");

    let done = revoke(dir, &dir.join("web-1.pem"), Reason::Superseded).unwrap();
    assert_eq!(
        (done.name.as_str(), done.added, done.listed),
        ("web-1", true, 1)
    );
    assert_eq!(done.path, dir.join(CRL_FILE));
    let second = list(dir);
    assert!(second.number > first.number);
    let listed = |list: &RevocationList, name: &str| {
        let serial = serial_of(&dir.join(format!("{name}.pem")));
        list.revoked.iter().any(|r| r.serial == serial)
    };
    assert!(listed(&second, "web-1"));
    assert!(!listed(&second, "alice"));
    assert_eq!(second.revoked[0].reason, Some(4));
    let hex: Vec<String> = serial_of(&dir.join("web-1.pem"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(done.serial, hex.join(":"));

    // Again: nothing changes, and it says so.
    let again = revoke(dir, &dir.join("web-1.pem"), Reason::KeyCompromise).unwrap();
    assert_eq!((again.added, again.listed), (false, 1));
    assert_eq!(list(dir).number, second.number);

    // A second one keeps the first with its reason and date.
    revoke(dir, &dir.join("alice.pem"), Reason::KeyCompromise).unwrap();
    let third = list(dir);
    assert!(third.number > second.number);
    assert_eq!(third.revoked.len(), 2);
    assert_eq!(third.revoked[0], second.revoked[0]);
    assert_eq!(third.revoked[1].reason, Some(1));

    // `pki crl` signs the same entries again with the next number.
    let (path, n) = rewrite(dir).unwrap();
    assert_eq!((path, n), (dir.join(CRL_FILE), 2));
    let fourth = list(dir);
    assert!(fourth.number > third.number);
    assert_eq!(fourth.revoked, third.revoked);
}

#[test]
fn only_certificates_of_this_ca_are_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let (ours, theirs) = (tmp.path().join("ours"), tmp.path().join("theirs"));
    pki::init(&ours, &[], 30).unwrap();
    pki::init(&theirs, &[], 30).unwrap();
    pki::issue(&theirs, Role::Agent, "web-1", 30).unwrap();
    let err = revoke(&ours, &theirs.join("web-1.pem"), Reason::Unspecified)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a certificate issued by this CA"), "{err}");
    let err = revoke(&ours, &ours.join(pki::CA_CERT), Reason::Unspecified)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a certificate issued by this CA"), "{err}");
    let err = revoke(&ours, &ours.join("missing.pem"), Reason::Unspecified).unwrap_err();
    assert!(
        err.to_string()
            .contains("missing.pem: no such certificate file"),
        "{err}"
    );
    assert_eq!(list(&ours).revoked.len(), 0);
}

#[test]
fn a_list_not_signed_by_the_ca_or_not_a_list_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (ours, theirs) = (tmp.path().join("ours"), tmp.path().join("theirs"));
    pki::init(&ours, &[], 30).unwrap();
    pki::init(&theirs, &[], 30).unwrap();
    let ca = ca_certs(&ours).unwrap();
    // Same subject ("recorder CA"), another key.
    let err = RevocationList::read(&theirs.join(CRL_FILE), &ca)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not signed by the CA's key"), "{err}");

    let junk = tmp.path().join("junk.pem");
    fs::write(
        &junk,
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    )
    .unwrap();
    let err = RevocationList::read(&junk, &ca).unwrap_err().to_string();
    assert!(err.contains("not a revocation list"), "{err}");

    let two = tmp.path().join("two.pem");
    let one = fs::read_to_string(ours.join(CRL_FILE)).unwrap();
    fs::write(&two, format!("{one}{one}")).unwrap();
    let err = RevocationList::read(&two, &ca).unwrap_err().to_string();
    assert!(err.contains("holds 2 revocation lists"), "{err}");

    let none = tmp.path().join("none.pem");
    fs::write(&none, "").unwrap();
    let err = RevocationList::read(&none, &ca).unwrap_err().to_string();
    assert!(err.contains("holds 0 revocation lists"), "{err}");

    // `pki revoke` refuses to extend a list the CA did not sign.
    fs::copy(theirs.join(CRL_FILE), ours.join(CRL_FILE)).unwrap();
    pki::issue(&ours, Role::Agent, "web-1", 30).unwrap();
    let err = revoke(&ours, &ours.join("web-1.pem"), Reason::Unspecified)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not signed by the CA's key"), "{err}");
}

#[test]
fn reasons_are_read_by_their_names() {
    for name in Reason::NAMES.split(", ") {
        assert!(name.parse::<Reason>().is_ok(), "{name}");
    }
    assert!(
        "stolen"
            .parse::<Reason>()
            .unwrap_err()
            .contains("key-compromise")
    );
}
