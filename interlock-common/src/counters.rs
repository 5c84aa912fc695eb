//! Packet counters kept by the first kernel program (`interlock_count`).

/// Slots of the per-protocol counter array: one per IP protocol number (0..=255),
/// plus one for frames that are not IPv4/IPv6.
pub const PROTO_SLOTS: u32 = 257;
/// The slot that counts frames that carry no IP packet (ARP, truncated frames, ...).
pub const PROTO_SLOT_NON_IP: u32 = 256;

/// Per-CPU value of the `PROTO_STATS` map: what one CPU saw of one IP protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProtoStats {
    pub packets: u64,
    pub bytes: u64,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for ProtoStats {}
