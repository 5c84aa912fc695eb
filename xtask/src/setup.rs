//! `cargo xtask setup`: installs what building, testing and the demo need.
//!
//! Idempotent: when everything is present it only checks (a few seconds). On a system
//! without apt it prints what to install instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd;

/// Debian packages for tests and the demo.
const BASE_PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "ethtool",
    "docker.io",
    "busybox-static",
    "file",
    "nftables",
    "iperf3",
    "haproxy",
];
/// Debian's Rust with its library source, and the LLVM bpf-linker is built against.
const EBPF_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src", "llvm-22-dev"];

pub fn run() -> Result<()> {
    if !Path::new("/usr/bin/apt-get").exists() {
        return explain_elsewhere();
    }
    if !cmd::is_root() {
        bail!("cargo xtask setup installs Debian packages and must run as root");
    }
    let mut wanted: Vec<&str> = BASE_PACKAGES.to_vec();
    wanted.extend(EBPF_PACKAGES);
    ensure_packages(&wanted)?;
    ensure_bpf_linker()?;
    Ok(())
}

/// Installs the given Debian packages that are not installed yet (one `apt-get update` first).
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !package_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing {}", missing.join(" "));
    cmd::run(Command::new("apt-get").arg("update").arg("-q")).context("apt-get update")?;
    cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
    )
    .with_context(|| format!("installing {}", missing.join(" ")))
}

fn package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", package])
        .output()
        .map(|o| o.status.success() && o.stdout == b"installed")
        .unwrap_or(false)
}

fn cargo_bin_dir() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo"));
    home.join("bin")
}

fn ensure_bpf_linker() -> Result<()> {
    if xtask::ebpf::which("bpf-linker").is_some() {
        return Ok(());
    }
    let installed = cargo_bin_dir().join("bpf-linker");
    if !installed.exists() {
        eprintln!("setup: building bpf-linker against LLVM 22 (about a minute)");
        let path = format!("/usr/lib/llvm-22/bin:{}", std::env::var("PATH").unwrap_or_default());
        cmd::run(cmd::cargo().env("PATH", path).args([
            "install",
            "bpf-linker",
            "--no-default-features",
            "--features",
            "llvm-22",
        ]))
        .context("cargo install bpf-linker")?;
    }
    if xtask::ebpf::which("bpf-linker").is_none() {
        bail!(
            "bpf-linker is installed at {} but that directory is not on PATH: add it",
            installed.display()
        );
    }
    Ok(())
}

fn explain_elsewhere() -> Result<()> {
    match xtask::ebpf::detect() {
        Ok(_) => Ok(()),
        Err(missing) => bail!(
            "not a Debian/Ubuntu system, so setup cannot install for you.\n{missing}\n\
             Tests also need: iproute2, ethtool, a Docker engine (swarm mode), busybox (static)."
        ),
    }
}
