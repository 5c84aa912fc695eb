//! `interlock l4`: run the XDP fast path for a static list of L4 services (a JSON array of
//! `model::L4Service`), re-applied when the file changes or on SIGHUP, printing stats.
//! The maps and links stay pinned after exit, so a restart takes over live flows.
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use aya::programs::XdpMode;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::{interval, MissedTickBehavior};

use interlock::config::defaults;
use interlock::l4::pin;
use interlock::l4::{L4Sync, LbMaps};
use interlock::model::L4Service;

#[derive(Debug, clap::Args)]
pub struct L4Args {
    /// Interfaces to attach to (clients and backends may sit behind different ones).
    #[arg(long, required = true)]
    pub iface: Vec<String>,
    /// JSON file with an array of L4 services.
    #[arg(long)]
    pub config: PathBuf,
    /// The balancer's own address towards the backends (source of translated packets).
    #[arg(long)]
    pub snat_addr: Ipv4Addr,
    /// VIP of services that name none.
    #[arg(long)]
    pub default_vip: Option<Ipv4Addr>,
    /// bpffs directory for the pinned maps and links.
    #[arg(long, default_value = defaults::BPFFS)]
    pub pin_dir: PathBuf,
    /// Attach in generic (skb) mode instead of native (driver) mode.
    #[arg(long)]
    pub skb: bool,
    /// Look every established packet up in the connection table, without the per-CPU
    /// flow cache (which serves a flow's packets from a copy for up to one jiffy).
    #[arg(long)]
    pub no_flow_cache: bool,
    /// Print stats every this many seconds (0: never).
    #[arg(long, default_value_t = 10)]
    pub stats_interval: u64,
}

fn read_services(path: &Path) -> Result<Vec<L4Service>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a JSON array of L4 services", path.display()))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reads and applies the config; a bad file is reported and the last good state kept.
fn reload(sync: &mut L4Sync, path: &Path) {
    match read_services(path).and_then(|s| sync.apply(&s)) {
        Ok(r) => println!(
            "l4 applied added={} updated={} removed={}",
            r.added, r.updated, r.removed
        ),
        Err(e) => tracing::error!("l4 config not applied, keeping the previous one: {e:#}"),
    }
}

fn print_stats(sync: &L4Sync) -> Result<()> {
    for (what, s) in sync.stats()? {
        println!(
            "stats {what} packets={} bytes={} new_flows={}",
            s.packets, s.bytes, s.new_flows
        );
    }
    let drops: Vec<String> = sync
        .maps()
        .drops()?
        .into_iter()
        .map(|(r, n)| format!("{}={n}", r.name()))
        .collect();
    println!("drops {}", drops.join(" "));
    Ok(())
}

pub async fn run(args: L4Args) -> Result<()> {
    // The first config must be valid: nothing is attached on a broken start.
    // The file's time is taken before it is read: a write during start-up is not missed.
    let mut last = modified(&args.config);
    let services = read_services(&args.config)?;
    pin::prepare_pin_dir(&args.pin_dir)?;
    let mut ebpf = pin::load_pinned(&args.pin_dir)?;
    let mut maps = LbMaps::take(&mut ebpf)?;
    let hz = interlock::l4::clock::kernel_hz(&mut ebpf)?;
    maps.set_config(args.snat_addr, hz)?;
    maps.set_flow_cache(!args.no_flow_cache)?;
    match interlock::l4::memlock::maps_memlock_bytes() {
        Ok(b) => println!("l4 maps lock {} MiB of kernel memory", b / (1024 * 1024)),
        Err(e) => tracing::warn!("cannot read the maps' locked memory: {e}"),
    }
    let mut sync = L4Sync::new(maps, args.default_vip)?;
    let r = sync.apply(&services)?;
    println!(
        "l4 applied added={} updated={} removed={}",
        r.added, r.updated, r.removed
    );
    let mode = if args.skb { XdpMode::Skb } else { XdpMode::Driver };
    for iface in &args.iface {
        let took_over = pin::attach_pinned(&mut ebpf, iface, mode, &args.pin_dir)?;
        println!(
            "attached {} to {iface} ({})",
            pin::PROG_LB,
            if took_over {
                "took over the pinned link"
            } else {
                "new pinned link"
            }
        );
    }
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut poll = interval(Duration::from_millis(500));
    poll.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut stats = interval(Duration::from_secs(args.stats_interval.max(1)));
    stats.set_missed_tick_behavior(MissedTickBehavior::Skip);
    stats.tick().await;
    loop {
        tokio::select! {
            _ = hup.recv() => reload(&mut sync, &args.config),
            _ = poll.tick() => {
                let now = modified(&args.config);
                if now != last {
                    last = now;
                    reload(&mut sync, &args.config);
                }
            }
            _ = stats.tick(), if args.stats_interval > 0 => print_stats(&sync)?,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    print_stats(&sync)?;
    println!("l4 exiting; maps and links stay pinned in {}", args.pin_dir.display());
    Ok(())
}
