//! Bounds-checked access to packet bytes and the header layouts the programs read.
//!
//! Header structs are written by hand: we read five fixed layouts, and keeping them here
//! (in network byte order, as plain byte arrays where alignment matters) keeps the
//! verifier-visible code obvious.

use aya_ebpf::programs::XdpContext;

/// Returns a pointer to a `T` at `offset` bytes into the packet, or `None` when the
/// packet is too short. Every packet read goes through here, so no read is out of bounds.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// Mutable variant of [`ptr_at`], for rewriting headers in place.
#[inline(always)]
#[allow(dead_code)]
pub fn ptr_at_mut<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    ptr_at::<T>(ctx, offset).map(|p| p as *mut T)
}

pub const ETH_HDR_LEN: usize = 14;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
#[allow(dead_code)]
pub const ETH_P_8021Q: u16 = 0x8100;

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// Network byte order.
    pub ether_type: u16,
}

#[repr(C)]
pub struct Ipv4Hdr {
    /// Version (high nibble) and header length in 32-bit words (low nibble).
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag_off: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub check: u16,
    pub saddr: u32,
    pub daddr: u32,
}

#[repr(C)]
pub struct Ipv6Hdr {
    pub version_tc_flow: u32,
    pub payload_len: u16,
    pub next_header: u8,
    pub hop_limit: u8,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

/// The Ethernet type of the frame in host byte order, or `None` when truncated.
#[inline(always)]
pub fn ether_type(ctx: &XdpContext) -> Option<u16> {
    let eth = ptr_at::<EthHdr>(ctx, 0)?;
    Some(u16::from_be(unsafe { (*eth).ether_type }))
}
