//! Prometheus metrics of the HTTP plane.
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A route's name as a label value, shared with the route table: labelling a request
/// copies no string.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RouteName(pub Arc<str>);

impl EncodeLabelValue for RouteName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: RouteName,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: RouteName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: &'static str,
}

pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub retries: Family<BackendLabels, Counter>,
    pub backend_up: Family<BackendLabels, Gauge>,
    pub connections: Gauge,
    pub limits: Family<LimitLabels, Counter>,
    /// Services the control plane cut short by one of its bounds (routes, backends).
    pub services_over_limit: Family<LimitLabels, Gauge>,
    pub route_swaps: Counter,
    /// When each limit was last logged: a flood of refusals makes one line per interval.
    limit_logged: std::sync::Mutex<std::collections::HashMap<&'static str, std::time::Instant>>,
}

/// A limit reached is logged at most this often (it is counted every time).
const LIMIT_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))),
            retries: Family::default(),
            backend_up: Family::default(),
            connections: Gauge::default(),
            limits: Family::default(),
            services_over_limit: Family::default(),
            route_swaps: Counter::default(),
            limit_logged: Default::default(),
        };
        registry.register(
            "interlock_http_requests",
            "HTTP requests by route and status",
            m.requests.clone(),
        );
        registry.register(
            "interlock_http_request_duration_seconds",
            "Request latency by route",
            m.latency.clone(),
        );
        registry.register(
            "interlock_http_retries",
            "Requests retried on another backend after a connect failure",
            m.retries.clone(),
        );
        registry.register(
            "interlock_backend_up",
            "1 when a backend is healthy and not ejected",
            m.backend_up.clone(),
        );
        registry.register(
            "interlock_http_connections",
            "Open client connections",
            m.connections.clone(),
        );
        registry.register(
            "interlock_limit_reached",
            "Requests or connections refused by a limit",
            m.limits.clone(),
        );
        registry.register(
            "interlock_services_over_limit",
            "Services not routed, or routed to only part of their tasks, because of a bound",
            m.services_over_limit.clone(),
        );
        registry.register(
            "interlock_route_table_swaps",
            "Route tables swapped in",
            m.route_swaps.clone(),
        );
        m
    }

    /// Counts a limit reached (`interlock_limit_reached{limit}`) and logs it, once per
    /// interval per limit, with how many times it was reached so far.
    pub fn limit_reached(&self, limit: &'static str) {
        let counter = self.limits.get_or_create(&LimitLabels { limit });
        counter.inc();
        let now = std::time::Instant::now();
        let mut logged = self.limit_logged.lock().unwrap_or_else(|e| e.into_inner());
        let due = logged
            .get(limit)
            .is_none_or(|last| now.duration_since(*last) >= LIMIT_LOG_INTERVAL);
        if due {
            logged.insert(limit, now);
            tracing::warn!(limit, total = counter.get(), "limit reached (logged once per 10 s)");
        }
    }
}
