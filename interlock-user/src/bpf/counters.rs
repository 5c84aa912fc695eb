//! Reading the per-CPU counters of the counting program.
use anyhow::{Context, Result};
use aya::maps::PerCpuArray;
use aya::Ebpf;
use interlock_common::{ProtoStats, PROTO_SLOTS, PROTO_SLOT_NON_IP};

/// Totals over all CPUs for one IP protocol (or non-IP frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtoCount {
    /// IP protocol number, or `None` for frames that carry no IP packet.
    pub protocol: Option<u8>,
    pub packets: u64,
    pub bytes: u64,
}

impl ProtoCount {
    pub fn name(&self) -> String {
        match self.protocol {
            None => "non-IP".into(),
            Some(0) => "HOPOPT(0)".into(),
            Some(1) => "ICMP(1)".into(),
            Some(6) => "TCP(6)".into(),
            Some(17) => "UDP(17)".into(),
            Some(58) => "ICMPv6(58)".into(),
            Some(p) => format!("IP({p})"),
        }
    }
}

/// Sums `PROTO_STATS` over CPUs; returns only protocols that saw packets.
pub fn read_proto_stats(bpf: &Ebpf) -> Result<Vec<ProtoCount>> {
    let map = bpf
        .map("PROTO_STATS")
        .context("the eBPF object has no PROTO_STATS map")?;
    let stats: PerCpuArray<_, ProtoStats> = PerCpuArray::try_from(map)?;
    let mut out = Vec::new();
    for slot in 0..PROTO_SLOTS {
        let per_cpu = stats
            .get(&slot, 0)
            .with_context(|| format!("reading PROTO_STATS[{slot}]"))?;
        let (packets, bytes) = per_cpu.iter().fold((0, 0), |(p, b), s| (p + s.packets, b + s.bytes));
        if packets > 0 {
            let protocol = (slot != PROTO_SLOT_NON_IP).then_some(slot as u8);
            out.push(ProtoCount {
                protocol,
                packets,
                bytes,
            });
        }
    }
    Ok(out)
}
