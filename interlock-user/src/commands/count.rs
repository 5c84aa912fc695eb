//! `interlock count`: attach the counting XDP program to an interface and print what it
//! sees per IP protocol. The first proof that build, load, attach, maps and logs work.
use std::time::Duration;

use anyhow::Result;
use tokio::time::{interval, sleep, MissedTickBehavior};

use interlock::bpf::{self, ProtoCount};

#[derive(Debug, clap::Args)]
pub struct CountArgs {
    /// Interface to attach to.
    #[arg(long)]
    pub iface: String,
    /// Skip native (driver) mode and attach in generic (skb) mode.
    #[arg(long)]
    pub skb: bool,
    /// Stop after this many seconds (0: run until Ctrl-C / SIGTERM).
    #[arg(long, default_value_t = 0)]
    pub duration: u64,
    /// Print the counters every this many seconds (0: only at the end).
    #[arg(long, default_value_t = 0)]
    pub interval: u64,
}

pub async fn run(args: CountArgs) -> Result<()> {
    let mut ebpf = bpf::load()?;
    bpf::spawn_kernel_logger(&mut ebpf)?;
    let (_link, mode) = bpf::attach_xdp(&mut ebpf, bpf::PROG_COUNT, &args.iface, args.skb)?;
    tracing::info!(iface = %args.iface, %mode, "attached {}", bpf::PROG_COUNT);

    let stop = async {
        if args.duration == 0 {
            interlock::runtime::shutdown_signal().await
        } else {
            tokio::select! {
                _ = sleep(Duration::from_secs(args.duration)) => {},
                _ = interlock::runtime::shutdown_signal() => {},
            }
        }
    };
    tokio::pin!(stop);
    let mut ticker = interval(Duration::from_secs(args.interval.max(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick(), if args.interval > 0 => print_counts(&bpf::read_proto_stats(&ebpf)?),
        }
    }
    // Give the logger task a moment to drain the last kernel records.
    sleep(Duration::from_millis(100)).await;
    print_counts(&bpf::read_proto_stats(&ebpf)?);
    Ok(())
}

fn print_counts(counts: &[ProtoCount]) {
    if counts.is_empty() {
        println!("no packets yet");
    }
    for c in counts {
        println!("proto={} packets={} bytes={}", c.name(), c.packets, c.bytes);
    }
}
