//! `cargo xtask image`: the agent's container image, built offline: a static binary
//! (glibc, crt-static) copied into an image FROM scratch (deploy/Dockerfile.scratch).
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::cmd;

/// The tag `deploy/stack.yml` uses by default.
pub const IMAGE: &str = "interlock:local";
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds the static release binary and returns its path.
pub fn build_static_agent() -> Result<PathBuf> {
    // Scoped to the target, so build scripts (and the nested eBPF build) are left alone.
    cmd::run(
        cmd::cargo()
            .current_dir(crate::root())
            .env(
                "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
                "-C target-feature=+crt-static",
            )
            .args([
                "build",
                "--release",
                "--target",
                TARGET,
                "--package",
                "interlock-user",
                "--bin",
                "interlock",
            ]),
    )?;
    Ok(crate::root().join(format!("target/{TARGET}/release/interlock")))
}

/// Builds `interlock:local`.
pub fn run() -> Result<()> {
    let binary = build_static_agent()?;
    let context = crate::root().join("target/image");
    std::fs::create_dir_all(&context)?;
    std::fs::copy(&binary, context.join("interlock"))
        .with_context(|| format!("copying {} into the image context", binary.display()))?;
    let dockerfile = crate::root().join("deploy/Dockerfile.scratch");
    cmd::run(std::process::Command::new("docker").args([
        "build",
        "--quiet",
        "--tag",
        IMAGE,
        "--file",
        &dockerfile.to_string_lossy(),
        &context.to_string_lossy(),
    ]))?;
    println!("image: {IMAGE}");
    Ok(())
}
