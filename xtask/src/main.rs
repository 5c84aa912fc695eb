//! `cargo xtask`: build, set up, test, demo and benchmark Interlock.
mod bench;
mod cmd;
mod demo;
mod docker;
mod fuzz;
mod image;
mod setup;
mod test;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Build, set up, test and demo Interlock")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the eBPF object (interlock-ebpf) for bpfel-unknown-none.
    BuildEbpf {
        #[arg(long)]
        release: bool,
    },
    /// Install what the project needs (Debian/Ubuntu: packages, bpf-linker, docker.io).
    Setup,
    /// Run the whole test suite (as root: unit, kernel and Docker tests).
    Test {
        /// Run only the tests that need no privileges (no BPF, namespaces or Docker).
        #[arg(long)]
        unprivileged: bool,
        /// Extra arguments passed to `cargo test` after `--` (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Deploy the stack and sample services on the local swarm, show them answering (HTTP by
    /// host and path, TCP through XDP) and leave them running; `--remove` takes them down.
    Demo {
        #[arg(long)]
        remove: bool,
    },
    /// Run the randomized tests (properties, random XDP frames) at a chosen depth.
    Fuzz {
        /// The depth `cargo xtask test` uses (seconds).
        #[arg(long)]
        smoke: bool,
        /// Cases per property (and 80 random frames per case for the XDP program).
        #[arg(long, default_value_t = 20_000)]
        cases: u32,
    },
    /// Build the agent's image (interlock:local) FROM scratch from a static binary, offline.
    Image,
    /// Run a benchmark and print its BENCH line.
    #[command(subcommand)]
    Bench(bench::Bench),
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_path_buf()
}

fn main() -> std::process::ExitCode {
    // Errors are printed as one chain of causes, without a backtrace: they are for operators.
    match dispatch(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::BuildEbpf { release } => {
            let object = xtask::ebpf::build(&root(), release).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("eBPF object: {}", object.display());
            Ok(())
        }
        Command::Setup => setup::run(),
        Command::Test { unprivileged, args } => test::run(unprivileged, &args),
        Command::Demo { remove } => demo::run(remove),
        Command::Image => image::run(),
        Command::Fuzz { smoke, cases } => fuzz::run(smoke, cases).map(|_| ()),
        Command::Bench(which) => bench::run(which),
    }
}
