//! `recorder pki`: a CA and certificates for a first install.
use std::path::PathBuf;

use clap::{Args, Subcommand};

use recorder_api::pki::{self, Role};
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

  # the signing key a group of collectors on PostgreSQL shares (one collector on its own
  # makes its key in its data directory at first start)
  recorder pki signing-key --dir group-key

Keep ca-key.pem offline once the certificates are issued. The role is the certificate's OU
(agent, operator), the name its CN; the collector reads both from the verified certificate.")]
pub(crate) struct PkiArgs {
    #[command(subcommand)]
    pub command: PkiCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PkiCommand {
    /// Create the CA (ca.pem, ca-key.pem) and the collector's certificate (collector.pem,
    /// collector-key.pem).
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
    /// Create the key that signs the log's checkpoints (checkpoint-key.p8, and its public half
    /// checkpoint-key.pub for auditors) in DIR, for a group of collectors on PostgreSQL: each
    /// collector of the group gets a copy in its data directory. An existing key is kept.
    SigningKey {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
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
