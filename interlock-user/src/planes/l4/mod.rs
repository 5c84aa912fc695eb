//! The L4 plane: attaches the XDP balancer to the host's interfaces (and to
//! `docker_gwbridge`, where local tasks answer), then keeps the kernel maps in step with the
//! snapshots, translated to the tasks' local addresses from the node view
//! (`model::node::localize`). `hostns`: the host's interface addresses; `metrics`: its
//! counters on `/metrics`.
//!
//! Maps and links are pinned in bpffs: a restarted agent takes them over and flows that were
//! established keep going while it is away.
use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use aya::programs::XdpMode;
use aya::Ebpf;
use tokio::time::{interval, MissedTickBehavior};

pub mod hostns;
pub mod metrics;

use super::status::L4Status;
use crate::config::{L4Config, XdpMode as XdpModeSetting};
use crate::docker::local::GWBRIDGE;
use crate::l4::desired::{describe, vip_key};
use crate::l4::{pin, L4Sync, LbMaps};
use crate::model::node::{localize, NodeRx};
use crate::model::{L4Service, SnapshotRx};
use metrics::{L4Counters, LimitLog};

/// What setting up in the host namespace hands back to the async side.
struct Attached {
    /// The loaded program (kept alive with the agent; lent to the host-namespace thread
    /// when a link has to be attached again).
    ebpf: Option<Ebpf>,
    opts: L4Config,
    sync: L4Sync,
    default_vip: Ipv4Addr,
    /// A socket in the host's namespace: datagrams from it make the host resolve the MACs of
    /// local tasks, which XDP's FIB lookup needs (XDP itself cannot ARP).
    neighbour_poke: UdpSocket,
}

/// Attaches and starts following the snapshots; the status of the L4 services is published
/// into `status` every second.
pub async fn start(opts: L4Config, rx: SnapshotRx, node: NodeRx, status: Arc<ArcSwap<L4Counters>>) -> Result<()> {
    let netns = opts.host_netns.clone();
    let attached = tokio::task::spawn_blocking(move || crate::netns::run_in(netns, move || attach(opts)))
        .await
        .context("the L4 setup thread failed")??;
    tracing::info!(vip = %attached.default_vip, "L4 fast path attached");
    tokio::spawn(follow(attached, rx, node, status));
    Ok(())
}

fn attach(opts: L4Config) -> Result<Attached> {
    pin::prepare_pin_dir(&opts.bpffs)?;
    let mut ebpf = pin::load_pinned(&opts.bpffs)?;
    let mut maps = LbMaps::take(&mut ebpf)?;
    let snat = hostns::iface_ipv4(GWBRIDGE)
        .context("the L4 fast path reaches local tasks through docker_gwbridge, which has no address here")?;
    let hz = crate::l4::clock::kernel_hz(&mut ebpf)?;
    maps.set_config(snat, hz)?;
    maps.set_flow_cache(true)?;
    let default_vip = match opts.vip {
        Some(vip) => vip,
        None => hostns::iface_ipv4(&opts.interfaces[0]).context("choosing the default L4 VIP")?,
    };
    let sync = L4Sync::new(maps, Some(default_vip))?;
    for iface in interfaces(&opts) {
        let took_over = pin::attach_pinned(&mut ebpf, &iface, xdp_mode(&opts), &opts.bpffs)?;
        tracing::info!(iface, took_over, "XDP balancer attached");
    }
    let neighbour_poke = UdpSocket::bind("0.0.0.0:0").context("creating the neighbour socket")?;
    neighbour_poke.set_nonblocking(true)?;
    Ok(Attached {
        ebpf: Some(ebpf),
        opts,
        sync,
        default_vip,
        neighbour_poke,
    })
}

/// The operator's interfaces and docker_gwbridge (where local tasks answer).
fn interfaces(opts: &L4Config) -> BTreeSet<String> {
    let mut ifaces: BTreeSet<String> = opts.interfaces.iter().cloned().collect();
    ifaces.insert(GWBRIDGE.to_string());
    ifaces
}

fn xdp_mode(opts: &L4Config) -> XdpMode {
    match opts.mode {
        XdpModeSetting::Skb => XdpMode::Skb,
        XdpModeSetting::Driver => XdpMode::Driver,
    }
}

