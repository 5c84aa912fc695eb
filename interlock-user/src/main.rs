//! The `interlock` binary.
use anyhow::Result;
use clap::{Parser, Subcommand};
use interlock::commands;

#[derive(Parser)]
#[command(
    name = "interlock",
    version,
    about = "Layer-4 + layer-7 load balancer for Docker Swarm"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach the packet-counting XDP program to an interface and print counts per IP protocol.
    Count(commands::count::CountArgs),
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Count(args) => commands::count::run(args).await,
    }
}
