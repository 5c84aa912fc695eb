//! Doing things in the host's network namespace from inside the agent's container.
//!
//! The XDP fast path lives on the host's interfaces (so it outlives the agent's container),
//! but the agent's container has its own namespace (so it can join overlays for L7).
//! Attaching XDP and resolving interface names happen in the calling thread's namespace, so
//! they run through `crate::netns::run_in` in the host's (a bind-mounted `/proc/1/ns/net` of
//! the host). BPF maps and sockets keep working from any thread.
use std::net::Ipv4Addr;

use anyhow::{Context, Result};

/// The first IPv4 address of `iface` in the calling thread's namespace.
pub fn iface_ipv4(iface: &str) -> Result<Ipv4Addr> {
    nix::ifaddrs::getifaddrs()
        .context("getifaddrs")?
        .filter(|ifa| ifa.interface_name == iface)
        .find_map(|ifa| Some(ifa.address?.as_sockaddr_in()?.ip()))
        .with_context(|| format!("interface {iface} has no IPv4 address (or does not exist in this namespace)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_its_address() {
        assert_eq!(iface_ipv4("lo").unwrap(), Ipv4Addr::LOCALHOST);
        let e = iface_ipv4("no-such-if0").unwrap_err().to_string();
        assert!(e.contains("no-such-if0"), "{e}");
    }
}
