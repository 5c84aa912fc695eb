//! Map keys, values and sizes of the L4 load balancer (`interlock_lb`).
//!
//! Addresses and ports are kept in network byte order exactly as they appear in the
//! packet, so the kernel side copies them without swapping; the user side converts.

/// Maglev table size per VIP (prime). Every VIP has two tables of this size (double buffer).
pub const MAGLEV_SIZE: u32 = 65537;
/// VIPs the balancer can serve at once.
pub const MAX_VIPS: u32 = 64;
/// Backends over all VIPs (ids `0..MAX_BACKENDS`).
pub const MAX_BACKENDS: u32 = 4096;
/// Connection-table entries: two per flow (forward and reverse), so 1M flows.
pub const MAX_FLOW_ENTRIES: u32 = 2 * 1024 * 1024;
/// Maglev slots per array entry: array values are padded to 8 bytes, so single u32 slots
/// would waste half the memory; 16 per entry waste none and cut user-space writes 16-fold.
pub const MAGLEV_LANES: u32 = 16;
/// Array entries per Maglev table.
pub const MAGLEV_CHUNKS: u32 = MAGLEV_SIZE.div_ceil(MAGLEV_LANES);
/// Entries of the Maglev array: a double-buffered table per VIP slot.
pub const MAGLEV_ENTRIES: u32 = MAX_VIPS * 2 * MAGLEV_CHUNKS;
/// Maglev slot value meaning "no backend" (a VIP whose backend set is empty).
pub const MAGLEV_EMPTY: u32 = u32::MAX;

/// Source ports the balancer allocates on the backend side (host byte order, inclusive).
/// Keep this range out of the balancer host's `ip_local_port_range`.
pub const SNAT_PORT_MIN: u16 = 20000;
pub const SNAT_PORT_MAX: u16 = 29999;
/// Tries to find a free source port for a new flow before giving up (bounded loop).
pub const SNAT_PORT_TRIES: u32 = 8;

/// Idle timeouts: an entry idle longer is treated as gone. The data path counts time in
/// jiffies (`bpf_jiffies64`, which the verifier inlines, unlike the ktime helpers); user
/// space converts these with the kernel's HZ into `LbConfig`.
pub const TCP_IDLE_SECS: u32 = 300;
/// After a FIN or RST the entry lives this long (the last ACKs still get through).
pub const TCP_CLOSING_SECS: u32 = 10;
pub const UDP_IDLE_SECS: u32 = 30;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Key of `LB_VIPS`: a (VIP address, port, protocol) the balancer serves.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipKey {
    /// Network byte order.
    pub addr: u32,
    /// Network byte order.
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// Value of `LB_VIPS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipValue {
    /// Slot of this VIP (`0..MAX_VIPS`): index of its stats and Maglev tables.
    pub slot: u32,
    /// Which of the VIP's two Maglev tables is live (0 or 1); flipped in one map write.
    pub table: u32,
}

/// Value of `LB_BACKENDS`, indexed by backend id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendValue {
    /// Network byte order.
    pub addr: u32,
    /// Network byte order.
    pub port: u16,
    pub _pad: u16,
}

/// Value of `LB_CONFIG[0]`: settings of the balancer as a whole.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbConfig {
    /// The balancer's source address towards backends (network byte order); 0: not configured,
    /// VIP traffic passes to the kernel untouched.
    pub snat_addr: u32,
    /// Timeouts in jiffies (see `TCP_IDLE_SECS`).
    pub tcp_idle: u32,
    pub tcp_closing: u32,
    pub udp_idle: u32,
    /// How long a cached next hop is used before the FIB is asked again (jiffies).
    pub nexthop_ttl: u32,
    /// 1: established packets may use the per-CPU flow cache `LB_FLOW_CACHE`; 0: every
    /// packet looks the connection table up.
    pub flow_cache: u32,
    /// Jiffies per second of this kernel, as user space measured it.
    pub hz: u32,
}

impl LbConfig {
    /// The configuration for a kernel ticking `hz` jiffies a second.
    pub const fn new(snat_addr: u32, hz: u32) -> LbConfig {
        LbConfig {
            snat_addr,
            tcp_idle: TCP_IDLE_SECS * hz,
            tcp_closing: TCP_CLOSING_SECS * hz,
            udp_idle: UDP_IDLE_SECS * hz,
            nexthop_ttl: hz,
            flow_cache: 1,
            hz,
        }
    }
}

