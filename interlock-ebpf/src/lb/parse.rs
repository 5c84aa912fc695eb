//! Bounds-checked parse of Ethernet + IPv4 + TCP/UDP: everything the balancer decides on.
use aya_ebpf::programs::XdpContext;
use interlock_common::lb::{FlowKey, PROTO_TCP, PROTO_UDP};

use crate::packet::{ether_type, ptr_at, Ipv4Hdr, ETH_HDR_LEN, ETH_P_IPV4};

/// IPv4 header length without options.
pub const IPV4_HDR_LEN: usize = 20;
/// Offset of the L4 header (IPv4 headers with options are not translated, see `Parsed`).
pub const L4_OFF: usize = ETH_HDR_LEN + IPV4_HDR_LEN;
/// Offset of the checksum inside the TCP and UDP headers.
const TCP_CHECK_OFF: usize = 16;
const UDP_CHECK_OFF: usize = 6;
/// TCP flag bits (byte 13 of the header).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;

/// What the balancer can see of a frame.
pub enum Parsed {
    /// Not IPv4 TCP/UDP (or truncated): not ours.
    Other,
    /// An IPv4 fragment or a header with options, to `daddr`: never translated.
    Unusual { daddr: u32, fragment: bool },
    /// A translatable IPv4 TCP/UDP packet.
    L4(Packet),
}

/// Addresses and ports in network byte order, as in the packet.
pub struct Packet {
    /// Source and destination address as one little-endian word, as they sit in the
    /// header: with `ports` and `proto`, the flow key's two words.
    pub addrs: u64,
    /// Source and destination port as one word.
    pub ports: u32,
    pub proto: u8,
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
    /// Offset of the L4 checksum field.
    pub check_off: usize,
    pub tot_len: u16,
}

impl Packet {
    #[inline(always)]
    pub fn saddr(&self) -> u32 {
        self.addrs as u32
    }

    #[inline(always)]
    pub fn daddr(&self) -> u32 {
        (self.addrs >> 32) as u32
    }

    #[inline(always)]
    pub fn sport(&self) -> u16 {
        self.ports as u16
    }

    #[inline(always)]
    pub fn dport(&self) -> u16 {
        (self.ports >> 16) as u16
    }

    /// The flow key's bytes as two words (`FlowCacheEntry::key`); compiles to `addrs` and
    /// one or of `ports` and `proto`.
    #[inline(always)]
    pub fn key(&self) -> [u64; 2] {
        FlowKey::words(self.saddr(), self.daddr(), self.sport(), self.dport(), self.proto)
    }
}

#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Parsed {
    match parse_inner(ctx) {
        Some(p) => p,
        None => Parsed::Other,
    }
}

#[inline(always)]
fn parse_inner(ctx: &XdpContext) -> Option<Parsed> {
    if ether_type(ctx)? != ETH_P_IPV4 {
        return None;
    }
    let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_HDR_LEN)?;
    let (version_ihl, frag_off, proto, tot_len, saddr, daddr) = unsafe {
        (
            (*ip).version_ihl,
            u16::from_be((*ip).frag_off),
            (*ip).protocol,
            (*ip).tot_len,
            (*ip).saddr,
            (*ip).daddr,
        )
    };
    // Two 4-byte loads, not one 8-byte: frames start 2 bytes past a 4-byte boundary where
    // the verifier checks alignment (CPUs without efficient unaligned access).
    let addrs = u64::from(saddr) | u64::from(daddr) << 32;
    if version_ihl >> 4 != 4 {
        return None;
    }
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    // More-fragments flag or a fragment offset: part of a fragmented datagram.
    if frag_off & 0x3fff != 0 {
        return Some(Parsed::Unusual { daddr, fragment: true });
    }
    if version_ihl & 0x0f != 5 {
        return Some(Parsed::Unusual { daddr, fragment: false });
    }
    let (l4, check_off, tcp_flags) = if proto == PROTO_TCP {
        // The whole 20-byte TCP header must be there: we rewrite its checksum.
        let tcp = ptr_at::<[u8; 20]>(ctx, L4_OFF)?;
        (tcp as *const u32, L4_OFF + TCP_CHECK_OFF, unsafe { (*tcp)[13] })
    } else {
        let udp = ptr_at::<[u8; 8]>(ctx, L4_OFF)?;
        (udp as *const u32, L4_OFF + UDP_CHECK_OFF, 0)
    };
    Some(Parsed::L4(Packet {
        addrs,
        ports: unsafe { *l4 },
        proto,
        tcp_flags,
        check_off,
        tot_len,
    }))
}
