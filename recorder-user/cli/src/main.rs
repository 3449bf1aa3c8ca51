//! The `recorder` command: the host agent, the collector, and the operator commands. One module
//! per subcommand; each parses its flags and calls one entry point of the crate that does the
//! work (`recorder-agent`, `recorder-collector`, the collector's gRPC API).
mod agent;
mod alerts;
mod approvals;
mod archive;
mod bench;
mod client;
mod collector;
mod evidence;
mod export;
mod migrate;
mod pki;
mod prove;
mod replay;
mod sessions;
mod ship;
mod token;
mod verify;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Records what AI agent processes run on this host (commands, shell lines, SQL, Kubernetes
/// calls), ties each to a named identity, and keeps the record where the agent cannot touch it.
#[derive(Debug, Parser)]
#[command(name = "recorder", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the host agent: load the eBPF programs and record the watched identities.
    Agent(agent::AgentArgs),
    /// Run the collector: the remote, append-only, tamper-evident store (gRPC, mutual TLS).
    Collector(collector::CollectorArgs),
    /// List recorded sessions (operator).
    Sessions(sessions::SessionsArgs),
    /// Replay a session command by command, with results (operator).
    Replay(replay::ReplayArgs),
    /// Watch live records and alerts (operator).
    Watch(watch::WatchArgs),
    /// Check the log's integrity: hash chains, Merkle roots, checkpoint signatures.
    Verify(verify::VerifyArgs),
    /// Write a session's evidence bundle: one HTML file anyone can verify offline (operator).
    Evidence(evidence::EvidenceArgs),
    /// Export stored records as JSON Lines (operator).
    Export(export::ExportArgs),
    /// Ship an existing JSON Lines file of records to a collector (agent certificate).
    Ship(ship::ShipArgs),
    /// Create a CA and certificates for the collector, agents and operators.
    Pki(pki::PkiArgs),
    /// Issue a signed, expiring operator token for the web console.
    Token(token::TokenArgs),
    /// Copy an embedded store into a PostgreSQL database, proofs intact.
    Migrate(migrate::MigrateArgs),
    /// Try alert rules on a stored log: what would have fired.
    Alerts(alerts::AlertsArgs),
    /// List the actions agents hold until an operator approves or denies them (operator).
    Approvals(approvals::ApprovalsArgs),
    /// Let a held action go on (operator).
    Approve(approvals::DecideArgs),
    /// Stop a held action (operator).
    Deny(approvals::DecideArgs),
    /// Measure the collector's ingest throughput and end-to-end latency (release build).
    #[command(hide = true)]
    BenchCollector(bench::BenchArgs),
}

/// Runs the parsed command line.
fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Agent(args) => agent::run(args),
        Command::Collector(args) => collector::run(args),
        Command::Sessions(args) => sessions::run(&args),
        Command::Replay(args) => replay::run(&args),
        Command::Watch(args) => watch::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Evidence(args) => evidence::run(&args),
        Command::Export(args) => export::run(&args),
        Command::Ship(args) => ship::run(args),
        Command::Pki(args) => pki::run(args),
        Command::Token(args) => token::run(&args),
        Command::Migrate(args) => migrate::run(&args),
        Command::Alerts(args) => alerts::run(&args),
        Command::Approvals(args) => approvals::list(&args),
        Command::Approve(args) => approvals::approve(&args),
        Command::Deny(args) => approvals::deny(&args),
        Command::BenchCollector(args) => bench::run(&args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RECORDER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("recorder: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
