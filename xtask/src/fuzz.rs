//! `cargo xtask fuzz [--smoke | --cases N]`: the randomized tests at a chosen depth.
//!
//! Property-based (proptest and seeded generators) rather than cargo-fuzz: the label parser,
//! the route matcher and the ClientHello SNI reader (interlock-user/tests/properties.rs),
//! mutated HTTP requests through a real listener (interlock-user/tests/l7_fuzz.rs), and random
//! and mutated frames through the XDP program by BPF_PROG_TEST_RUN checked against its
//! invariants (tests/tests/l4_packets.rs, as root). `cargo xtask test` runs them at the smoke
//! depth.
use anyhow::{bail, Result};

use crate::{cmd, root};

/// Cases per property at `--smoke` (what `cargo xtask test` runs), and random frames and
/// requests per property case.
const SMOKE_CASES: u32 = 2_000;
const FRAMES_PER_CASE: u32 = 10;
const REQUESTS_PER_CASE: u32 = 1;

/// Properties in interlock-user/tests/properties.rs (each runs `cases` cases).
const PROPERTIES: u64 = 4;

/// Runs everything at the depth asked; returns how many inputs were tried (a failure is an
/// error: the test that found it names the input).
pub fn run(smoke: bool, cases: u32) -> Result<u64> {
    let cases = if smoke { SMOKE_CASES } else { cases };
    let frames = cases.saturating_mul(FRAMES_PER_CASE);
    let requests = cases.saturating_mul(REQUESTS_PER_CASE);
    cmd::run(
        cmd::cargo()
            .current_dir(root())
            .env("PROPTEST_CASES", cases.to_string())
            .env("INTERLOCK_FUZZ_REQUESTS", requests.to_string())
            .args([
                "test",
                "-q",
                "-p",
                "interlock-user",
                "--test",
                "properties",
                "--test",
                "l7_fuzz",
            ]),
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
    println!("FUZZ property_cases={cases} http_requests={requests} xdp_frames={frames} failures=0");
    Ok(u64::from(cases) * PROPERTIES + u64::from(requests) + u64::from(frames))
}
