//! `cargo xtask bench l4` runs this: BPF_PROG_TEST_RUN ns per packet of `interlock_lb`
//! against the trivial `interlock_pass`, each path checked to be the one exercised.
//!
//! The kernel reuses the packet buffer between repetitions, so each measured packet is set
//! up to come back to the intended path after the program rewrote it:
//! - established: the flow client->VIP is recorded, plus a mirror entry that translates the
//!   rewritten packet (balancer->backend) back into the original, so every repetition is a
//!   connection-table hit with a full rewrite and next-hop lookup; measured with the per-CPU
//!   flow cache (one flow at full rate: nearly every packet is a cache hit, as for any busy
//!   flow) and without it (`established_uncached`: every packet looks the table up, as the
//!   first packet of a flow in each jiffy does);
//! - new flow: the driver `interlock_lb_bench_new` rewrites the buffer into a packet from a
//!   client address/port never seen before (a counter), then runs the balancer: every
//!   repetition is a miss, a Maglev pick, a port probe and two inserts; the table is kept at
//!   65,536 entries so it is full and inserts evict (what a full table does at scale), and
//!   30 backends keep source ports towards them available; `new_unfull_ns` is the same on a
//!   table with room (no evictions), interleaved with those rounds;
//! - pass: a TCP packet to a non-VIP address, unchanged by the program.
use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{ensure, Context, Result};
use aya::maps::Array;
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader};
use interlock::l4::{L4Sync, LbMaps};
use interlock::model::{Backend, L4Protocol, L4Service};
use interlock_common::lb::{BenchSeed, FlowKey, FlowValue, LbStats, FLOW_REVERSE};
use interlock_tests::l4::*;

const REPEAT: u32 = 1_000_000;
/// Entries of the connection table in the new-flow rounds: full after 32,768 flows.
const FULL_TABLE: u32 = 65536;
/// New flows of a round on a default-size table (2 entries each): it never fills, and as
/// nothing expires or is evicted they hold at most a sixth of the 300,000 source ports
/// towards the 30 backends.
const UNFULL_REPEAT: u32 = 50_000;
/// Each figure is the best of this many runs of `REPEAT`: the machine is shared, and the
/// minimum is the cost without interference (the same for every program measured).
const ROUNDS: u32 = 3;

fn setup(flow_entries: Option<u32>, services: &[L4Service]) -> Result<(Ebpf, L4Sync)> {
    let mut loader = EbpfLoader::new();
    if let Some(n) = flow_entries {
        loader.map_max_entries("LB_FLOWS", n);
    }
    let mut ebpf = loader.load(interlock::bpf::EBPF_OBJECT)?;
    let mut maps = LbMaps::take(&mut ebpf)?;
    let hz = interlock::l4::clock::kernel_hz(&mut ebpf)?;
    maps.set_config(SNAT, hz)?;
    let mut sync = L4Sync::new(maps, None)?;
    sync.apply(services)?;
    for name in ["interlock_lb", "interlock_pass", "interlock_lb_bench_new"] {
        let p: &mut Xdp = ebpf.program_mut(name).context(name)?.try_into()?;
        p.load()?;
    }
    Ok((ebpf, sync))
}

/// Runs `prog` on `frame` `repeat` times; returns (ns per run, last action).
fn run(ebpf: &mut Ebpf, prog: &str, frame: &[u8], repeat: u32) -> Result<(f64, u32)> {
    let p: &mut Xdp = ebpf.program_mut(prog).context("program")?.try_into()?;
    let mut out = vec![0u8; frame.len() + 512];
    let r = p.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        repeat,
        ..TestRunOptions::new()
    })?;
    Ok((r.duration.as_nanos() as f64, r.return_value))
}

/// The best of `ROUNDS` runs of `REPEAT`; the action of every run must be `want`.
fn best(ebpf: &mut Ebpf, prog: &str, frame: &[u8], want: u32) -> Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..ROUNDS {
        let (ns, action) = run(ebpf, prog, frame, REPEAT)?;
        ensure!(action == want, "{prog} returned {action}, not {want}");
        best = best.min(ns);
    }
    Ok(best)
}

fn total(stats: &[(String, LbStats)]) -> (u64, u64) {
    stats
        .iter()
        .filter(|(w, _)| w.starts_with("vip="))
        .fold((0, 0), |(p, n), (_, s)| (p + s.packets, n + s.new_flows))
}

