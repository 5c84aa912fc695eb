//! The balancer's maps. User space (interlock-user/src/l4/maps.rs) owns every write except
//! the connection table and the counters; names are the pin names under bpffs.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use interlock_common::lb::{
    BackendValue, BenchSeed, FlowCacheEntry, FlowKey, FlowValue, LbConfig, LbStats, NextHop, VipKey, VipValue,
    ADDR_FILTER_WORDS, DROP_REASONS, FLOW_CACHE_SLOTS, MAGLEV_ENTRIES, MAGLEV_LANES, MAX_BACKENDS, MAX_FLOW_ENTRIES,
    MAX_VIPS, NEXTHOP_SLOTS,
};

#[map]
pub static LB_VIPS: HashMap<VipKey, VipValue> = HashMap::with_max_entries(MAX_VIPS, 0);
/// VIP addresses (value unused), exact: fragments and IP options to them are dropped.
#[map]
pub static LB_VIP_ADDRS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_VIPS, 0);
/// Slot `h = hash % MAGLEV_SIZE` of table `(vip slot * 2 + table)` is lane `h % 16` of entry
/// `(vip slot * 2 + table) * MAGLEV_CHUNKS + h / 16`; it holds a backend id.
#[map]
pub static LB_MAGLEV: Array<[u32; MAGLEV_LANES as usize]> = Array::with_max_entries(MAGLEV_ENTRIES, 0);
#[map]
pub static LB_BACKENDS: Array<BackendValue> = Array::with_max_entries(MAX_BACKENDS, 0);
#[map]
pub static LB_CONFIG: Array<LbConfig> = Array::with_max_entries(1, 0);
/// Per-CPU LRU lists (the hash table itself is shared): in a full table, the common list
/// made about 0.7% of inserts fail in bursts; per-CPU lists evict locally and cheaply.
#[map]
pub static LB_FLOWS: LruHashMap<FlowKey, FlowValue> =
    LruHashMap::with_max_entries(MAX_FLOW_ENTRIES, aya_ebpf::bindings::BPF_F_NO_COMMON_LRU);
#[map]
pub static LB_VIP_STATS: PerCpuArray<LbStats> = PerCpuArray::with_max_entries(MAX_VIPS, 0);
#[map]
pub static LB_BACKEND_STATS: PerCpuArray<LbStats> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);
#[map]
pub static LB_DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_REASONS, 0);
/// Input of the benchmark driver `interlock_lb_bench_new` (unused otherwise).
#[map]
pub static LB_BENCH: Array<BenchSeed> = Array::with_max_entries(1, 0);
/// Per-CPU, direct-mapped next-hop cache (see `nexthop_slot`): an array read the verifier
/// inlines, where a hash map costs a function call; per CPU, so a slot is never written
/// while another CPU reads it.
#[map]
pub static LB_NEXTHOPS: PerCpuArray<NextHop> = PerCpuArray::with_max_entries(NEXTHOP_SLOTS, 0);
/// Bitmap of VIP and SNAT addresses (see `addr_filter_bit`): the first test of every packet.
#[map]
pub static LB_ADDR_FILTER: Array<u64> = Array::with_max_entries(ADDR_FILTER_WORDS, 0);
/// Per-CPU, direct-mapped copies of connection-table entries (see `flowcache.rs`).
#[map]
pub static LB_FLOW_CACHE: PerCpuArray<FlowCacheEntry> = PerCpuArray::with_max_entries(FLOW_CACHE_SLOTS, 0);
