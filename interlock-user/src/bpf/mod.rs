//! The kernel side as seen from the agent: the embedded eBPF object and its programs.
mod attach;
mod counters;
mod logger;

pub use attach::{attach_xdp, AttachedMode};
pub use counters::{read_proto_stats, ProtoCount};
pub use logger::spawn_kernel_logger;

use anyhow::{Context, Result};
use aya::Ebpf;

/// The kernel programs, built by build.rs (the same builder as `cargo xtask build-ebpf`).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/interlock.bpf.o"));

/// Name of the packet-counting XDP program in the object.
pub const PROG_COUNT: &str = "interlock_count";

/// Loads the embedded object into the kernel (maps created, programs not yet loaded).
pub fn load() -> Result<Ebpf> {
    raise_memlock_limit();
    Ebpf::load(EBPF_OBJECT).context(
        "loading the eBPF object failed: the agent needs CAP_BPF/CAP_SYS_ADMIN and CAP_NET_ADMIN (run as root)",
    )
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lifting it is harmless on newer ones.
pub(crate) fn raise_memlock_limit() {
    use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};
    if let Err(e) = setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY) {
        tracing::debug!("could not lift RLIMIT_MEMLOCK: {e}");
    }
}
