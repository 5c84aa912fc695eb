//! Rewriting a packet to its translation and sending it towards the next hop.
use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibParams, xdp_action, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use interlock_common::lb::{nexthop_slot, FlowCacheEntry, FlowValue, NextHop, PROTO_UDP};

use super::csum;
use super::maps::LB_NEXTHOPS;
use super::parse::{Packet, L4_OFF};
use crate::packet::{ptr_at_mut, Ipv4Hdr, ETH_HDR_LEN};

const AF_INET: u8 = 2;

/// What the translation `p` -> `to` adds to the IPv4 and to the L4 checksum (see
/// `FlowCacheEntry::ip_delta`): computed once per flow and jiffy, applied to every packet.
#[inline(always)]
pub fn deltas(p: &Packet, to: &FlowValue) -> (u16, u16) {
    let ip = csum::add32(csum::add32(0, p.saddr(), to.saddr), p.daddr(), to.daddr);
    // The L4 checksum covers the pseudo-header addresses and the ports.
    let l4 = csum::add16(csum::add16(ip, p.sport(), to.sport), p.dport(), to.dport);
    (csum::fold(ip), csum::fold(l4))
}

/// Bytes from the frame's start up to the end of the ports: every field `send` writes but
/// the L4 checksum.
const HDRS_LEN: usize = L4_OFF + 4;

/// Rewrites the packet to the translation in `x`: addresses, ports, checksums, MACs. `None`
/// when the packet became shorter than parsed (cannot happen; keeps the verifier sure).
#[inline(always)]
pub fn rewrite(ctx: &XdpContext, p: &Packet, x: &FlowCacheEntry) -> Option<()> {
    // One bounds check for the headers, one for the checksum (its offset depends on the
    // protocol): ~10 instructions fewer than a check per field.
    let hdrs = ptr_at_mut::<[u8; HDRS_LEN]>(ctx, 0)? as *mut u8;
    let check = ptr_at_mut::<u16>(ctx, p.check_off)?;
    unsafe {
        let ip = hdrs.add(ETH_HDR_LEN) as *mut Ipv4Hdr;
        (*ip).check = csum::apply((*ip).check, x.ip_delta);
        (*ip).saddr = x.value.saddr;
        (*ip).daddr = x.value.daddr;
        let old = *check;
        // A UDP checksum of 0 means "none": leave it so.
        if !(p.proto == PROTO_UDP && old == 0) {
            let new = csum::apply(old, x.l4_delta);
            *check = if p.proto == PROTO_UDP && new == 0 { 0xffff } else { new };
        }
        let ports = hdrs.add(L4_OFF) as *mut [u16; 2];
        (*ports)[0] = x.value.sport;
        (*ports)[1] = x.value.dport;
        // Word stores: a `[u8; 6]` assignment compiles to a call to a byte-loop `memmove`
        // in BPF (~20 ns a packet). Split 2-4-4-2: frames start 2 bytes past a 4-byte
        // boundary where the verifier checks alignment (CPUs without efficient unaligned
        // access), and so do the entry's MACs.
        let macs = x.macs.as_ptr() as *const u8;
        core::ptr::write_volatile(hdrs as *mut u16, *(macs as *const u16));
        core::ptr::write_volatile(hdrs.add(2) as *mut u32, *(macs.add(2) as *const u32));
        core::ptr::write_volatile(hdrs.add(6) as *mut u32, *(macs.add(6) as *const u32));
        core::ptr::write_volatile(hdrs.add(10) as *mut u16, *(macs.add(10) as *const u16));
    }
    Some(())
}

/// The XDP action that sends a rewritten packet to `ifindex`: TX out of the interface it
/// came in on, else REDIRECT.
#[inline(always)]
pub fn out(ctx: &XdpContext, ifindex: u32) -> u32 {
    if ifindex == ctx.ingress_ifindex() as u32 {
        xdp_action::XDP_TX
    } else {
        unsafe { bpf_redirect(ifindex, 0) as u32 }
    }
}

/// The next hop of `to.daddr` from this CPU's cache, asking the FIB when the slot holds
/// another destination or expired. `None`: no route or no neighbour entry yet.
#[inline(always)]
pub fn next_hop(ctx: &XdpContext, p: &Packet, to: &FlowValue, now: u64, ttl: u32) -> Option<*const NextHop> {
    let slot = LB_NEXTHOPS.get_ptr_mut(nexthop_slot(to.daddr))?;
    unsafe {
        if (*slot).daddr != to.daddr || (*slot).expires <= now {
            *slot = fib_lookup(ctx, p, to, now + u64::from(ttl))?;
        }
        Some(slot)
    }
}

/// Asks the kernel's FIB and neighbour table for the next hop of `to.daddr`.
#[inline(always)]
fn fib_lookup(ctx: &XdpContext, p: &Packet, to: &FlowValue, expires: u64) -> Option<NextHop> {
    let mut fib: FibParams = unsafe { core::mem::zeroed() };
    fib.family = AF_INET;
    fib.l4_protocol = p.proto;
    fib.sport = to.sport;
    fib.dport = to.dport;
    fib.__bindgen_anon_1.tot_len = u16::from_be(p.tot_len);
    fib.ifindex = ctx.ingress_ifindex() as u32;
    fib.__bindgen_anon_3.ipv4_src = to.saddr;
    fib.__bindgen_anon_4.ipv4_dst = to.daddr;
    let rc = unsafe { bpf_fib_lookup(ctx.ctx as *mut _, &mut fib, core::mem::size_of::<FibParams>() as i32, 0) };
    if rc != i64::from(BPF_FIB_LKUP_RET_SUCCESS) {
        return None;
    }
    let (d, s) = (fib.dmac, fib.smac);
    Some(NextHop {
        daddr: to.daddr,
        ifindex: fib.ifindex,
        macs: [
            u16::from_ne_bytes([d[0], d[1]]),
            u16::from_ne_bytes([d[2], d[3]]),
            u16::from_ne_bytes([d[4], d[5]]),
            u16::from_ne_bytes([s[0], s[1]]),
            u16::from_ne_bytes([s[2], s[3]]),
            u16::from_ne_bytes([s[4], s[5]]),
        ],
        _pad: 0,
        expires,
    })
}
