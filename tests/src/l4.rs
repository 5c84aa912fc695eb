//! Helpers for the L4 fast-path tests and bench: hand-built frames, checksum checks, and a
//! namespace with routes and neighbours where BPF_PROG_TEST_RUN of `interlock_lb` runs.
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;

use anyhow::{Context, Result};
use interlock::model::{Backend, L4Protocol, L4Service, ServiceRef};

use crate::netns::{veth_pair, NetNs};

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 231, 1, 50);
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x50];
pub const SNAT: Ipv4Addr = Ipv4Addr::new(10, 231, 2, 1);
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const BACKENDS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 231, 2, 10),
    Ipv4Addr::new(10, 231, 2, 11),
    Ipv4Addr::new(10, 231, 2, 12),
];
/// The port every test backend listens on.
pub const BACKEND_PORT: u16 = 8080;

/// An L4 service on `vip:port` balanced over `backends` (each on `BACKEND_PORT`, weight 1).
pub fn service(vip: Ipv4Addr, port: u16, protocol: L4Protocol, backends: &[Ipv4Addr]) -> L4Service {
    let name = format!("{vip}:{port}/{protocol:?}");
    L4Service {
        service: ServiceRef { id: name.clone(), name },
        vip: Some(vip),
        port,
        protocol,
        backends: backends
            .iter()
            .map(|a| Backend {
                addr: SocketAddr::new((*a).into(), BACKEND_PORT),
                weight: 1,
                id: a.to_string(),
            })
            .collect(),
    }
}

pub fn backend_mac(i: usize) -> [u8; 6] {
    [0x02, 0, 0, 0, 2, 0x10 + i as u8]
}

/// A balancer namespace for test runs: client side 10.231.1.0/24, backend side
/// 10.231.2.0/24, permanent neighbours for the client and the backends, forwarding on.
pub struct PacketLab {
    pub lb: NetNs,
    _peer: NetNs,
    pub client_side_mac: [u8; 6],
    pub backend_side_mac: [u8; 6],
}

fn mac_of(ns: &NetNs, iface: &str) -> Result<[u8; 6]> {
    let out = ns.sh(&format!("cat /sys/class/net/{iface}/address"))?;
    let mut mac = [0u8; 6];
    for (i, part) in out.trim().split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(part, 16).context("parsing a MAC")?;
    }
    Ok(mac)
}

impl PacketLab {
    pub fn new() -> Result<PacketLab> {
        let lb = NetNs::new()?;
        let peer = NetNs::new()?;
        let (c, _) = veth_pair(&lb, "10.231.1.1", &peer, "10.231.1.2")?;
        let (b, _) = veth_pair(&lb, "10.231.2.1", &peer, "10.231.2.2")?;
        lb.sh("sysctl -qw net.ipv4.ip_forward=1")?;
        lb.ip(&[
            "neigh",
            "replace",
            &CLIENT.to_string(),
            "lladdr",
            &fmt_mac(&CLIENT_MAC),
            "dev",
            &c.iface,
            "nud",
            "permanent",
        ])?;
        for (i, addr) in BACKENDS.iter().enumerate() {
            lb.ip(&[
                "neigh",
                "replace",
                &addr.to_string(),
                "lladdr",
                &fmt_mac(&backend_mac(i)),
                "dev",
                &b.iface,
                "nud",
                "permanent",
            ])?;
        }
        Ok(PacketLab {
            client_side_mac: mac_of(&lb, &c.iface)?,
            backend_side_mac: mac_of(&lb, &b.iface)?,
            lb,
            _peer: peer,
        })
    }

    /// Runs `f` on a thread inside the balancer namespace (test runs use the caller's
    /// namespace for the FIB lookup) and returns its result.
    pub fn run_inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        spawn_in_ns(&self.lb, f)?
            .join()
            .map_err(|_| anyhow::anyhow!("the test thread panicked"))
    }
}