/// Key of `LB_FLOWS`: the 5-tuple of a packet as it arrives (network byte order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// Two scalar pads rather than `[u8; 3]`: an array field makes the BPF build zero it
    /// with a call to a byte-loop `memset` on every packet.
    pub _pad: u8,
    pub _pad2: u16,
}

impl FlowKey {
    /// The key's bytes as two little-endian words, the layout of `FlowCacheEntry::key`
    /// (BPF is little-endian; only the kernel program and tests use it).
    #[inline(always)]
    pub const fn words(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8) -> [u64; 2] {
        [
            saddr as u64 | (daddr as u64) << 32,
            sport as u64 | (dport as u64) << 16 | (proto as u64) << 32,
        ]
    }

    #[inline(always)]
    pub const fn new(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8) -> FlowKey {
        FlowKey {
            saddr,
            daddr,
            sport,
            dport,
            proto,
            _pad: 0,
            _pad2: 0,
        }
    }
}

/// `FlowValue::flags`: this entry translates backend replies back to the client.
pub const FLOW_REVERSE: u8 = 1;
/// `FlowValue::flags`: a FIN or RST was seen; the entry expires after `TCP_CLOSING_SECS`.
pub const FLOW_CLOSING: u8 = 2;

/// Value of `LB_FLOWS`: the addresses and ports a matching packet is rewritten to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    /// The backend chosen for this flow (stats).
    pub backend: u16,
    /// The VIP slot (stats).
    pub vip_slot: u8,
    pub flags: u8,
    /// Jiffies (low 32 bits) of the last packet.
    pub last_seen: u32,
}

/// Slots of the per-CPU flow cache `LB_FLOW_CACHE` (direct-mapped by flow hash).
pub const FLOW_CACHE_SLOTS: u32 = 4096;

/// Value of `LB_FLOW_CACHE`: what a cached packet needs, ready to apply. A copy of a
/// connection-table entry with what follows from it (checksum changes, next hop), valid
/// during the jiffy it was read in (`stamp`) on this CPU. 64 bytes, 8-aligned.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCacheEntry {
    /// The `FlowKey`'s 16 bytes as two words (`FlowKey::words`): compared in two loads.
    pub key: [u64; 2],
    pub value: FlowValue,
    /// Jiffies (low 32 bits) of the connection-table read.
    pub stamp: u32,
    /// What the translation adds to the IPv4 and to the TCP/UDP checksum: the folded ones'
    /// complement sum of `~old + new` over the rewritten words (RFC 1624), fixed per flow.
    pub ip_delta: u16,
    /// The next hop's MACs (`NextHop::macs`) when the entry was written. At offset 42, 2
    /// past a 4-byte boundary like the frame's first byte, so both are copied with the
    /// same aligned 2-4-4-2 byte split.
    pub macs: [u16; 6],
    pub l4_delta: u16,
    /// The next hop's interface when the entry was written.
    pub ifindex: u32,
    pub _pad: u32,
}

/// Value of `LB_BENCH[0]`: where the benchmark driver sends its packets, and its counter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BenchSeed {
    /// Network byte order.
    pub daddr: u32,
    /// Network byte order.
    pub dport: u16,
    pub _pad: u16,
    pub seq: u32,
    pub _pad2: u32,
}

/// Slots of the per-CPU next-hop cache `LB_NEXTHOPS` (direct-mapped: a destination uses slot
/// `nexthop_slot(addr)`; two hot destinations on one slot only cost extra FIB lookups).
pub const NEXTHOP_SLOTS: u32 = 4096;

/// Value of `LB_NEXTHOPS`: the egress of packets to `daddr`, as `bpf_fib_lookup` found it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    /// Network byte order; 0: empty slot.
    pub daddr: u32,
    pub ifindex: u32,
    /// Destination then source MAC, as the first 12 bytes of the Ethernet header (native
    /// byte order words).
    pub macs: [u16; 6],
    pub _pad: u32,
    /// Jiffies after which the entry is looked up again.
    pub expires: u64,
}

