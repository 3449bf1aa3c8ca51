//! The `recorder` command line: one module per subcommand.
pub mod agent;
pub mod bench;
pub mod client;
pub mod collector;
pub mod export;
pub mod pki;
pub mod prove;
pub mod replay;
pub mod sessions;
pub mod ship;
pub mod verify;
pub mod watch;

use clap::{Parser, Subcommand};

/// Records what AI agent processes run on this host (commands, shell lines, SQL, Kubernetes
/// calls), ties each to a named identity, and keeps the record where the agent cannot touch it.
#[derive(Debug, Parser)]
#[command(name = "recorder", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Export stored records as JSON Lines (operator).
    Export(export::ExportArgs),
    /// Ship an existing JSON Lines file of records to a collector (agent certificate).
    Ship(ship::ShipArgs),
    /// Create a CA and certificates for the collector, agents and operators.
    Pki(pki::PkiArgs),
    /// Measure the collector's ingest throughput and end-to-end latency (release build).
    #[command(hide = true)]
    BenchCollector(bench::BenchArgs),
}

/// Runs the parsed command line; the binary's `main` only sets up logging and calls this.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Agent(args) => agent::run(args),
        Command::Collector(args) => collector::run(args),
        Command::Sessions(args) => sessions::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Watch(args) => watch::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Export(args) => export::run(args),
        Command::Ship(args) => ship::run(args),
        Command::Pki(args) => pki::run(args),
        Command::BenchCollector(args) => bench::run(args),
    }
}
