//! `cargo xtask bench <what>`: benchmarks that print `BENCH` lines, each with a reference
//! measured in the same run. Never timed assertions: tests assert behaviour, benches measure.
mod control;
mod e2e;
mod hardening;
mod l4;
mod l7;

use anyhow::Result;

/// The image bench services reference (they run 0 replicas, so it only has to exist as a name).
pub const BACKEND_IMAGE_FOR_BENCH: &str = "interlock-test-backend:1";
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Bench {
    /// XDP fast path: BPF_PROG_TEST_RUN ns/packet and veth throughput vs nftables and HAProxy.
    L4,
    /// HTTP proxy: wrk against interlock, nginx and HAProxy in front of the same backend.
    L7,
    /// Control plane: event-to-snapshot latency and full resync time on a real swarm.
    Control,
    /// The deployed stack: route-live latency after scale-ups and errors during rolling updates.
    E2e,
    /// The proxy under 10,000 keep-alive clients and a slowloris attack at once.
    Hardening,
}

pub fn run(which: Bench) -> Result<()> {
    match which {
        Bench::L4 => l4::run(),
        Bench::L7 => l7::run(),
        Bench::Control => control::run(),
        Bench::E2e => e2e::run(),
        Bench::Hardening => hardening::run(),
    }
}