/// Puts back what was removed from the pin directory under a running agent: map pins (the
/// maps live on) and link pins (removing one detached the program from its interface).
async fn restore_pins(a: &mut Attached) {
    match a.sync.maps().repin_missing(&a.opts.bpffs) {
        Ok(names) if !names.is_empty() => tracing::warn!(?names, "map pins were removed: pinned them again"),
        Ok(_) => {}
        Err(e) => tracing::error!("cannot pin the maps again: {e:#}"),
    }
    let detached: Vec<String> = interfaces(&a.opts)
        .into_iter()
        .filter(|i| !a.opts.bpffs.join(format!("link-{i}")).exists())
        .collect();
    if detached.is_empty() {
        return;
    }
    let Some(mut ebpf) = a.ebpf.take() else {
        return;
    };
    let (netns, dir, mode) = (a.opts.host_netns.clone(), a.opts.bpffs.clone(), xdp_mode(&a.opts));
    let result = tokio::task::spawn_blocking(move || {
        crate::netns::run_in(netns, move || {
            let mut errors = vec![];
            for iface in &detached {
                match pin::attach_pinned(&mut ebpf, iface, mode, &dir) {
                    Ok(_) => tracing::warn!(iface, "a link pin was removed: attached and pinned again"),
                    Err(e) => errors.push(format!("{iface}: {e:#}")),
                }
            }
            Ok((ebpf, errors))
        })
    })
    .await;
    match result {
        Ok(Ok((ebpf, errors))) => {
            a.ebpf = Some(ebpf);
            if !errors.is_empty() {
                tracing::error!("cannot attach again: {}", errors.join("; "));
            }
        }
        Ok(Err(e)) => tracing::error!("cannot attach again: {e:#}"),
        Err(e) => tracing::error!("the re-attach thread failed: {e}"),
    }
}

async fn follow(mut a: Attached, mut rx: SnapshotRx, mut node: NodeRx, status: Arc<ArcSwap<L4Counters>>) {
    let mut tick = interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut node_open = true;
    let mut applied: Option<Vec<L4Service>> = None;
    let mut ticks = 0u64;
    let mut limit_log = LimitLog::new(Duration::from_secs(10));
    loop {
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            changed = node.changed(), if node_open => node_open = changed.is_ok(),
            _ = tick.tick() => ticks += 1,
        }
        restore_pins(&mut a).await;
        let snapshot = rx.borrow_and_update().clone();
        // Version 0 is "nothing known yet" (a restart): the pinned maps keep serving.
        if snapshot.version == 0 {
            continue;
        }
        let view = node.borrow_and_update().clone();
        // Gateways not read for this snapshot yet: the watcher is on it (and wakes this loop).
        if view.gateways_for < snapshot.version {
            continue;
        }
        let services = localize(&snapshot.l4, &view.gateways);
        if applied.as_ref() != Some(&services) {
            match a.sync.apply(&services) {
                Ok(r) => {
                    tracing::info!(
                        added = r.added,
                        updated = r.updated,
                        removed = r.removed,
                        "L4 maps updated"
                    );
                    poke_neighbours(&a.neighbour_poke, &services);
                    applied = Some(services);
                }
                Err(e) => tracing::error!("L4 services not applied, keeping the previous ones: {e:#}"),
            }
        } else if ticks.is_multiple_of(10) {
            // Keeps the host's neighbour entries of the backends fresh.
            poke_neighbours(&a.neighbour_poke, &services);
        }
        if let Some(applied) = &applied {
            let drops: Vec<(&'static str, u64)> = match a.sync.maps().drops() {
                Ok(d) => d.into_iter().map(|(r, n)| (r.name(), n)).collect(),
                Err(_) => Vec::new(),
            };
            for (reason, n) in limit_log.due(&drops, std::time::Instant::now()) {
                tracing::warn!(
                    reason,
                    dropped = n,
                    "L4 limit reached: new flows dropped (logged once per 10 s)"
                );
            }
            status.store(Arc::new(L4Counters {
                services: l4_status(&a.sync, applied, a.default_vip),
                drops,
            }));
        }
    }
}

/// One empty datagram to the discard port of each backend: the host resolves its MAC.
fn poke_neighbours(socket: &UdpSocket, services: &[L4Service]) {
    let ips: BTreeSet<_> = services.iter().flat_map(|s| &s.backends).map(|b| b.addr.ip()).collect();
    for ip in ips {
        let _ = socket.send_to(&[], (ip, 9));
    }
}

fn l4_status(sync: &L4Sync, services: &[L4Service], default_vip: Ipv4Addr) -> Vec<L4Status> {
    let stats: HashMap<String, _> = sync.listener_stats().unwrap_or_default().into_iter().collect();
    services
        .iter()
        .map(|s| {
            let listener = describe(&vip_key(s.vip.unwrap_or(default_vip), s.port, s.protocol));
            let st = stats.get(&listener).copied().unwrap_or_default();
            L4Status {
                service: s.service.name.clone(),
                backends: s.backends.iter().map(|b| b.addr.to_string()).collect(),
                packets: st.packets,
                bytes: st.bytes,
                new_flows: st.new_flows,
                listener,
            }
        })
        .collect()
}