/// Runs `f` on a new thread inside `ns` (threads it starts inherit the namespace).
pub fn spawn_in_ns<T: Send + 'static>(
    ns: &NetNs,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>> {
    let file = std::fs::File::open(format!("/var/run/netns/{}", ns.name)).context("opening the namespace")?;
    Ok(std::thread::spawn(move || {
        // SAFETY: setns on this thread only, with a namespace fd we hold open.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    }))
}

/// A bpffs instance mounted on a fresh directory, unmounted (dropping every pin in it, so
/// pinned links detach) on drop. Visible inside `ip netns exec`, unlike /sys/fs/bpf.
pub struct BpfFsMount {
    pub dir: std::path::PathBuf,
}

impl BpfFsMount {
    pub fn new() -> Result<BpfFsMount> {
        let dir = std::env::temp_dir().join(crate::netns::unique("ilt-bpffs-"));
        std::fs::create_dir_all(&dir)?;
        crate::netns::run(std::process::Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&dir))?;
        Ok(BpfFsMount { dir })
    }
}

impl Drop for BpfFsMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.dir).output();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

pub fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The ones' complement sum of `data` (big-endian words), not yet complemented.
pub fn ones_sum(data: &[u8], mut acc: u32) -> u32 {
    for chunk in data.chunks(2) {
        let w = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        acc += u32::from(w);
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

pub const ETH: usize = 14;
pub const IP: usize = 20;

/// Ethernet + IPv4 + TCP/UDP frame with correct checksums. `proto` 6 or 17; `tcp_flags`
/// is ignored for UDP.
#[allow(clippy::too_many_arguments)]
pub fn frame(
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    proto: u8,
    tcp_flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let l4_len = if proto == 6 { 20 } else { 8 } + payload.len();
    let mut f = Vec::with_capacity(ETH + IP + l4_len);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&[0x02, 0, 0, 0, 9, 9]);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let tot_len = (IP + l4_len) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&tot_len.to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, tcp_flags, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    }
    f.extend_from_slice(payload);
    let ip_sum = !(ones_sum(&f[ETH..ETH + IP], 0) as u16);
    f[ETH + 10..ETH + 12].copy_from_slice(&ip_sum.to_be_bytes());
    let l4_sum = !(ones_sum(&f[ETH + IP..], pseudo_sum(&f)) as u16);
    let l4_sum = if proto == 17 && l4_sum == 0 { 0xffff } else { l4_sum };
    let off = ETH + IP + if proto == 6 { 16 } else { 6 };
    f[off..off + 2].copy_from_slice(&l4_sum.to_be_bytes());
    f
}

fn pseudo_sum(f: &[u8]) -> u32 {
    let l4_len = (f.len() - ETH - IP) as u32;
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&f[ETH + 12..ETH + 20]);
    p.extend_from_slice(&[0, f[ETH + 9]]);
    p.extend_from_slice(&(l4_len as u16).to_be_bytes());
    ones_sum(&p, 0)
}

/// True when the IPv4 header checksum of the frame verifies.
pub fn ip_csum_ok(f: &[u8]) -> bool {
    ones_sum(&f[ETH..ETH + IP], 0) == 0xffff
}

/// True when the TCP/UDP checksum (with pseudo-header) verifies.
pub fn l4_csum_ok(f: &[u8]) -> bool {
    ones_sum(&f[ETH + IP..], pseudo_sum(f)) == 0xffff
}

/// Fields of a translated frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub ttl: u8,
}

pub fn fields(f: &[u8]) -> Fields {
    let ip4 = |o: usize| Ipv4Addr::new(f[o], f[o + 1], f[o + 2], f[o + 3]);
    Fields {
        dst_mac: f[0..6].try_into().unwrap(),
        src_mac: f[6..12].try_into().unwrap(),
        src: ip4(ETH + 12),
        dst: ip4(ETH + 16),
        sport: u16::from_be_bytes([f[ETH + IP], f[ETH + IP + 1]]),
        dport: u16::from_be_bytes([f[ETH + IP + 2], f[ETH + IP + 3]]),
        ttl: f[ETH + 8],
    }
}