fn bench() -> Result<String> {
    let syn = frame([2; 6], CLIENT, 40000, VIP, 80, 6, 0x02, b"hello");
    let ack = frame([2; 6], CLIENT, 40000, VIP, 80, 6, 0x10, b"hello");
    let other = frame([2; 6], CLIENT, 40000, Ipv4Addr::new(192, 0, 2, 99), 80, 6, 0x10, b"x");

    // Established.
    let (mut ebpf, mut sync) = setup(None, &[service(VIP, 80, L4Protocol::Tcp, &BACKENDS)])?;
    let trivial = best(&mut ebpf, "interlock_pass", &ack, 2)?;
    let (_, action) = run(&mut ebpf, "interlock_lb", &syn, 1)?;
    ensure!(action == 4, "the first SYN is redirected (action {action})");
    let flows = sync.maps().flows()?;
    let (_, fwd) = flows
        .iter()
        .find(|(k, _)| k.dport == 80u16.to_be())
        .context("the forward entry")?;
    let mirror_key = FlowKey::new(fwd.saddr, fwd.daddr, fwd.sport, fwd.dport, 6);
    let mirror = FlowValue {
        saddr: u32::from(CLIENT).to_be(),
        daddr: u32::from(VIP).to_be(),
        sport: 40000u16.to_be(),
        dport: 80u16.to_be(),
        flags: FLOW_REVERSE,
        ..*fwd
    };
    sync.maps_mut().insert_flow(mirror_key, mirror)?;
    // The balancer only probes the table for packets to a VIP address or to its own
    // address: let the mirrored half (to the backend) through that filter too.
    sync.maps_mut().set_vip_addrs(&[u32::from(VIP).to_be(), fwd.daddr])?;
    let backend_packets = |s: &[(String, LbStats)]| -> u64 {
        s.iter()
            .filter(|(w, _)| w.starts_with("backend="))
            .map(|(_, s)| s.packets)
            .sum()
    };
    // Every repetition must be an established packet (counted for its backend, not new).
    let established_run = |ebpf: &mut Ebpf, sync: &L4Sync| -> Result<f64> {
        let before = backend_packets(&sync.stats()?);
        let ns = best(ebpf, "interlock_lb", &ack, 4)?;
        let hits = backend_packets(&sync.stats()?) - before;
        ensure!(
            hits == u64::from(ROUNDS * REPEAT),
            "every repetition was a connection-table hit ({hits} of {ROUNDS} x {REPEAT})"
        );
        Ok(ns)
    };
    let established = established_run(&mut ebpf, &sync)?;
    // The same packets with every one looked up in the connection table.
    sync.maps_mut().set_flow_cache(false)?;
    let uncached = established_run(&mut ebpf, &sync)?;

    // Pass.
    let pass = best(&mut ebpf, "interlock_lb", &other, 2)?;
    drop(ebpf);
    drop(sync);

    // New flows: the driver program makes every repetition a packet from a new client.
    // 30 backends (3 hosts x 10 ports), so source ports towards them stay plentiful. Each
    // round on a fresh table, as a table's per-CPU LRU lists drift apart over rounds.
    let mut wide = service(VIP, 80, L4Protocol::Tcp, &BACKENDS);
    wide.backends = BACKENDS
        .iter()
        .flat_map(|a| (0..10).map(move |p| (*a, BACKEND_PORT + p)))
        .map(|(a, p)| Backend {
            addr: SocketAddr::new(a.into(), p),
            weight: 1,
            id: format!("{a}:{p}"),
        })
        .collect();
    let mut new = f64::MAX;
    let mut no_port = 0;
    // Also on a table that never fills (the default size, 1M entries per CPU's LRU list, for
    // 100,000 entries): the same work without evictions, interleaved with the full-table
    // rounds so both see the same load on a shared machine.
    let mut unfull = f64::MAX;
    for _ in 0..ROUNDS {
        let (ns, failed) = new_flow_round(&wide, &syn, Some(FULL_TABLE), REPEAT)?;
        new = new.min(ns);
        no_port += failed;
        let (ns, failed) = new_flow_round(&wide, &syn, None, UNFULL_REPEAT)?;
        // Ports only: nothing frees them in this round (a rare flow finds 8 taken: 1 seen in
        // 150,000).
        ensure!(
            failed * 1000 <= u64::from(UNFULL_REPEAT),
            "{failed} new flows failed in a table with room"
        );
        unfull = unfull.min(ns);
    }

    Ok(format!(
        "BENCH l4 trivial_ns={trivial:.1} established_ns={established:.1} new_ns={new:.1} pass_ns={pass:.1} established_ratio={:.2} new_ratio={:.2} established_uncached_ns={uncached:.1} established_uncached_ratio={:.2} new_failed_inserts={no_port} new_unfull_ns={unfull:.1}",
        established / trivial,
        new / trivial,
        uncached / trivial
    ))
}

/// One run of `repeat` new flows on a fresh table of `entries` (the bench's full table:
/// `FULL_TABLE`, kept full): ns per packet and the repetitions that found no free source
/// port.
fn new_flow_round(service: &L4Service, syn: &[u8], entries: Option<u32>, repeat: u32) -> Result<(f64, u64)> {
    let (mut ebpf, sync) = setup(entries, std::slice::from_ref(service))?;
    let mut seed: Array<_, BenchSeed> = Array::try_from(ebpf.map_mut("LB_BENCH").context("LB_BENCH")?)?;
    seed.set(
        0,
        BenchSeed {
            daddr: u32::from(VIP).to_be(),
            dport: 80u16.to_be(),
            ..BenchSeed::default()
        },
        0,
    )?;
    let (ns, action) = run(&mut ebpf, "interlock_lb_bench_new", syn, repeat)?;
    ensure!(action == 4, "new flows are redirected (action {action})");
    // A tiny share of inserts fail in a full LRU table; those repetitions end as `no_port`
    // drops after 8 probes. Reported, bounded.
    let drops = sync.maps().drops()?;
    let no_port: u64 = drops.iter().map(|(_, n)| n).sum();
    let (packets, new_flows) = total(&sync.stats()?);
    ensure!(
        new_flows == packets && new_flows + no_port == u64::from(repeat),
        "every repetition took the new-flow path ({new_flows} new, {packets} packets, {drops:?})"
    );
    ensure!(
        new_flows as f64 >= 0.99 * f64::from(repeat),
        "at least 99% of the new flows were recorded ({new_flows}, {drops:?})"
    );
    Ok((ns, no_port))
}

fn main() -> Result<()> {
    interlock_tests::require_root();
    let lab = PacketLab::new()?;
    // The VIP must be routable for the established path's reverse half.
    lab.lb
        .ip(&["route", "add", "192.0.2.0/24", "via", &CLIENT.to_string()])?;
    let line = lab.run_inside(bench)??;
    println!("{line}");
    Ok(())
}
