//! The connection table: lookups with expiry, and recording a new flow in both directions.
use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_get_prandom_u32};
use interlock_common::lb::{
    FlowKey, FlowValue, LbConfig, FLOW_CLOSING, FLOW_REVERSE, PROTO_TCP, SNAT_PORT_MAX, SNAT_PORT_MIN, SNAT_PORT_TRIES,
};

use super::maps::LB_FLOWS;
use super::parse::{Packet, TCP_FIN, TCP_RST};

#[inline(always)]
pub fn key_of(p: &Packet) -> FlowKey {
    FlowKey::new(p.saddr(), p.daddr(), p.sport(), p.dport(), p.proto)
}

/// Timestamps are the low 32 bits of jiffies: an entry fits 20 bytes; they wrap after
/// 49 days at HZ=1000, compared with wrapping maths.
#[inline(always)]
fn tick(now: u64) -> u32 {
    now as u32
}

#[inline(always)]
fn expired(v: &FlowValue, proto: u8, now: u64, cfg: &LbConfig) -> bool {
    let idle = if v.flags & FLOW_CLOSING != 0 {
        cfg.tcp_closing
    } else if proto == PROTO_TCP {
        cfg.tcp_idle
    } else {
        cfg.udp_idle
    };
    let age = tick(now).wrapping_sub(v.last_seen);
    // An age past half the range is a stamp from the future: another CPU stamped the entry
    // after we read the clock. Not expired.
    age < 0x8000_0000 && age > idle
}

#[inline(always)]
fn expired_at(key: &FlowKey, proto: u8, now: u64, cfg: &LbConfig) -> bool {
    match LB_FLOWS.get_ptr(key) {
        Some(old) => expired(unsafe { &*old }, proto, now, cfg),
        None => true,
    }
}

/// The live entry for this packet, refreshed (and marked closing on FIN/RST); a copy.
#[inline(always)]
pub fn lookup(key: &FlowKey, p: &Packet, now: u64, cfg: &LbConfig) -> Option<FlowValue> {
    let v = LB_FLOWS.get_ptr_mut(key)?;
    let v = unsafe { &mut *v };
    if expired(v, p.proto, now, cfg) {
        return None;
    }
    // Written only when the tick moved: fewer stores to a line other CPUs may read.
    if v.last_seen != tick(now) {
        v.last_seen = tick(now);
    }
    if p.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
        v.flags |= FLOW_CLOSING;
    }
    Some(*v)
}

/// Why a flow could not be recorded.
pub enum CtError {
    NoPort,
    Table,
}

/// Records a new flow: claims a source port towards the backend by writing its reverse
/// entry (free or expired), then writes the forward one. Returns the forward value.
#[inline(always)]
pub fn create(
    key: &FlowKey,
    p: &Packet,
    backend_addr: u32,
    backend_port: u16,
    backend: u16,
    vip_slot: u8,
    now: u64,
    cfg: &LbConfig,
) -> Result<FlowValue, CtError> {
    let closing = if p.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
        FLOW_CLOSING
    } else {
        0
    };
    let reverse = FlowValue {
        saddr: p.daddr(),
        daddr: p.saddr(),
        sport: p.dport(),
        dport: p.sport(),
        backend,
        vip_slot,
        flags: FLOW_REVERSE | closing,
        last_seen: tick(now),
    };
    let range = u32::from(SNAT_PORT_MAX - SNAT_PORT_MIN) + 1;
    // A random first candidate (as the kernel picks ephemeral ports): a hash of the tuple
    // would make flows that share a backend chase the same ports.
    let start = unsafe { bpf_get_prandom_u32() };
    let mut i = 0;
    while i < SNAT_PORT_TRIES {
        let port = SNAT_PORT_MIN + (start.wrapping_add(i.wrapping_mul(7919)) % range) as u16;
        let rkey = FlowKey::new(backend_addr, cfg.snat_addr, backend_port, port.to_be(), p.proto);
        // NOEXIST, so a CPU racing us for the same port makes one of us move on; a port
        // whose reverse entry expired is taken over.
        let taken = LB_FLOWS.insert(&rkey, &reverse, u64::from(BPF_NOEXIST)).is_ok()
            || (expired_at(&rkey, p.proto, now, cfg) && LB_FLOWS.insert(&rkey, &reverse, 0).is_ok());
        if taken {
            let forward = FlowValue {
                saddr: cfg.snat_addr,
                daddr: backend_addr,
                sport: port.to_be(),
                dport: backend_port,
                backend,
                vip_slot,
                flags: closing,
                last_seen: tick(now),
            };
            if LB_FLOWS.insert(key, &forward, 0).is_err() {
                let _ = LB_FLOWS.remove(&rkey);
                return Err(CtError::Table);
            }
            return Ok(forward);
        }
        i += 1;
    }
    Err(CtError::NoPort)
}
