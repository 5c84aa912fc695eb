//! Doing things in the host's network namespace from inside the agent's container.
//!
//! The XDP fast path lives on the host's interfaces (so it outlives the agent's container),
//! but the agent's container has its own namespace (so it can join overlays for L7).
//! Attaching XDP and resolving interface names happen in the calling thread's namespace, so
//! they run through `crate::netns::run_in` in the host's (a bind-mounted `/proc/1/ns/net` of
//! the host). BPF maps and sockets keep working from any thread.
use std::ffi::CStr;
use std::net::Ipv4Addr;

use anyhow::{bail, Context, Result};

/// The first IPv4 address of `iface` in the calling thread's namespace.
pub fn iface_ipv4(iface: &str) -> Result<Ipv4Addr> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getifaddrs");
    }
    let mut found = None;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: non-null, NUL-terminated name owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: non-null sockaddr; its family tells its real type.
        if name.to_bytes() == iface.as_bytes() && i32::from(unsafe { (*ifa.ifa_addr).sa_family }) == libc::AF_INET {
            // SAFETY: AF_INET means the address is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            break;
        }
    }
    // SAFETY: frees the list getifaddrs gave us, once.
    unsafe { libc::freeifaddrs(head) };
    match found {
        Some(a) => Ok(a),
        None => bail!("interface {iface} has no IPv4 address (or does not exist in this namespace)"),
    }
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
