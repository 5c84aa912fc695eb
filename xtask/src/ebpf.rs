//! Builds the eBPF object (interlock-ebpf) for `bpfel-unknown-none`.
//!
//! Used by `cargo xtask build-ebpf` and by interlock-user's build script, so both build the
//! kernel program the same way. Standard library only: it runs inside a build script.
//!
//! Two toolchains can build it (see ../shared/TOOLCHAIN.md):
//! - rustup nightly with the `rust-src` component (the usual aya route on a workstation);
//! - Debian's rustc-web + rust-web-src (rustc 1.96 with its library source), unlocked with
//!   RUSTC_BOOTSTRAP=1, where rustup cannot fetch `rust-src`.
//!
//! Either way `bpf-linker` must be on PATH.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "bpfel-unknown-none";
pub const PACKAGE: &str = "interlock-ebpf";
pub const BIN: &str = "interlock";

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_LIBRARY_SRC: &str = "/usr/lib/rustlib/src/rust/library/core";

/// Which compiler builds the kernel crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toolchain {
    /// `rustup run nightly cargo`, with rust-src installed.
    RustupNightly,
    /// Debian's `/usr/bin/cargo` + `/usr/bin/rustc` with RUSTC_BOOTSTRAP=1.
    Debian,
}

/// Something the build needs and does not find, with the command that installs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub what: String,
    pub install: String,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is missing. Install it with `cargo xtask setup`, or: {}",
            self.what, self.install
        )
    }
}

impl std::error::Error for Missing {}

/// Finds an executable on PATH (not elsewhere: a tool off PATH counts as missing).
pub fn which(name: &str) -> Option<PathBuf> {
    which_in(name, &std::env::var_os("PATH")?)
}

fn which_in(name: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn nightly_has_rust_src() -> bool {
    let Ok(out) = clean_command("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
    else {
        return false;
    };
    if !out.status.success() {
        return false;
    }
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot).join("lib/rustlib/src/rust/library/core").is_dir()
}

/// Picks the toolchain, or says what to install.
pub fn detect() -> Result<(Toolchain, PathBuf), Missing> {
    detect_with_path(&std::env::var_os("PATH").unwrap_or_default())
}

fn detect_with_path(path: &std::ffi::OsStr) -> Result<(Toolchain, PathBuf), Missing> {
    let linker = which_in("bpf-linker", path).ok_or_else(|| Missing {
        what: "bpf-linker (the linker for eBPF objects; not found on PATH)".into(),
        install: "`PATH=/usr/lib/llvm-22/bin:$PATH cargo install bpf-linker --no-default-features \
                  --features llvm-22` on Debian (needs llvm-22-dev), or `cargo install bpf-linker` \
                  elsewhere; then put ~/.cargo/bin on PATH"
            .into(),
    })?;
    if nightly_has_rust_src() {
        return Ok((Toolchain::RustupNightly, linker));
    }
    let debian_ok =
        Path::new(DEBIAN_RUSTC).exists() && Path::new(DEBIAN_CARGO).exists() && Path::new(DEBIAN_LIBRARY_SRC).is_dir();
    if debian_ok {
        return Ok((Toolchain::Debian, linker));
    }
    Err(Missing {
        what: "a Rust toolchain with the core library source for the BPF target".into(),
        install: "`apt-get install rustc-web cargo-web rust-web-src` on Debian, or \
                  `rustup toolchain install nightly --component rust-src`"
            .into(),
    })
}

/// A command with the environment cargo gives build scripts and `cargo run` removed,
/// so the nested build sees neither the outer toolchain nor its flags.
fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let key_str = key.to_string_lossy();
        let outer = (key_str.starts_with("CARGO") && key_str != "CARGO_HOME")
            || key_str.starts_with("RUSTC")
            || key_str.starts_with("RUSTUP_TOOLCHAIN")
            || key_str.starts_with("RUSTDOC")
            || key_str == "RUSTFLAGS"
            || key_str.starts_with("DEP_")
            || matches!(
                &*key_str,
                "TARGET" | "HOST" | "OUT_DIR" | "PROFILE" | "OPT_LEVEL" | "DEBUG" | "NUM_JOBS"
            );
        if outer {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// Where the built object lands.
pub fn object_path(root: &Path, release: bool) -> PathBuf {
    let profile = if release { "release" } else { "debug" };
    target_dir(root).join(TARGET).join(profile).join(BIN)
}

/// The kernel crate gets its own target directory: a build script may run this while the
/// outer cargo holds the lock on `target/`.
pub fn target_dir(root: &Path) -> PathBuf {
    root.join("target").join("ebpf")
}

/// Builds the eBPF object and returns its path. Cargo's output goes to our stderr.
pub fn build(root: &Path, release: bool) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let (toolchain, linker) = detect()?;
    let linker_dir = linker.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut cmd = match toolchain {
        Toolchain::RustupNightly => {
            let mut cmd = clean_command("rustup");
            cmd.args(["run", "nightly", "cargo"]);
            cmd
        }
        Toolchain::Debian => {
            let mut cmd = clean_command(DEBIAN_CARGO);
            // /usr/bin first, or Debian's cargo would reach rustup's rustc proxy.
            let mut path: Vec<PathBuf> = vec!["/usr/bin".into(), "/bin".into(), linker_dir.clone()];
            if let Some(old) = std::env::var_os("PATH") {
                path.extend(std::env::split_paths(&old));
            }
            cmd.env(
                "PATH",
                std::env::join_paths(path).unwrap_or_else(|_| OsString::from("/usr/bin:/bin")),
            );
            cmd.env("RUSTC", DEBIAN_RUSTC).env("RUSTC_BOOTSTRAP", "1");
            cmd
        }
    };
    cmd.current_dir(root)
        .args([
            "build",
            "--package",
            PACKAGE,
            "--bin",
            BIN,
            "--target",
            TARGET,
            "-Z",
            "build-std=core",
        ])
        .arg("--target-dir")
        .arg(target_dir(root));
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .map_err(|e| format!("could not run cargo for the eBPF build ({toolchain:?}): {e}"))?;
    if !status.success() {
        return Err(
            format!("building {PACKAGE} for {TARGET} with the {toolchain:?} toolchain failed ({status})").into(),
        );
    }
    let object = object_path(root, release);
    if !object.exists() {
        return Err(format!("the eBPF build succeeded but {} is missing", object.display()).into());
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_bpf_linker_is_named_with_its_install_command() {
        let err = detect_with_path(std::ffi::OsStr::new("/nonexistent")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bpf-linker"), "{msg}");
        assert!(msg.contains("cargo install bpf-linker"), "{msg}");
        assert!(msg.contains("cargo xtask setup"), "{msg}");
    }

    #[test]
    fn which_finds_only_executables_on_the_given_path() {
        assert!(which_in("sh", std::ffi::OsStr::new("/bin:/usr/bin")).is_some());
        assert!(
            which_in("passwd", std::ffi::OsStr::new("/etc")).is_none(),
            "/etc/passwd is not executable"
        );
    }
}
