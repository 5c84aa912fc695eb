//! `cargo xtask bench l4`: BPF_PROG_TEST_RUN ns per packet of the XDP balancer, with the
//! trivial XDP_PASS program measured in the same run (tests/examples/l4_bench.rs); then TCP
//! throughput through XDP, nftables NAT and HAProxy (tests/examples/l4_e2e_bench.rs).
use anyhow::{bail, Result};

use crate::cmd;

pub fn run() -> Result<()> {
    if !cmd::is_root() {
        bail!("cargo xtask bench l4 needs root: it loads BPF programs and creates namespaces");
    }
    // Debug builds: the figures are kernel time and iperf3/HAProxy, the user side only sets
    // up. The e2e run starts the agent binary.
    cmd::run(cmd::cargo().args(["build", "-q", "-p", "interlock-user", "--bin", "interlock"]))?;
    for example in ["l4_bench", "l4_e2e_bench"] {
        cmd::run(cmd::cargo().args(["run", "-q", "-p", "interlock-tests", "--example", example]))?;
    }
    Ok(())
}
