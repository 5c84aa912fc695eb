//! `interlock_count`: counts every frame per IP protocol and passes it on.
//!
//! The first kernel program: it proves the build, load, attach, map and log chain.

use aya_ebpf::{bindings::xdp_action, macros::map, macros::xdp, maps::PerCpuArray, programs::XdpContext};
use aya_log_ebpf::info;
use interlock_common::{ProtoStats, PROTO_SLOTS, PROTO_SLOT_NON_IP};

use crate::packet::{ether_type, ptr_at, Ipv4Hdr, Ipv6Hdr, ETH_HDR_LEN, ETH_P_IPV4, ETH_P_IPV6};

#[map]
static PROTO_STATS: PerCpuArray<ProtoStats> = PerCpuArray::with_max_entries(PROTO_SLOTS, 0);

#[xdp]
pub fn interlock_count(ctx: XdpContext) -> u32 {
    let slot = ip_protocol(&ctx).map(u32::from).unwrap_or(PROTO_SLOT_NON_IP);
    let len = (ctx.data_end() - ctx.data()) as u64;
    if let Some(stats) = PROTO_STATS.get_ptr_mut(slot) {
        let stats = unsafe { &mut *stats };
        if stats.packets == 0 {
            // Once per protocol and CPU: enough to show kernel logs reach the agent.
            info!(&ctx, "first packet of IP protocol {} on this CPU ({} bytes)", slot, len);
        }
        stats.packets += 1;
        stats.bytes += len;
    }
    xdp_action::XDP_PASS
}

/// The IP protocol (IPv4) or first next-header (IPv6) of the frame.
#[inline(always)]
fn ip_protocol(ctx: &XdpContext) -> Option<u8> {
    match ether_type(ctx)? {
        ETH_P_IPV4 => Some(unsafe { (*ptr_at::<Ipv4Hdr>(ctx, ETH_HDR_LEN)?).protocol }),
        ETH_P_IPV6 => Some(unsafe { (*ptr_at::<Ipv6Hdr>(ctx, ETH_HDR_LEN)?).next_header }),
        _ => None,
    }
}
