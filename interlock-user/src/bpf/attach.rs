//! Attaching an XDP program: native (driver) mode first, generic (skb) mode as fallback.
use std::fmt;

use anyhow::{Context, Result};
use aya::programs::{xdp::XdpLinkId, Xdp, XdpMode};
use aya::Ebpf;

/// The mode the program ended up attached in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedMode {
    Driver,
    Skb,
}

impl fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachedMode::Driver => "driver (native XDP)",
            AttachedMode::Skb => "skb (generic XDP)",
        })
    }
}

/// Loads program `name` and attaches it to `iface`. `force_skb` skips the driver attempt.
pub fn attach_xdp(bpf: &mut Ebpf, name: &str, iface: &str, force_skb: bool) -> Result<(XdpLinkId, AttachedMode)> {
    let program: &mut Xdp = bpf
        .program_mut(name)
        .with_context(|| format!("the eBPF object has no program {name}"))?
        .try_into()
        .with_context(|| format!("{name} is not an XDP program"))?;
    program
        .load()
        .with_context(|| format!("the kernel rejected XDP program {name}"))?;
    if !force_skb {
        match program.attach(iface, XdpMode::Driver) {
            Ok(link) => return Ok((link, AttachedMode::Driver)),
            Err(e) => {
                tracing::info!("driver-mode XDP on {iface} not available ({e}); trying skb mode")
            }
        }
    }
    let link = program
        .attach(iface, XdpMode::Skb)
        .with_context(|| format!("attaching {name} to interface {iface} failed (does it exist?)"))?;
    Ok((link, AttachedMode::Skb))
}