/// Fibonacci hashing of an address (any byte order) to the top `bits` bits.
#[inline(always)]
const fn addr_hash(addr: u32, bits: u32) -> u32 {
    addr.wrapping_mul(0x9e37_79b9) >> (32 - bits)
}

/// The `LB_NEXTHOPS` slot of a destination address.
#[inline(always)]
pub const fn nexthop_slot(addr: u32) -> u32 {
    addr_hash(addr, NEXTHOP_SLOTS.trailing_zeros())
}

/// Words of the address filter `LB_ADDR_FILTER`: a bitmap of 65,536 bits, one per hash of
/// an address. A set bit means "maybe a VIP or the SNAT address" (a false positive only
/// costs a connection-table miss); a clear bit means "certainly not ours". It replaces a
/// hash lookup on every packet with an array read the verifier inlines.
pub const ADDR_FILTER_WORDS: u32 = 1024;
const ADDR_FILTER_BITS: u32 = (ADDR_FILTER_WORDS * 64).trailing_zeros();

/// Word index and bit mask of an address (network byte order) in the address filter.
#[inline(always)]
pub const fn addr_filter_bit(addr: u32) -> (u32, u64) {
    let h = addr_hash(addr, ADDR_FILTER_BITS);
    (h / 64, 1u64 << (h % 64))
}

/// Per-CPU traffic counters of one VIP slot or backend id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbStats {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

/// Why the balancer dropped (or, for fragments/options, refused) a packet to a VIP.
/// Index of the per-CPU `LB_DROPS` array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// IPv4 fragment to a VIP address: dropped (no reassembly in XDP).
    Fragment = 0,
    /// IPv4 header with options to a VIP address: dropped.
    IpOptions = 1,
    /// The VIP has no backend.
    NoBackend = 2,
    /// No free source port for a new flow after `SNAT_PORT_TRIES` tries.
    NoPort = 3,
    /// The route or neighbour (MAC) of the next hop is unknown.
    NoRoute = 4,
    /// The connection table refused an insert.
    FlowTable = 5,
}

pub const DROP_REASONS: u32 = 6;

impl DropReason {
    pub const ALL: [DropReason; DROP_REASONS as usize] = [
        DropReason::Fragment,
        DropReason::IpOptions,
        DropReason::NoBackend,
        DropReason::NoPort,
        DropReason::NoRoute,
        DropReason::FlowTable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Fragment => "fragment",
            DropReason::IpOptions => "ip_options",
            DropReason::NoBackend => "no_backend",
            DropReason::NoPort => "no_port",
            DropReason::NoRoute => "no_route",
            DropReason::FlowTable => "flow_table",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for VipKey {}
    unsafe impl aya::Pod for VipValue {}
    unsafe impl aya::Pod for BackendValue {}
    unsafe impl aya::Pod for LbConfig {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowValue {}
    unsafe impl aya::Pod for LbStats {}
    unsafe impl aya::Pod for BenchSeed {}
    unsafe impl aya::Pod for NextHop {}
    unsafe impl aya::Pod for FlowCacheEntry {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flow cache compares a packet's key words with an entry's: they must be the
    /// `FlowKey`'s bytes (BPF is little-endian, as is the host the tests run on).
    #[test]
    #[cfg(target_endian = "little")]
    fn flow_key_words_are_the_keys_bytes() {
        let (saddr, daddr, sport, dport) = (
            0x0a00_0001u32.to_be(),
            0xc000_020au32.to_be(),
            40000u16.to_be(),
            80u16.to_be(),
        );
        let key = FlowKey::new(saddr, daddr, sport, dport, PROTO_TCP);
        let bytes: [u64; 2] = unsafe { core::mem::transmute(key) };
        assert_eq!(FlowKey::words(saddr, daddr, sport, dport, PROTO_TCP), bytes);
        assert_eq!(size_of::<FlowCacheEntry>(), 64);
        assert_eq!(core::mem::offset_of!(FlowCacheEntry, value), 16);
        assert_eq!(core::mem::offset_of!(FlowCacheEntry, macs) % 4, 2);
        assert_eq!(size_of::<NextHop>(), 32);
    }
}
