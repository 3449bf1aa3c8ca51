//! The log on PostgreSQL, for a group of collectors that share one database.
//!
//! One log, several writers: every collector inserts the batches it receives as they come
//! (the agent is acknowledged once that transaction committed; the unique (host, boot, seq)
//! drops a batch sent again to another collector), and one of them, the sequencer, places
//! them: in one transaction it gives each waiting record its log index, hash-chain link and
//! Merkle leaf, stores the tree nodes they complete, and signs the new tree head. The
//! sequencer holds a lease renewed every second; when it dies another collector takes the
//! lease within [`LEASE`] and goes on from the stored head. Correctness never rests on the
//! lease: each round locks the head row, so two sequencers would only take turns.
//!
//! Nothing grows in memory with the log: the frontier is read from the head row, proofs read
//! O(log n) stored nodes, `verify` streams the records of one snapshot.
mod columns;
mod ingest;
mod migrate;
mod prune;
mod read;
mod schema;
mod sequencer;
mod unplaced;
mod verify;

use std::{path::Path, sync::Arc, time::Duration};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use recorder_store::{
    CheckpointPolicy,
    integrity::checkpoint::{CheckpointError, Signer},
};
use rustls_pki_types::{CertificateDer, pem::PemObject as _};
use tokio_postgres_rustls::MakeRustlsConnect;

pub use ingest::Appended;
pub use migrate::Migrated;
pub use sequencer::{LEASE, Sequencer};
pub use verify::Verified;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("PostgreSQL: {0}")]
    Db(String),
    #[error("{0} is not a PostgreSQL connection string: {1}")]
    Url(String, String),
    #[error(
        "the database holds schema version {found}; this collector knows versions up to {known}: run the newer collector"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error(
        "this collector's signing key ({mine}) is not the group's ({theirs}): every collector writing to one database signs with the same key (copy checkpoint-key.p8 from the data directory of the first)"
    )]
    KeyMismatch { mine: String, theirs: String },
    #[error("record with sequence {sequence}: {why}")]
    BadRecord { sequence: u64, why: String },
    #[error("log index {0} is not stored")]
    NoSuchRecord(u64),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(
        "the database has no recorder log (no schema_migrations table): is this the right database?"
    )]
    NotALog,
    #[error("opened to read only: this collector cannot sequence")]
    ReadOnly,
    #[error("migrate: {0}")]
    Migrate(String),
    #[error("TLS to the database: {0}")]
    Tls(String),
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's message (and its detail) says more than the client's wrapper.
        match e.as_db_error() {
            Some(db) => PgError::Db(match db.detail() {
                Some(detail) => format!("{} ({detail})", db.message()),
                None => db.message().to_string(),
            }),
            None => PgError::Db(error_chain(&e)),
        }
    }
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => PgError::Db(format!("connection pool: {other}")),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Whether a `--store` value names a PostgreSQL database.
pub fn is_postgres_url(store: &str) -> bool {
    store.starts_with("postgres://") || store.starts_with("postgresql://")
}

/// The log in one PostgreSQL database, as one collector of the group sees it.
#[derive(Clone)]
pub struct PgLog {
    pool: Pool,
    /// The key checkpoints are checked against.
    public_key: Vec<u8>,
    /// The group's signing key: a collector has it, a reader (`verify --store`) does not.
    signer: Option<Arc<Signer>>,
    policy: CheckpointPolicy,
    /// The records this collector stored and its sequencer has yet to place.
    unplaced: Arc<unplaced::Unplaced>,
}

/// The CAs trusted for the database's certificate when none is given.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The TLS files a connection string may name, with libpq's parameter names (which
/// tokio-postgres does not take): `sslrootcert` (the server's CA), `sslcert` and `sslkey` (a
/// client certificate, for servers whose `pg_hba.conf` says `cert` or `clientcert=verify-full`).
#[derive(Debug, Default, PartialEq, Eq)]
struct TlsFiles {
    root: Option<std::path::PathBuf>,
    cert: Option<std::path::PathBuf>,
    key: Option<std::path::PathBuf>,
}

/// Splits the TLS file parameters off a `postgres://` URL.
fn tls_files(url: &str) -> (String, TlsFiles) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), TlsFiles::default());
    };
    let mut files = TlsFiles::default();
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("sslrootcert", v)) => files.root = Some(v.into()),
            Some(("sslcert", v)) => files.cert = Some(v.into()),
            Some(("sslkey", v)) => files.key = Some(v.into()),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, files)
}

