//! Rewriting a packet to its translation and sending it towards the next hop.
use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibParams, xdp_action, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use interlock_common::lb::{nexthop_slot, FlowValue, NextHop, PROTO_UDP};

use super::csum;
use super::maps::LB_NEXTHOPS;
use super::parse::{Packet, L4_OFF};
use crate::packet::{ptr_at_mut, Ipv4Hdr, ETH_HDR_LEN};

const AF_INET: u8 = 2;

/// Rewrites addresses and ports to `to`, with incremental IP and L4 checksum updates.
/// `None` when the packet became shorter than parsed (cannot happen; keeps the verifier sure).
#[inline(always)]
pub fn rewrite(ctx: &XdpContext, p: &Packet, to: &FlowValue) -> Option<()> {
    let ip = ptr_at_mut::<Ipv4Hdr>(ctx, ETH_HDR_LEN)?;
    let ports = ptr_at_mut::<[u16; 2]>(ctx, L4_OFF)?;
    let check = ptr_at_mut::<u16>(ctx, p.check_off)?;
    unsafe {
        let ip_acc = u64::from(!(*ip).check);
        let ip_acc = csum::add32(ip_acc, p.saddr, to.saddr);
        let ip_acc = csum::add32(ip_acc, p.daddr, to.daddr);
        (*ip).check = csum::finish(ip_acc);
        (*ip).saddr = to.saddr;
        (*ip).daddr = to.daddr;

        let old = *check;
        // A UDP checksum of 0 means "none": leave it so.
        if !(p.proto == PROTO_UDP && old == 0) {
            // The L4 checksum covers the pseudo-header addresses and the ports.
            let acc = u64::from(!old);
            let acc = csum::add32(acc, p.saddr, to.saddr);
            let acc = csum::add32(acc, p.daddr, to.daddr);
            let acc = csum::add16(acc, p.sport, to.sport);
            let acc = csum::add16(acc, p.dport, to.dport);
            let new = csum::finish(acc);
            *check = if p.proto == PROTO_UDP && new == 0 { 0xffff } else { new };
        }
        (*ports)[0] = to.sport;
        (*ports)[1] = to.dport;
    }
    Some(())
}

/// Sets the MACs of the next hop of the (rewritten) packet and returns the XDP action: TX
/// out of the same interface, else REDIRECT. `None`: no route or no neighbour entry yet.
#[inline(always)]
pub fn forward(ctx: &XdpContext, p: &Packet, to: &FlowValue, now: u64, ttl: u32) -> Option<u32> {
    let slot = LB_NEXTHOPS.get_ptr_mut(nexthop_slot(to.daddr))?;
    let hop = unsafe {
        if (*slot).daddr != to.daddr || (*slot).expires <= now {
            *slot = fib_lookup(ctx, p, to, now + u64::from(ttl))?;
        }
        &*slot
    };
    let macs = ptr_at_mut::<[u16; 6]>(ctx, 0)?;
    unsafe {
        put_mac(macs, 0, &hop.dmac);
        put_mac(macs, 3, &hop.smac);
    }
    if hop.ifindex == ctx.ingress_ifindex() as u32 {
        Some(xdp_action::XDP_TX)
    } else {
        Some(unsafe { bpf_redirect(hop.ifindex, 0) } as u32)
    }
}

/// Writes `mac` as 16-bit words `at..at + 3` of the Ethernet header. Volatile word stores:
/// a plain `[u8; 6]` assignment compiles to a call to a byte-loop `memmove` in BPF, which
/// cost ~20 ns a packet.
#[inline(always)]
unsafe fn put_mac(hdr: *mut [u16; 6], at: usize, mac: &[u8; 6]) {
    let words = hdr as *mut u16;
    for i in 0..3 {
        core::ptr::write_volatile(words.add(at + i), u16::from_ne_bytes([mac[2 * i], mac[2 * i + 1]]));
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
    Some(NextHop {
        daddr: to.daddr,
        ifindex: fib.ifindex,
        smac: fib.smac,
        dmac: fib.dmac,
        expires,
    })
}
