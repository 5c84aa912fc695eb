//! `interlock_lb`: the XDP full-NAT load balancer.
//!
//! Order of decisions for an IPv4 TCP/UDP packet:
//! 1. its 5-tuple is in the connection table (or this CPU's flow cache, see flowcache.rs):
//!    translate (forward to the backend, or a backend's reply back to the client as if
//!    from the VIP);
//! 2. it is for a VIP: new flow, backend from the VIP's live Maglev table, recorded both ways;
//! 3. anything else passes to the kernel untouched (IPv6, ARP, non-VIP traffic).
//!
//! Fragments and packets with IP options to a VIP address are dropped and counted
//! (`fragment`, `ip_options`): XDP cannot reassemble, and options are rare enough not to
//! justify a variable-offset L4 parse.
mod conntrack;
mod csum;
mod flowcache;
mod maps;
mod nat;
mod parse;

use aya_ebpf::{bindings::xdp_action, helpers::bpf_jiffies64, macros::xdp, programs::XdpContext};
use interlock_common::lb::{
    addr_filter_bit, DropReason, FlowCacheEntry, FlowValue, LbConfig, VipKey, FLOW_REVERSE, MAGLEV_CHUNKS,
    MAGLEV_EMPTY, MAGLEV_LANES, MAGLEV_SIZE,
};

use conntrack::CtError;
use maps::{
    LB_ADDR_FILTER, LB_BACKENDS, LB_BACKEND_STATS, LB_BENCH, LB_CONFIG, LB_DROPS, LB_MAGLEV, LB_VIPS, LB_VIP_ADDRS,
    LB_VIP_STATS,
};
use parse::{Packet, Parsed};

/// `frags`: multi-buffer aware, so interfaces with an MTU above a page (jumbo frames on veth)
/// accept it; every header it reads and writes is in the first buffer (else it passes).
#[xdp(frags)]
pub fn interlock_lb(ctx: XdpContext) -> u32 {
    match parse::parse(&ctx) {
        Parsed::Other => xdp_action::XDP_PASS,
        Parsed::Unusual { daddr, fragment } => {
            if unsafe { LB_VIP_ADDRS.get(&daddr) }.is_some() {
                drop(if fragment {
                    DropReason::Fragment
                } else {
                    DropReason::IpOptions
                })
            } else {
                xdp_action::XDP_PASS
            }
        }
        Parsed::L4(p) => balance(&ctx, &p),
    }
}

/// Benchmark driver (`cargo xtask bench l4`, repeated runs reuse one buffer): rewrites the
/// buffer into a packet from a client address and port never used before towards the VIP in
/// `LB_BENCH`, then balances it, so every repetition takes the new-flow path.
#[xdp]
pub fn interlock_lb_bench_new(ctx: XdpContext) -> u32 {
    let Some(seed) = LB_BENCH.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let ip = crate::packet::ptr_at_mut::<crate::packet::Ipv4Hdr>(&ctx, crate::packet::ETH_HDR_LEN);
    let ports = crate::packet::ptr_at_mut::<[u16; 2]>(&ctx, parse::L4_OFF);
    let (Some(ip), Some(ports)) = (ip, ports) else {
        return xdp_action::XDP_ABORTED;
    };
    unsafe {
        (*seed).seq += 1;
        let seq = (*seed).seq;
        (*ip).saddr = (0x0a80_0000 | (seq >> 15)).to_be();
        (*ip).daddr = (*seed).daddr;
        (*ports)[0] = ((seq & 0x7fff) as u16 + 1024).to_be();
        (*ports)[1] = (*seed).dport;
    }
    match parse::parse(&ctx) {
        Parsed::L4(p) => balance(&ctx, &p),
        _ => xdp_action::XDP_ABORTED,
    }
}

/// The floor of the benchmark: the cheapest XDP program there is.
#[xdp]
pub fn interlock_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The kernel's jiffies (low 32 bits) as the return value: user space runs it twice to
/// learn HZ, which the timeouts in `LbConfig` are counted in (interlock-user/src/l4/clock.rs).
#[xdp]
pub fn interlock_jiffies(_ctx: XdpContext) -> u32 {
    unsafe { bpf_jiffies64() as u32 }
}

#[inline(always)]
fn balance(ctx: &XdpContext, p: &Packet) -> u32 {
    // Only packets to a VIP address or to our source address can be ours: everything else
    // passes after one inlined array read instead of a connection-table probe.
    if !maybe_ours(p.daddr()) {
        return xdp_action::XDP_PASS;
    }
    let cfg = match LB_CONFIG.get(0) {
        Some(c) if c.snat_addr != 0 => c,
        _ => return xdp_action::XDP_PASS,
    };
    let key = p.key();
    // Jiffies: enough for idle timeouts and 1 s caches, and inlined (no helper call).
    let now = unsafe { bpf_jiffies64() };
    // The frame's length from the IP header: with multi-buffer frames (jumbo MTUs) the
    // linear part `data..data_end` is only the first buffer.
    let len = u64::from(u16::from_be(p.tot_len)) + crate::packet::ETH_HDR_LEN as u64;
    let slot = flowcache::slot(&key);
    // A busy flow's packet: everything it needs is in this CPU's cache entry.
    if let Some(e) = flowcache::get(&key, slot, p, now, cfg) {
        return established(ctx, p, unsafe { &*e }, len);
    }
    if let Some(to) = conntrack::lookup(&conntrack::key_of(p), p, now, cfg) {
        let Some(x) = prepare(ctx, p, key, &to, now, cfg) else {
            count_flow(&to, len, false);
            return drop(DropReason::NoRoute);
        };
        flowcache::put(slot, &x, p, cfg);
        return established(ctx, p, &x, len);
    }
    new_flow(ctx, p, key, now, len, cfg)
}