/// TLS to the database, as the connection string's `sslmode` asks (`prefer` by default,
/// `require`, `disable`). When TLS is used the server's certificate is always checked: against
/// `ca` (PEM; or the URL's `sslrootcert`), else the system's CAs, and for the host name
/// connected to. With `sslcert` and `sslkey` the collector shows its own certificate.
fn tls(ca: Option<&Path>, files: &TlsFiles) -> Result<MakeRustlsConnect, PgError> {
    if ca.is_some() && files.root.is_some() {
        return Err(PgError::Tls(
            "the CA is given twice (--store-ca and sslrootcert): give one".into(),
        ));
    }
    let ca = ca.or(files.root.as_deref());
    let path = ca.unwrap_or(Path::new(SYSTEM_ROOTS));
    let mut roots = rustls::RootCertStore::empty();
    match std::fs::read(path) {
        Ok(pem) => {
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| PgError::Tls(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| PgError::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        // No system bundle: TLS then fails on its first handshake, and says so.
        Err(e) if ca.is_none() && e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(PgError::Tls(format!("{}: {e}", path.display()))),
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| PgError::Tls(e.to_string()))?
    .with_root_certificates(roots);
    let config = match (&files.cert, &files.key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let bad =
                |p: &Path, e: &dyn std::fmt::Display| PgError::Tls(format!("{}: {e}", p.display()));
            let pem = std::fs::read(cert).map_err(|e| bad(cert, &e))?;
            let chain = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(cert, &e))?;
            let key_der =
                rustls_pki_types::PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| bad(cert, &e))?
        }
        _ => {
            return Err(PgError::Tls(
                "sslcert and sslkey go together: give both, or neither".into(),
            ));
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

fn pool(url: &str, ca: Option<&Path>) -> Result<Pool, PgError> {
    let (stripped, files) = tls_files(url);
    let config: tokio_postgres::Config = stripped
        .parse()
        .map_err(|e: tokio_postgres::Error| PgError::Url(redact(url), e.to_string()))?;
    let manager = Manager::from_config(
        config,
        tls(ca, &files)?,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(8)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| PgError::Db(format!("connection pool: {e}")))
}

impl PgLog {
    /// Connects (`ca`: the CA of the database's certificate, see [`tls`]), brings the schema up
    /// to date and checks that `signer` is the group's key (the first collector to start
    /// records its public half).
    pub async fn open(
        url: &str,
        ca: Option<&Path>,
        signer: Signer,
        policy: CheckpointPolicy,
    ) -> Result<Self, PgError> {
        let log = Self {
            pool: pool(url, ca)?,
            public_key: signer.public_key(),
            signer: Some(Arc::new(signer)),
            policy,
            unplaced: Arc::default(),
        };
        let signer = log.signer()?;
        let mut client = log.pool.get().await?;
        schema::migrate(&mut client).await?;
        log.claim_key(&client).await?;
        sequencer::init_head(&client, &signer).await?;
        Ok(log)
    }

    /// Connects to read only (an auditor's `verify --store`): changes nothing in the database.
    /// Checkpoints are checked against `public_key`, or, when none is given, against the key
    /// the database names (which proves less: whoever can change the database can change it;
    /// the second value says which was used).
    pub async fn open_to_read(
        url: &str,
        ca: Option<&Path>,
        public_key: Option<Vec<u8>>,
    ) -> Result<(Self, bool), PgError> {
        let pool = pool(url, ca)?;
        let client = pool.get().await?;
        let has_log = client
            .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
            .await?
            .get::<_, bool>(0);
        if !has_log {
            return Err(PgError::NotALog);
        }
        let pinned = public_key.is_some();
        let public_key = if let Some(k) = public_key {
            k
        } else {
            let hex: String = client
                .query_one("SELECT public_key FROM signing_key WHERE id = 1", &[])
                .await?
                .get(0);
            recorder_record::hex::decode(&hex).unwrap_or_default()
        };
        drop(client);
        Ok((
            Self {
                pool,
                public_key,
                signer: None,
                policy: CheckpointPolicy::default(),
                unplaced: Arc::default(),
            },
            pinned,
        ))
    }

    pub(crate) fn signer(&self) -> Result<Arc<Signer>, PgError> {
        self.signer.clone().ok_or(PgError::ReadOnly)
    }

    async fn claim_key(&self, client: &tokio_postgres::Client) -> Result<(), PgError> {
        let mine = recorder_record::hex::encode(&self.public_key);
        client
            .execute(
                "INSERT INTO signing_key (id, public_key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
                &[&mine],
            )
            .await?;
        let theirs: String = client
            .query_one("SELECT public_key FROM signing_key WHERE id = 1", &[])
            .await?
            .get(0);
        if theirs == mine {
            Ok(())
        } else {
            Err(PgError::KeyMismatch { mine, theirs })
        }
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.public_key.clone()
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, PgError> {
        Ok(self.pool.get().await?)
    }
}

/// The connection string with its password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://rec:s3cret@db:5432/log"),
            "postgres://rec:***@db:5432/log"
        );
        assert_eq!(redact("postgres://rec@db/log"), "postgres://rec@db/log");
        assert!(is_postgres_url("postgresql://x/y"));
        assert!(!is_postgres_url("/var/lib/recorder"));
    }
}

#[cfg(test)]
mod tls_tests {
    use super::*;

    #[test]
    fn libpq_tls_parameters_are_taken_off_the_url() {
        let (url, files) = tls_files(
            "postgres://rec@db:5432/recorder?sslmode=verify-full&sslrootcert=/ca.pem&sslcert=/c.pem&sslkey=/k.pem&application_name=x",
        );
        assert_eq!(
            url,
            "postgres://rec@db:5432/recorder?sslmode=verify-full&application_name=x"
        );
        assert_eq!(
            files,
            TlsFiles {
                root: Some("/ca.pem".into()),
                cert: Some("/c.pem".into()),
                key: Some("/k.pem".into()),
            }
        );
        assert_eq!(tls_files("postgres://db/r").0, "postgres://db/r");
        assert_eq!(tls_files("postgres://db/r?sslcert=/c").0, "postgres://db/r");
        let half = TlsFiles {
            cert: Some("/c.pem".into()),
            ..TlsFiles::default()
        };
        assert!(tls(None, &half).is_err());
    }
}
