//! A per-CPU cache in front of the connection table, for flows that send many packets.
//!
//! The connection-table lookup is the costliest step of an established packet (an LRU hash
//! lookup is a call into the kernel with a hash and a key compare, ~40 ns here); an array
//! slot the verifier inlines costs a few. An entry is used only during the jiffy it was
//! read from the table in, so a busy flow still reads (and refreshes) its table entry once
//! per jiffy on each CPU, and anything the table says (expiry, removal, a new translation)
//! takes effect within one jiffy. FIN and RST never use the cache: they must mark the
//! table entry closing. Nor does SYN: it opens a flow, so its slot would be a cold miss
//! (probing it cost a new flow ~100-250 ns in the bench).
//!
//! An entry also holds what follows from the translation (checksum deltas, next hop), so a
//! cached packet is rewritten straight from it: no checksum sums, no next-hop lookup.
use interlock_common::lb::{FlowCacheEntry, LbConfig, FLOW_CACHE_SLOTS};

use super::maps::LB_FLOW_CACHE;
use super::parse::{Packet, TCP_FIN, TCP_RST, TCP_SYN};

#[inline(always)]
fn usable(p: &Packet, cfg: &LbConfig) -> bool {
    cfg.flow_cache != 0 && p.tcp_flags & (TCP_FIN | TCP_SYN | TCP_RST) == 0
}

/// The slot of a flow key (its two words): a multiplicative hash of the folded key, cheaper
/// than `flow_hash` (the Maglev pick needs a better one; a direct-mapped cache does not).
#[inline(always)]
pub fn slot(key: &[u64; 2]) -> u32 {
    ((key[0] ^ key[1].rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as u32 % FLOW_CACHE_SLOTS
}

/// This CPU's entry for `key`, if it was read from the table this jiffy.
#[inline(always)]
pub fn get(key: &[u64; 2], slot: u32, p: &Packet, now: u64, cfg: &LbConfig) -> Option<*const FlowCacheEntry> {
    if !usable(p, cfg) {
        return None;
    }
    let e = LB_FLOW_CACHE.get_ptr(slot)?;
    // Two word compares: the entry is 8-byte aligned, its key the key's bytes.
    if unsafe { (*e).stamp == now as u32 && (*e).key[0] == key[0] && (*e).key[1] == key[1] } {
        Some(e)
    } else {
        None
    }
}

/// Remembers `x` (what the table said this jiffy, and what follows from it).
#[inline(always)]
pub fn put(slot: u32, x: &FlowCacheEntry, p: &Packet, cfg: &LbConfig) {
    if !usable(p, cfg) {
        return;
    }
    if let Some(e) = LB_FLOW_CACHE.get_ptr_mut(slot) {
        // Field by field: a struct assignment may become a `memcpy` call in BPF.
        unsafe {
            (*e).key = x.key;
            (*e).value = x.value;
            (*e).stamp = x.stamp;
            (*e).ip_delta = x.ip_delta;
            (*e).l4_delta = x.l4_delta;
            (*e).ifindex = x.ifindex;
            (*e).macs = x.macs;
        }
    }
}
