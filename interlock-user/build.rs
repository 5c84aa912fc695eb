//! Builds the kernel program with the same builder as `cargo xtask build-ebpf` and hands
//! it to the agent, which embeds it. There is no stub: no eBPF object, no agent binary.
//!
//! `INTERLOCK_EBPF_OBJECT=/path/to/object` embeds a prebuilt object instead (for image
//! builds that compile the kernel program in an earlier stage).

use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("interlock-user lives in the workspace root")
        .to_path_buf();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("interlock.bpf.o");

    println!("cargo:rerun-if-env-changed=INTERLOCK_EBPF_OBJECT");
    let object = match std::env::var_os("INTERLOCK_EBPF_OBJECT") {
        Some(prebuilt) => PathBuf::from(prebuilt),
        None => {
            for dir in [
                "interlock-ebpf/src",
                "interlock-ebpf/Cargo.toml",
                "interlock-common/src",
                "interlock-common/Cargo.toml",
            ] {
                println!("cargo:rerun-if-changed={}", root.join(dir).display());
            }
            match xtask::ebpf::build(&root, true) {
                Ok(object) => object,
                Err(e) => {
                    eprintln!("error: interlock embeds its eBPF program and building it failed:\n  {e}");
                    eprintln!("Run `cargo xtask setup` (Debian) or `cargo xtask build-ebpf` to see what is missing.");
                    std::process::exit(1);
                }
            }
        }
    };
    copy(&object, &out);
}

fn copy(from: &Path, to: &Path) {
    if let Err(e) = std::fs::copy(from, to) {
        eprintln!(
            "error: cannot copy the eBPF object {} to {}: {e}",
            from.display(),
            to.display()
        );
        std::process::exit(1);
    }
}
