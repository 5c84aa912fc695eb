//! The L4 counters on the admin `/metrics`: read at each scrape from what the L4 plane last
//! published (every second), so a scrape never touches the kernel maps.
//!
//! Two drop reasons are limits the operator sizes (`flow_table`: the connection table
//! refused an insert; `no_port`: no free source port towards a backend); the L4 plane logs
//! them once per interval (`LimitLog`).
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;

use crate::planes::status::L4Status;

/// What the L4 plane publishes: per-service counters and drops by reason.
#[derive(Debug, Clone, Default)]
pub struct L4Counters {
    pub services: Vec<L4Status>,
    pub drops: Vec<(&'static str, u64)>,
}

/// Drop reasons that mean a configured size was reached.
pub const LIMIT_DROPS: [&str; 2] = ["flow_table", "no_port"];

/// Encodes `interlock_l4_{packets,bytes,new_flows}{listener,service}` and
/// `interlock_l4_drops{reason}`.
#[derive(Debug)]
pub struct L4Collector(pub Arc<ArcSwap<L4Counters>>);

/// Name, help, and the figure it reads.
type PerServiceMetric = (&'static str, &'static str, fn(&L4Status) -> u64);

impl Collector for L4Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters = self.0.load();
        let per_service: [PerServiceMetric; 3] = [
            (
                "interlock_l4_packets",
                "Packets balanced by the XDP path, by L4 service",
                |s| s.packets,
            ),
            (
                "interlock_l4_bytes",
                "Bytes balanced by the XDP path, by L4 service",
                |s| s.bytes,
            ),
            (
                "interlock_l4_new_flows",
                "Flows created by the XDP path, by L4 service",
                |s| s.new_flows,
            ),
        ];
        for (name, help, value) in per_service {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for s in &counters.services {
                let labels = [("listener", s.listener.as_str()), ("service", s.service.as_str())];
                ConstCounter::new(value(s)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "interlock_l4_drops",
            "Packets to a VIP the XDP path dropped, by reason",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in &counters.drops {
            ConstCounter::new(*n).encode(family.encode_family(&[("reason", *reason)])?)?;
        }
        Ok(())
    }
}

/// Logs limit drops at most once per interval, with how many happened since the last line.
#[derive(Debug)]
pub struct LimitLog {
    interval: Duration,
    logged_at: Option<Instant>,
    /// Totals at the last line.
    seen: Vec<(&'static str, u64)>,
}

impl LimitLog {
    pub fn new(interval: Duration) -> LimitLog {
        LimitLog {
            interval,
            logged_at: None,
            seen: Vec::new(),
        }
    }

    /// The limit drops that grew since the last line, when a line is due now; the caller logs them.
    pub fn due(&mut self, drops: &[(&'static str, u64)], now: Instant) -> Vec<(&'static str, u64)> {
        if self.logged_at.is_some_and(|t| now.duration_since(t) < self.interval) {
            return Vec::new();
        }
        let grown: Vec<(&'static str, u64)> = drops
            .iter()
            .filter(|(reason, _)| LIMIT_DROPS.contains(reason))
            .filter_map(|&(reason, total)| {
                let before = self.seen.iter().find(|(r, _)| *r == reason).map_or(0, |s| s.1);
                (total > before).then_some((reason, total - before))
            })
            .collect();
        if !grown.is_empty() {
            self.logged_at = Some(now);
            self.seen = drops.to_vec();
        }
        grown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_drops_are_reported_once_per_interval_with_the_growth() {
        let mut log = LimitLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(
            log.due(&[("flow_table", 0), ("fragment", 5)], t0).is_empty(),
            "nothing grew"
        );
        assert_eq!(
            log.due(&[("flow_table", 3), ("fragment", 9)], t0),
            vec![("flow_table", 3)]
        );
        assert!(
            log.due(&[("flow_table", 7)], t0 + Duration::from_secs(5)).is_empty(),
            "within the interval"
        );
        assert_eq!(
            log.due(&[("flow_table", 7), ("no_port", 1)], t0 + Duration::from_secs(11)),
            vec![("flow_table", 4), ("no_port", 1)]
        );
    }

    #[test]
    fn the_collector_encodes_per_service_counters_and_drops() {
        let counters = L4Counters {
            services: vec![L4Status {
                listener: "10.0.0.1:53/udp".into(),
                service: "dns".into(),
                backends: vec![],
                packets: 12,
                bytes: 3400,
                new_flows: 2,
            }],
            drops: vec![("flow_table", 1)],
        };
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(L4Collector(Arc::new(ArcSwap::from_pointee(counters)))));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"interlock_l4_packets_total{listener="10.0.0.1:53/udp",service="dns"} 12"#),
            "{text}"
        );
        assert!(text.contains(r#"interlock_l4_bytes_total{listener="10.0.0.1:53/udp",service="dns"} 3400"#));
        assert!(
            text.contains(r#"interlock_l4_drops_total{reason="flow_table"} 1"#),
            "{text}"
        );
    }
}