/// Counts and sends an established flow's packet.
#[inline(always)]
fn established(ctx: &XdpContext, p: &Packet, x: &FlowCacheEntry, len: u64) -> u32 {
    count_flow(&x.value, len, false);
    send(ctx, p, x)
}

/// Rewrites `p` to the translation in `x` and sends it to `x`'s next hop.
#[inline(always)]
fn send(ctx: &XdpContext, p: &Packet, x: &FlowCacheEntry) -> u32 {
    if nat::rewrite(ctx, p, x).is_none() {
        return xdp_action::XDP_ABORTED;
    }
    nat::out(ctx, x.ifindex)
}

/// Counts a packet of a flow for its backend, and for its VIP when it goes to the backend.
#[inline(always)]
fn count_flow(to: &FlowValue, len: u64, new_flow: bool) {
    if to.flags & FLOW_REVERSE == 0 {
        count(&LB_VIP_STATS, u32::from(to.vip_slot), len, new_flow);
    }
    count(&LB_BACKEND_STATS, u32::from(to.backend), len, new_flow);
}

/// What sending `p` translated to `to` takes (the flow cache's entry): checksum deltas and
/// the next hop. `None`: no route or no neighbour entry yet.
#[inline(always)]
fn prepare(
    ctx: &XdpContext,
    p: &Packet,
    key: [u64; 2],
    to: &FlowValue,
    now: u64,
    cfg: &LbConfig,
) -> Option<FlowCacheEntry> {
    let hop = unsafe { &*nat::next_hop(ctx, p, to, now, cfg.nexthop_ttl)? };
    let (ip_delta, l4_delta) = nat::deltas(p, to);
    Some(FlowCacheEntry {
        key,
        value: *to,
        stamp: now as u32,
        ip_delta,
        l4_delta,
        ifindex: hop.ifindex,
        macs: hop.macs,
        _pad: 0,
    })
}

/// A packet to a VIP without a connection-table entry: picks a backend, records the flow.
#[inline(always)]
fn new_flow(ctx: &XdpContext, p: &Packet, key: [u64; 2], now: u64, len: u64, cfg: &LbConfig) -> u32 {
    let vip_key = VipKey {
        addr: p.daddr(),
        port: p.dport(),
        proto: p.proto,
        _pad: 0,
    };
    let Some(vip) = (unsafe { LB_VIPS.get(&vip_key) }) else {
        return xdp_action::XDP_PASS;
    };
    let slot = vip.slot;
    let h = flow_hash(p) % MAGLEV_SIZE;
    let chunk = (slot * 2 + (vip.table & 1)) * MAGLEV_CHUNKS + h / MAGLEV_LANES;
    let lane = (h % MAGLEV_LANES) as usize;
    let backend = match LB_MAGLEV.get(chunk).and_then(|c| c.get(lane)) {
        Some(&b) if b != MAGLEV_EMPTY => b,
        _ => return drop(DropReason::NoBackend),
    };
    let Some(b) = LB_BACKENDS.get(backend) else {
        return drop(DropReason::NoBackend);
    };
    let ct_key = conntrack::key_of(p);
    let to = match conntrack::create(&ct_key, p, b.addr, b.port, backend as u16, slot as u8, now, cfg) {
        Ok(to) => to,
        Err(CtError::NoPort) => return drop(DropReason::NoPort),
        Err(CtError::Table) => return drop(DropReason::FlowTable),
    };
    count_flow(&to, len, true);
    let Some(x) = prepare(ctx, p, key, &to, now, cfg) else {
        return drop(DropReason::NoRoute);
    };
    send(ctx, p, &x)
}

/// The address filter: false for addresses that are certainly neither a VIP nor ours.
#[inline(always)]
fn maybe_ours(daddr: u32) -> bool {
    let (word, bit) = addr_filter_bit(daddr);
    match LB_ADDR_FILTER.get(word) {
        Some(w) => w & bit != 0,
        None => false,
    }
}

#[inline(always)]
fn count(map: &aya_ebpf::maps::PerCpuArray<interlock_common::lb::LbStats>, index: u32, len: u64, new_flow: bool) {
    if let Some(s) = map.get_ptr_mut(index) {
        let s = unsafe { &mut *s };
        s.packets += 1;
        s.bytes += len;
        if new_flow {
            s.new_flows += 1;
        }
    }
}

#[inline(always)]
fn drop(reason: DropReason) -> u32 {
    if let Some(n) = LB_DROPS.get_ptr_mut(reason as u32) {
        unsafe { *n += 1 };
    }
    xdp_action::XDP_DROP
}

/// A well-mixed hash of the 5-tuple (murmur3's finalizer over the folded words): the same
/// flow always lands on the same Maglev slot, different flows spread evenly.
#[inline(always)]
fn flow_hash(p: &Packet) -> u32 {
    let mut h = p.saddr() ^ p.daddr().rotate_left(7);
    h ^= (u32::from(p.sport()) << 16 | u32::from(p.dport())).rotate_left(13);
    h ^= u32::from(p.proto);
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}
