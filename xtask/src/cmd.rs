//! Small helpers for running commands with clear errors.
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Runs a command, inheriting stdio; fails naming the command when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Runs a shell line quietly and tells whether it succeeded.
pub fn ok(line: &str) -> bool {
    Command::new("sh")
        .args(["-c", line])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs a shell line, inheriting stdio.
pub fn sh(line: &str) -> Result<()> {
    run(Command::new("sh").args(["-c", line]))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `cargo` as invoked for us (the toolchain running xtask).
pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Builds the agent in release mode and returns the binary's path.
pub fn build_release_agent() -> Result<std::path::PathBuf> {
    run(cargo().current_dir(crate::root()).args([
        "build",
        "--release",
        "--package",
        "interlock-user",
        "--bin",
        "interlock",
    ]))?;
    Ok(crate::root().join("target/release/interlock"))
}
