//! The `interlock` binary.
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
    /// Run the control plane alone (watch Docker or follow a leader) and print snapshots.
    Control(commands::control::ControlCommand),
    /// Run the HTTP proxy, with routes from the control plane (or a snapshot file).
    Proxy(Box<commands::proxy::ProxyArgs>),
    /// Run the XDP L4 load balancer for the services in a JSON file (re-read on change/SIGHUP).
    L4(commands::l4::L4Args),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: escape codes cost more than the access-log line itself.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .fmt_fields(interlock::log_format::PlainFields)
        .with_timer(interlock::log_format::UtcTime)
        .init();
    let result = match Cli::parse().command {
        Command::Count(args) => commands::count::run(args).await,
        Command::Control(cmd) => commands::control::run(cmd).await,
        Command::Proxy(args) => commands::proxy::run(*args).await,
        Command::L4(args) => commands::l4::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole chain of causes: what failed, and why.
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
