//! Applying a set of L4 services to the kernel: diff against what is there, write only the
//! difference, swap each changed VIP's Maglev table in one write.
//!
//! A restarted agent starts from what the pinned maps hold (VIP slots, live tables, backend
//! ids), so its first apply rewrites only the tables not in use and flips them.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use anyhow::{bail, Result};
use interlock_common::lb::{
    BackendValue, LbStats, VipKey, VipValue, MAGLEV_EMPTY, MAGLEV_SIZE, MAX_BACKENDS, MAX_VIPS,
};

use super::desired::{describe, desired, BackendSpec, DesiredVip};
use super::maglev::{self, MaglevBackend};
use super::maps::LbMaps;
use crate::model::L4Service;

struct VipState {
    slot: u32,
    table: u32,
    /// `None` after a restart: unknown, so the first apply rewrites it.
    applied: Option<DesiredVip>,
}

/// What one apply changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
}

pub struct L4Sync {
    maps: LbMaps,
    default_vip: Option<Ipv4Addr>,
    vips: BTreeMap<VipKey, VipState>,
    backend_ids: HashMap<(Ipv4Addr, u16), u32>,
}

impl L4Sync {
    /// Takes over whatever the maps already hold (empty maps on a first start).
    pub fn new(maps: LbMaps, default_vip: Option<Ipv4Addr>) -> Result<L4Sync> {
        let vips = maps
            .vips()?
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    VipState {
                        slot: v.slot,
                        table: v.table,
                        applied: None,
                    },
                )
            })
            .collect();
        let backend_ids = maps
            .backends()?
            .into_iter()
            .map(|(id, b)| ((Ipv4Addr::from(u32::from_be(b.addr)), u16::from_be(b.port)), id))
            .collect();
        Ok(L4Sync {
            maps,
            default_vip,
            vips,
            backend_ids,
        })
    }

    pub fn maps(&self) -> &LbMaps {
        &self.maps
    }

    pub fn maps_mut(&mut self) -> &mut LbMaps {
        &mut self.maps
    }

    /// Makes the kernel serve exactly `services`. On a bad service nothing is changed.
    pub fn apply(&mut self, services: &[L4Service]) -> Result<SyncReport> {
        let want = desired(services, self.default_vip)?;
        let mut report = SyncReport::default();
        for (key, vip) in &want {
            let (slot, table, is_new) = match self.vips.get(key) {
                Some(s) if s.applied.as_ref() == Some(vip) => continue,
                Some(s) => (s.slot, 1 - (s.table & 1), false),
                None => (self.free_slot()?, 0, true),
            };
            let ids = self.backend_ids_for(&vip.backends)?;
            let members: Vec<MaglevBackend> = vip
                .backends
                .iter()
                .zip(&ids)
                .map(|(b, id)| MaglevBackend {
                    key: format!("{}:{}", b.addr, b.port),
                    id: *id,
                    weight: b.weight,
                })
                .collect();
            let table_ids = maglev::build(&members, MAGLEV_SIZE, MAGLEV_EMPTY);
            // Backends first, then the table aside, then the flip: no packet sees a
            // half-written table or an id without a backend.
            for (b, id) in vip.backends.iter().zip(&ids) {
                self.maps.set_backend(
                    *id,
                    BackendValue {
                        addr: u32::from(b.addr).to_be(),
                        port: b.port.to_be(),
                        _pad: 0,
                    },
                )?;
            }
            self.maps.write_maglev(slot, table, &table_ids)?;
            self.maps.set_vip(*key, VipValue { slot, table })?;
            tracing::info!(
                "l4 {} {} ({}) backends={} slot={slot} table={table}",
                if is_new { "added" } else { "updated" },
                describe(key),
                vip.name,
                vip.backends.len()
            );
            if is_new {
                report.added += 1;
            } else {
                report.updated += 1;
            }
            self.vips.insert(
                *key,
                VipState {
                    slot,
                    table,
                    applied: Some(vip.clone()),
                },
            );
        }
        let gone: Vec<VipKey> = self.vips.keys().filter(|k| !want.contains_key(k)).copied().collect();
        for key in gone {
            self.maps.remove_vip(&key)?;
            self.vips.remove(&key);
            tracing::info!("l4 removed {}", describe(&key));
            report.removed += 1;
        }
        let addrs: BTreeSet<u32> = want.keys().map(|k| k.addr).collect();
        self.maps.set_vip_addrs(&addrs.into_iter().collect::<Vec<_>>())?;
        // Ids of backends no VIP uses any more become free; their entries stay (flows that
        // read an old table a moment ago still find a valid backend).
        let used: BTreeSet<(Ipv4Addr, u16)> = want
            .values()
            .flat_map(|v| v.backends.iter().map(|b| (b.addr, b.port)))
            .collect();
        self.backend_ids.retain(|k, _| used.contains(k));
        Ok(report)
    }

    fn free_slot(&self) -> Result<u32> {
        let used: BTreeSet<u32> = self.vips.values().map(|v| v.slot).collect();
        match (0..MAX_VIPS).find(|s| !used.contains(s)) {
            Some(s) => Ok(s),
            None => bail!("all {MAX_VIPS} VIP slots are in use"),
        }
    }

    fn backend_ids_for(&mut self, backends: &[BackendSpec]) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(backends.len());
        for b in backends {
            if let Some(id) = self.backend_ids.get(&(b.addr, b.port)) {
                out.push(*id);
                continue;
            }
            let used: BTreeSet<u32> = self.backend_ids.values().copied().collect();
            let Some(id) = (0..MAX_BACKENDS).find(|i| !used.contains(i)) else {
                bail!("all {MAX_BACKENDS} backend ids are in use");
            };
            self.backend_ids.insert((b.addr, b.port), id);
            out.push(id);
        }
        Ok(out)
    }

    /// Counters of each VIP (`addr:port/proto`), summed over CPUs.
    pub fn listener_stats(&self) -> Result<Vec<(String, LbStats)>> {
        self.vips
            .iter()
            .map(|(key, state)| Ok((describe(key), self.maps.vip_stats(state.slot)?)))
            .collect()
    }

    /// Per-VIP and per-backend counters (summed over CPUs) of what is applied now.
    pub fn stats(&self) -> Result<Vec<(String, LbStats)>> {
        let mut out = Vec::new();
        for (key, state) in &self.vips {
            out.push((format!("vip={}", describe(key)), self.maps.vip_stats(state.slot)?));
        }
        let mut ids: Vec<_> = self.backend_ids.iter().collect();
        ids.sort_by_key(|(_, id)| **id);
        for ((addr, port), id) in ids {
            out.push((format!("backend={addr}:{port}"), self.maps.backend_stats(*id)?));
        }
        Ok(out)
    }
}
