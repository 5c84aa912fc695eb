//! The `interlock` binary: parses the command line, resolves the settings (`config`) and
//! hands them to the subcommand (`commands/`), which starts the planes.
#![deny(unsafe_code)]
mod commands;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use interlock::config::{Given, LogFormat, RunArgs, Settings};

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
    /// Run the agent: control plane, HTTP router and XDP fast path (what the stack deploys).
    Run(Box<RunArgs>),
    /// Show a running agent's routes, backends and L4 counters.
    Status(commands::status::StatusArgs),
    /// Exit 0 if a running agent takes traffic (routes in place, not draining): the health check.
    Ready(commands::ready::ReadyArgs),
    /// Make the CA and certificate of the leader -> follower snapshot stream (files or Docker secrets).
    Certs(commands::certs::CertsArgs),
    /// Attach the packet-counting XDP program to an interface and print counts per IP protocol.
    Count(commands::count::CountArgs),
    /// Run the control plane alone (watch Docker or follow a leader) and print snapshots.
    Control(commands::control::ControlCommand),
    /// Run the HTTP proxy, with routes from the control plane (or a snapshot file).
    Proxy(Box<commands::proxy::ProxyArgs>),
    /// Run the XDP L4 load balancer for the services in a JSON file (re-read on change/SIGHUP).
    L4(commands::l4::L4Args),
}

fn main() -> std::process::ExitCode {
    let matches = Cli::command().get_matches();
    let command = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli.command,
        Err(e) => e.exit(),
    };
    // Which settings came from flags and which from the environment (`--print-config`).
    let given = matches
        .subcommand()
        .map(|(_, m)| Given::from_matches(m))
        .unwrap_or_default();
    raise_open_files_limit();
    // `run` settings decide the log format and the Docker endpoint, so they come first.
    let settings = match &command {
        Command::Run(args) => match Settings::load((**args).clone(), &given) {
            Ok(s) if args.print_config => {
                print!("{}", s.render());
                return std::process::ExitCode::SUCCESS;
            }
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("interlock: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    if let Some(host) = settings.as_ref().and_then(|s| s.agent.docker_host.as_ref()) {
        // Before any thread exists: bollard and the raw client read DOCKER_HOST.
        std::env::set_var("DOCKER_HOST", host);
    }
    // Held to the end of main: dropping it flushes the lines still queued.
    let _log_guard = init_logging(settings.as_ref().map_or(LogFormat::Text, |s| s.agent.log_format));
    let runtime = match interlock::runtime::build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("interlock: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Run(_) => commands::run::run(settings.expect("resolved above")).await,
            Command::Status(args) => commands::status::run(args).await,
            Command::Ready(args) => commands::ready::run(args).await,
            Command::Certs(args) => commands::certs::run(args).await,
            Command::Count(args) => commands::count::run(args).await,
            Command::Control(cmd) => commands::control::run(cmd, &given).await,
            Command::Proxy(args) => commands::proxy::run(*args, &given).await,
            Command::L4(args) => commands::l4::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole chain of causes: what failed, and why.
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Every client and backend connection is a descriptor: the soft limit (often 1024) goes up
/// to the hard one, as nginx's `worker_rlimit_nofile` would.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

fn init_logging(format: LogFormat) -> interlock::log_writer::FlushGuard {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let (writer, guard) = interlock::log_writer::stderr();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone())
        .with_timer(interlock::log_format::UtcTime);
    // Access lines bound for stderr are written straight to the same writer.
    interlock::access_log::install(writer.clone());
    match format {
        LogFormat::Text => {
            builder
                // Colours only for a person at a terminal: escape codes cost more than the access-log line itself.
                .with_ansi(std::io::stderr().is_terminal())
                .fmt_fields(interlock::log_format::PlainFields)
                .init()
        }
        LogFormat::Json => builder.json().init(),
    }
    guard
}
