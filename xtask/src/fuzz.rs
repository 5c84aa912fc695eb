//! `cargo xtask fuzz [--smoke | --cases N]`: the randomized tests at a chosen depth.
//!
//! Property-based (proptest) rather than cargo-fuzz: the label parser, the route matcher and
//! the ClientHello SNI reader (interlock-user/tests/properties.rs), and random and mutated
//! frames through the XDP program by BPF_PROG_TEST_RUN checked against its invariants
//! (tests/tests/l4_packets.rs, as root). `cargo xtask test` runs them at the smoke depth.
use anyhow::{bail, Result};

use crate::{cmd, root};

/// Cases per property at `--smoke` (proptest's default), and frames per property case.
const SMOKE_CASES: u32 = 256;
const FRAMES_PER_CASE: u32 = 80;

pub fn run(smoke: bool, cases: u32) -> Result<()> {
    let cases = if smoke { SMOKE_CASES } else { cases };
    let frames = cases.saturating_mul(FRAMES_PER_CASE);
    cmd::run(
        cmd::cargo()
            .current_dir(root())
            .env("PROPTEST_CASES", cases.to_string())
            .args(["test", "-q", "-p", "interlock-user", "--test", "properties"]),
    )?;
    if !cmd::is_root() {
        bail!("the XDP frame fuzzing loads BPF programs: run cargo xtask fuzz as root");
    }
    crate::docker::ensure_bpffs()?;
    cmd::run(
        cmd::cargo()
            .current_dir(root())
            .env("INTERLOCK_FUZZ_FRAMES", frames.to_string())
            .args([
                "test",
                "-q",
                "-p",
                "interlock-tests",
                "--test",
                "l4_packets",
                "l4_random_frames",
            ]),
    )?;
    println!("FUZZ property_cases={cases} xdp_frames={frames} failures=0");
    Ok(())
}
