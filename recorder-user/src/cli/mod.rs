//! The `recorder` command line: one module per subcommand.
pub mod agent;

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
}

/// Runs the parsed command line; the binary's `main` only sets up logging and calls this.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Agent(args) => agent::run(args),
    }
}
