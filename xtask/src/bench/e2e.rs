//! `cargo xtask bench e2e`: the stack on the local swarm (tests/examples/e2e_bench.rs):
//! route-live latency after scale-ups and errors during rolling updates at 200 requests/s.
use anyhow::{bail, Result};

use crate::{cmd, docker, image};

pub fn run() -> Result<()> {
    if !cmd::is_root() {
        bail!("cargo xtask bench e2e drives Docker: run it as root");
    }
    let swarm = docker::swarm_lock()?;
    swarm.ensure_swarm()?;
    image::run()?;
    cmd::run(cmd::cargo().args([
        "run",
        "-q",
        "--release",
        "-p",
        "interlock-tests",
        "--example",
        "e2e_bench",
    ]))
}
