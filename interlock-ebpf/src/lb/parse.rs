//! Bounds-checked parse of Ethernet + IPv4 + TCP/UDP: everything the balancer decides on.
use aya_ebpf::programs::XdpContext;
use interlock_common::lb::{PROTO_TCP, PROTO_UDP};

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
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
    /// Offset of the L4 checksum field.
    pub check_off: usize,
    pub tot_len: u16,
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
    let (version_ihl, frag_off, proto, saddr, daddr, tot_len) = unsafe {
        (
            (*ip).version_ihl,
            u16::from_be((*ip).frag_off),
            (*ip).protocol,
            (*ip).saddr,
            (*ip).daddr,
            (*ip).tot_len,
        )
    };
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
    let (check_off, tcp_flags) = if proto == PROTO_TCP {
        // The whole 20-byte TCP header must be there: we rewrite its checksum.
        let tcp = ptr_at::<[u8; 20]>(ctx, L4_OFF)?;
        (L4_OFF + TCP_CHECK_OFF, unsafe { (*tcp)[13] })
    } else {
        ptr_at::<[u8; 8]>(ctx, L4_OFF)?;
        (L4_OFF + UDP_CHECK_OFF, 0)
    };
    let ports = ptr_at::<[u16; 2]>(ctx, L4_OFF)?;
    let (sport, dport) = unsafe { ((*ports)[0], (*ports)[1]) };
    Some(Parsed::L4(Packet {
        saddr,
        daddr,
        sport,
        dport,
        proto,
        tcp_flags,
        check_off,
        tot_len,
    }))
}
