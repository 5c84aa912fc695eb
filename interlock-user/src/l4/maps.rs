//! Typed access to the balancer's maps: the only place that writes them from user space.
use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, MapData, MapType, PerCpuArray};
use aya::Ebpf;
use interlock_common::lb::{
    addr_filter_bit, BackendValue, DropReason, FlowKey, FlowValue, LbConfig, LbStats, VipKey, VipValue,
    ADDR_FILTER_WORDS, DROP_REASONS, MAGLEV_CHUNKS, MAGLEV_EMPTY, MAGLEV_ENTRIES, MAGLEV_LANES, MAGLEV_SIZE,
    MAX_BACKENDS, MAX_FLOW_ENTRIES, MAX_VIPS,
};

/// What a pinned map must be for this version's program and user space to read it right:
/// type, key and value sizes, entries (as `interlock-ebpf/src/lb/maps.rs` declares them).
/// `pin::check_pinned_layout` compares the pins of an earlier agent against it.
#[derive(Clone, Copy, Debug)]
pub struct MapLayout {
    pub name: &'static str,
    pub map_type: MapType,
    pub key_size: usize,
    pub value_size: usize,
    pub max_entries: u32,
}

const fn layout<K, V>(name: &'static str, map_type: MapType, max_entries: u32) -> MapLayout {
    MapLayout {
        name,
        map_type,
        key_size: size_of::<K>(),
        value_size: size_of::<V>(),
        max_entries,
    }
}

/// Every map of the balancer, by its name in the object (also its pin name).
pub const MAP_LAYOUTS: [MapLayout; 10] = [
    layout::<VipKey, VipValue>("LB_VIPS", MapType::Hash, MAX_VIPS),
    layout::<u32, u32>("LB_VIP_ADDRS", MapType::Hash, MAX_VIPS),
    layout::<u32, u64>("LB_ADDR_FILTER", MapType::Array, ADDR_FILTER_WORDS),
    layout::<u32, [u32; MAGLEV_LANES as usize]>("LB_MAGLEV", MapType::Array, MAGLEV_ENTRIES),
    layout::<u32, BackendValue>("LB_BACKENDS", MapType::Array, MAX_BACKENDS),
    layout::<u32, LbConfig>("LB_CONFIG", MapType::Array, 1),
    layout::<FlowKey, FlowValue>("LB_FLOWS", MapType::LruHash, MAX_FLOW_ENTRIES),
    layout::<u32, LbStats>("LB_VIP_STATS", MapType::PerCpuArray, MAX_VIPS),
    layout::<u32, LbStats>("LB_BACKEND_STATS", MapType::PerCpuArray, MAX_BACKENDS),
    layout::<u32, u64>("LB_DROPS", MapType::PerCpuArray, DROP_REASONS),
];

pub struct LbMaps {
    vips: HashMap<MapData, VipKey, VipValue>,
    vip_addrs: HashMap<MapData, u32, u32>,
    addr_filter: Array<MapData, u64>,
    maglev: Array<MapData, [u32; MAGLEV_LANES as usize]>,
    backends: Array<MapData, BackendValue>,
    config: Array<MapData, LbConfig>,
    flows: HashMap<MapData, FlowKey, FlowValue>,
    vip_stats: PerCpuArray<MapData, LbStats>,
    backend_stats: PerCpuArray<MapData, LbStats>,
    drops: PerCpuArray<MapData, u64>,
}

fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(bpf: &mut Ebpf, name: &str) -> Result<T> {
    let map = bpf
        .take_map(name)
        .with_context(|| format!("the eBPF object has no map {name}"))?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

/// Sums a per-CPU stats slot.
fn sum(values: &aya::maps::PerCpuValues<LbStats>) -> LbStats {
    values.iter().fold(LbStats::default(), |a, s| LbStats {
        packets: a.packets + s.packets,
        bytes: a.bytes + s.bytes,
        new_flows: a.new_flows + s.new_flows,
    })
}

impl LbMaps {
    /// Takes the balancer's maps out of a loaded object.
    pub fn take(bpf: &mut Ebpf) -> Result<LbMaps> {
        Ok(LbMaps {
            vips: take(bpf, "LB_VIPS")?,
            vip_addrs: take(bpf, "LB_VIP_ADDRS")?,
            addr_filter: take(bpf, "LB_ADDR_FILTER")?,
            maglev: take(bpf, "LB_MAGLEV")?,
            backends: take(bpf, "LB_BACKENDS")?,
            config: take(bpf, "LB_CONFIG")?,
            flows: take(bpf, "LB_FLOWS")?,
            vip_stats: take(bpf, "LB_VIP_STATS")?,
            backend_stats: take(bpf, "LB_BACKEND_STATS")?,
            drops: take(bpf, "LB_DROPS")?,
        })
    }

    /// Pins again, in `dir`, every map whose pin file is gone (removed by hand or by a cleanup
    /// script): the maps themselves live on while the program or this agent holds them, and
    /// without their pins a restarted agent would start from empty maps. Returns their names.
    pub fn repin_missing(&self, dir: &std::path::Path) -> Result<Vec<&'static str>> {
        use aya::maps::IterableMap;
        let maps: [(&'static str, &MapData); 10] = [
            ("LB_VIPS", self.vips.map()),
            ("LB_VIP_ADDRS", self.vip_addrs.map()),
            ("LB_ADDR_FILTER", self.addr_filter.map()),
            ("LB_MAGLEV", self.maglev.map()),
            ("LB_BACKENDS", self.backends.map()),
            ("LB_CONFIG", self.config.map()),
            ("LB_FLOWS", self.flows.map()),
            ("LB_VIP_STATS", self.vip_stats.map()),
            ("LB_BACKEND_STATS", self.backend_stats.map()),
            ("LB_DROPS", self.drops.map()),
        ];
        let mut repinned = vec![];
        for (name, map) in maps {
            let path = dir.join(name);
            if !path.exists() {
                std::fs::create_dir_all(dir).with_context(|| format!("re-creating {}", dir.display()))?;
                map.pin(&path)
                    .with_context(|| format!("pinning {name} again at {}", path.display()))?;
                repinned.push(name);
            }
        }
        Ok(repinned)
    }

    /// Writes the balancer's settings: its SNAT address and the timeouts for a kernel
    /// ticking `hz` jiffies a second (see `clock::kernel_hz`).
    pub fn set_config(&mut self, snat_addr: Ipv4Addr, hz: u32) -> Result<()> {
        let cfg = LbConfig::new(u32::from(snat_addr).to_be(), hz);
        self.config.set(0, cfg, 0).context("writing LB_CONFIG")?;
        self.write_addr_filter()
    }

    /// Turns the per-CPU flow cache of established packets on or off (on by default).
    pub fn set_flow_cache(&mut self, on: bool) -> Result<()> {
        let cfg = LbConfig {
            flow_cache: u32::from(on),
            ..self.config()?
        };
        self.config.set(0, cfg, 0).context("writing LB_CONFIG")
    }

    pub fn config(&self) -> Result<LbConfig> {
        self.config.get(&0, 0).context("reading LB_CONFIG")
    }

    pub fn vips(&self) -> Result<Vec<(VipKey, VipValue)>> {
        self.vips.iter().collect::<Result<_, _>>().context("reading LB_VIPS")
    }

    /// Makes `table` of the VIP live (one map write: the switch packets see atomically).
    pub fn set_vip(&mut self, key: VipKey, value: VipValue) -> Result<()> {
        self.vips.insert(key, value, 0).context("writing LB_VIPS")
    }

    pub fn remove_vip(&mut self, key: &VipKey) -> Result<()> {
        self.vips.remove(key).context("removing from LB_VIPS")
    }

    /// Sets the VIP addresses (network byte order): the exact set and the address filter.
    /// Addresses are added to the filter before it drops any, so a VIP that stays is never
    /// filtered out in between.
    pub fn set_vip_addrs(&mut self, addrs: &[u32]) -> Result<()> {
        let old: Vec<u32> = self.vip_addrs.keys().collect::<Result<_, _>>()?;
        for a in addrs {
            self.vip_addrs.insert(a, 1, 0).context("writing LB_VIP_ADDRS")?;
        }
        self.write_addr_filter()?;
        for a in old.iter().filter(|a| !addrs.contains(a)) {
            self.vip_addrs.remove(a).context("removing from LB_VIP_ADDRS")?;
        }
        self.write_addr_filter()
    }

    /// Rewrites the words of `LB_ADDR_FILTER` that differ from the bits of the VIP addresses
    /// in `LB_VIP_ADDRS` and the SNAT address.
    fn write_addr_filter(&mut self) -> Result<()> {
        let mut addrs: Vec<u32> = self.vip_addrs.keys().collect::<Result<_, _>>()?;
        addrs.push(self.config()?.snat_addr);
        let words = filter_words(addrs.into_iter().filter(|a| *a != 0));
        for (i, want) in words.iter().enumerate() {
            let i = i as u32;
            if self.addr_filter.get(&i, 0).context("reading LB_ADDR_FILTER")? != *want {
                self.addr_filter
                    .set(i, *want, 0)
                    .with_context(|| format!("writing LB_ADDR_FILTER[{i}]"))?;
            }
        }
        Ok(())
    }

    /// Writes one of a VIP slot's two Maglev tables (the one not live), `MAGLEV_SIZE` ids.
    pub fn write_maglev(&mut self, slot: u32, table: u32, ids: &[u32]) -> Result<()> {
        anyhow::ensure!(
            ids.len() == MAGLEV_SIZE as usize,
            "a Maglev table has {MAGLEV_SIZE} slots"
        );
        let base = (slot * 2 + table) * MAGLEV_CHUNKS;
        for (i, chunk) in ids.chunks(MAGLEV_LANES as usize).enumerate() {
            let mut lanes = [MAGLEV_EMPTY; MAGLEV_LANES as usize];
            lanes[..chunk.len()].copy_from_slice(chunk);
            let index = base + i as u32;
            self.maglev
                .set(index, lanes, 0)
                .with_context(|| format!("writing LB_MAGLEV[{index}]"))?;
        }
        Ok(())
    }

    /// Every backend id with a non-empty entry.
    pub fn backends(&self) -> Result<Vec<(u32, BackendValue)>> {
        let mut out = Vec::new();
        for (id, v) in self.backends.iter().enumerate() {
            let v = v.context("reading LB_BACKENDS")?;
            if v.addr != 0 {
                out.push((id as u32, v));
            }
        }
        Ok(out)
    }

    pub fn set_backend(&mut self, id: u32, value: BackendValue) -> Result<()> {
        self.backends
            .set(id, value, 0)
            .with_context(|| format!("writing LB_BACKENDS[{id}]"))
    }

    pub fn vip_stats(&self, slot: u32) -> Result<LbStats> {
        Ok(sum(&self.vip_stats.get(&slot, 0).context("reading LB_VIP_STATS")?))
    }

    pub fn backend_stats(&self, id: u32) -> Result<LbStats> {
        Ok(sum(&self
            .backend_stats
            .get(&id, 0)
            .context("reading LB_BACKEND_STATS")?))
    }

    pub fn drops(&self) -> Result<Vec<(DropReason, u64)>> {
        DropReason::ALL
            .iter()
            .map(|r| {
                let v = self.drops.get(&(*r as u32), 0).context("reading LB_DROPS")?;
                Ok((*r, v.iter().sum()))
            })
            .collect()
    }

    /// Live connection-table entries (both directions), for tests and diagnostics.
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowValue)>> {
        self.flows.iter().collect::<Result<_, _>>().context("reading LB_FLOWS")
    }

    /// Writes a connection-table entry by hand (benchmarks and diagnostics; the kernel
    /// program records real flows itself).
    pub fn insert_flow(&mut self, key: FlowKey, value: FlowValue) -> Result<()> {
        self.flows.insert(key, value, 0).context("writing LB_FLOWS")
    }

    pub fn remove_flow(&mut self, key: &FlowKey) -> Result<()> {
        self.flows.remove(key).context("removing from LB_FLOWS")
    }
}

/// The address filter's bitmap for `addrs` (network byte order).
fn filter_words(addrs: impl Iterator<Item = u32>) -> Vec<u64> {
    let mut words = vec![0u64; ADDR_FILTER_WORDS as usize];
    for a in addrs {
        let (word, bit) = addr_filter_bit(a);
        words[word as usize] |= bit;
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_has_every_address_and_rejects_most_others() {
        let ours: Vec<u32> = (0..65u32)
            .map(|i| u32::from(Ipv4Addr::new(10, 0, i as u8, 1)).to_be())
            .collect();
        let words = filter_words(ours.iter().copied());
        let hit = |a: u32| {
            let (w, b) = addr_filter_bit(a);
            words[w as usize] & b != 0
        };
        assert!(ours.iter().all(|a| hit(*a)));
        let others = (0..65536u32).map(|i| u32::from(Ipv4Addr::new(172, 16, (i >> 8) as u8, i as u8)).to_be());
        let false_positives = others.filter(|a| hit(*a)).count();
        assert!(
            false_positives < 300,
            "{false_positives} of 65536 other addresses pass the filter"
        );
    }
}
