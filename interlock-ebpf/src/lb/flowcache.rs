//! A per-CPU cache in front of the connection table, for flows that send many packets.
//!
//! The connection-table lookup is the costliest step of an established packet (an LRU hash
//! lookup is a call into the kernel with a hash and a key compare, ~40 ns here); an array
//! slot the verifier inlines costs a few. An entry is used only during the jiffy it was
//! read from the table in, so a busy flow still reads (and refreshes) its table entry once
//! per jiffy on each CPU, and anything the table says (expiry, removal, a new translation)
//! takes effect within one jiffy. FIN and RST never use the cache: they must mark the
//! table entry closing.
use interlock_common::lb::{FlowCacheEntry, FlowKey, FlowValue, LbConfig, FLOW_CACHE_SLOTS};

use super::maps::LB_FLOW_CACHE;
use super::parse::{Packet, TCP_FIN, TCP_RST};

#[inline(always)]
fn usable(p: &Packet, cfg: &LbConfig) -> bool {
    cfg.flow_cache != 0 && p.tcp_flags & (TCP_FIN | TCP_RST) == 0
}

/// The cached translation of `key`, if this CPU read it from the table this jiffy.
#[inline(always)]
pub fn get(key: &FlowKey, hash: u32, p: &Packet, now: u64, cfg: &LbConfig) -> Option<FlowValue> {
    if !usable(p, cfg) {
        return None;
    }
    let e = unsafe { &*LB_FLOW_CACHE.get_ptr(hash % FLOW_CACHE_SLOTS)? };
    if e.stamp == now as u32 && e.key == *key {
        Some(e.value)
    } else {
        None
    }
}

/// Remembers what the table said about `key` this jiffy.
#[inline(always)]
pub fn put(key: &FlowKey, hash: u32, value: &FlowValue, p: &Packet, now: u64, cfg: &LbConfig) {
    if !usable(p, cfg) {
        return;
    }
    if let Some(e) = LB_FLOW_CACHE.get_ptr_mut(hash % FLOW_CACHE_SLOTS) {
        unsafe {
            *e = FlowCacheEntry {
                key: *key,
                value: *value,
                stamp: now as u32,
            }
        };
    }
}
