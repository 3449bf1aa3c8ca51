//! `recorder pki`: a CA and certificates for a first install.
use std::path::PathBuf;

use clap::{Args, Subcommand};

use recorder_api::{
    pki::{self, Role},
    revocation::{self, Reason},
};
use recorder_store::integrity::checkpoint;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  # the CA and the collector's certificate (valid for localhost, 127.0.0.1 and collector.example)
  recorder pki init --dir /etc/recorder/pki --san collector.example

  # one certificate per agent host: its name must be the host name the agent records
  recorder pki issue --dir /etc/recorder/pki --role agent --name web-1

  # an operator certificate, for sessions / replay / watch / verify / export
  recorder pki issue --dir /etc/recorder/pki --role operator --name alice

  # take a certificate back (a host retired, a key stolen): crl.pem names it, and every
  # collector started with --tls-crl refuses it within seconds
  recorder pki revoke --dir /etc/recorder/pki --name web-1 --reason key-compromise

  # the signing key a group of collectors on PostgreSQL shares (one collector on its own
  # makes its key in its data directory at first start)
  recorder pki signing-key --dir group-key

Keep ca-key.pem offline once the certificates are issued (revoking needs it too). The role is the certificate's OU
(agent, operator), the name its CN; the collector reads both from the verified certificate.")]
pub(crate) struct PkiArgs {
    #[command(subcommand)]
    pub command: PkiCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PkiCommand {
    /// Create the CA (ca.pem, ca-key.pem), its empty revocation list (crl.pem) and the
    /// collector's certificate (collector.pem, collector-key.pem).
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// More names or IP addresses the collector is reached by (repeatable).
        #[arg(long, value_name = "NAME")]
        san: Vec<String>,
        /// Validity of the collector certificate in days (the CA gets at least 10 years).
        #[arg(long, default_value_t = 825)]
        days: i64,
    },
    /// Issue an agent or operator certificate: NAME.pem and NAME-key.pem in DIR.
    Issue {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// agent (may only send records, for the host NAME) or operator (may only read).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The host name (agent) or the person's name (operator).
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 825)]
        days: i64,
    },
    /// Revoke a certificate the CA issued: add it to the CA's revocation list (DIR/crl.pem,
    /// signed with DIR/ca-key.pem) and write the list again. Give the list to every collector
    /// (--tls-crl): they refuse the certificate within seconds of the file's change, end the
    /// streams it holds open, and refuse console tokens signed with it.
    Revoke {
        /// The CA's directory (ca.pem, ca-key.pem, crl.pem).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The certificate's name: DIR/NAME.pem, as `pki issue` wrote it.
        #[arg(long, conflicts_with = "cert", required_unless_present = "cert")]
        name: Option<String>,
        /// The certificate's file (PEM), wherever it is.
        #[arg(long, value_name = "FILE")]
        cert: Option<PathBuf>,
        /// Why: unspecified, key-compromise, superseded, cessation-of-operation or
        /// affiliation-changed.
        #[arg(long, default_value = "unspecified", value_parser = parse_reason)]
        reason: Reason,
    },
    /// Write the CA's revocation list (DIR/crl.pem) again with a new number: an empty one for a
    /// CA made before `pki init` wrote it, or the same certificates signed again.
    Crl {
        /// The CA's directory (ca.pem, ca-key.pem, crl.pem).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Create the key that signs the log's checkpoints (checkpoint-key.p8, and its public half
    /// checkpoint-key.pub for auditors) in DIR, for a group of collectors on PostgreSQL: each
    /// collector of the group gets a copy in its data directory. An existing key is kept.
    SigningKey {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

fn parse_reason(s: &str) -> Result<Reason, String> {
    s.parse()
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s.parse()? {
        Role::Collector => Err("the collector certificate is made by `pki init`".into()),
        r => Ok(r),
    }
}

pub(crate) fn run(args: PkiArgs) -> anyhow::Result<()> {
    let files = match args.command {
        PkiCommand::Init { dir, san, days } => pki::init(&dir, &san, days)?,
        PkiCommand::Issue {
            dir,
            role,
            name,
            days,
        } => pki::issue(&dir, role, &name, days)?,
        PkiCommand::Revoke {
            dir,
            name,
            cert,
            reason,
        } => {
            let cert =
                cert.unwrap_or_else(|| dir.join(format!("{}.pem", name.unwrap_or_default())));
            let done = revocation::revoke(&dir, &cert, reason)?;
            if done.added {
                println!(
                    "revoked {} (serial {}); {} now names {} certificate(s): collectors given it \
                     with --tls-crl refuse it within seconds",
                    done.name,
                    done.serial,
                    done.path.display(),
                    done.listed
                );
            } else {
                println!(
                    "{} (serial {}) is revoked already; {} is unchanged",
                    done.name,
                    done.serial,
                    done.path.display()
                );
            }
            return Ok(());
        }
        PkiCommand::Crl { dir } => {
            let (path, listed) = revocation::rewrite(&dir)?;
            println!("wrote {} ({listed} certificate(s) revoked)", path.display());
            return Ok(());
        }
        PkiCommand::SigningKey { dir } => {
            let key = dir.join(checkpoint::KEY_FILE);
            let existed = key.is_file();
            std::fs::create_dir_all(&dir)?;
            checkpoint::Signer::load_or_create(&dir)?;
            if existed {
                println!("kept {} (it exists)", key.display());
                return Ok(());
            }
            vec![key, dir.join(checkpoint::PUBLIC_KEY_FILE)]
        }
    };
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
