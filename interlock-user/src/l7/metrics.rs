//! Prometheus metrics of the HTTP plane.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

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

/// The series of one route: made when a snapshot brings the route, shared by every live table
/// that has it, and retired (removed from the families) when a snapshot drops it, so that
/// `/metrics` does not list routes that are gone for the rest of the process's life.
///
/// Requests in flight on an older table may finish after the retirement: they record through
/// the handles held here (a removed series, which no scrape sees any more) or, for the rarer
/// statuses made on first use, find the route retired and record nothing; neither brings a
/// removed series back.
pub struct RouteSeries {
    route: RouteName,
    pub latency: Histogram,
    /// Requests answered 200, the usual status: one handle, no family lookup per request.
    pub ok: Counter,
    /// Counters of the other statuses, made on first use; `None` once retired.
    others: Mutex<Option<HashMap<u16, Counter>>>,
}

impl RouteSeries {
    fn new(metrics: &Metrics, route: RouteName) -> RouteSeries {
        let latency = metrics
            .latency
            .get_or_create(&RouteLabels { route: route.clone() })
            .clone();
        let ok = metrics
            .requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                status: 200,
            })
            .clone();
        RouteSeries {
            route,
            latency,
            ok,
            others: Mutex::new(Some(HashMap::new())),
        }
    }

    /// Counts a request answered `status`, unless the route is retired.
    pub fn count(&self, metrics: &Metrics, status: u16) {
        if status == 200 {
            self.ok.inc();
            return;
        }
        let mut others = self.others.lock().unwrap_or_else(|e| e.into_inner());
        // Made under the lock `retire` takes: a series cannot be made after it was removed.
        let Some(others) = others.as_mut() else { return };
        others
            .entry(status)
            .or_insert_with(|| {
                metrics
                    .requests
                    .get_or_create(&RequestLabels {
                        route: self.route.clone(),
                        status,
                    })
                    .clone()
            })
            .inc();
    }

    fn retire(&self, metrics: &Metrics) {
        let statuses = self.others.lock().unwrap_or_else(|e| e.into_inner()).take();
        let route = &self.route;
        for status in statuses.into_iter().flat_map(|m| m.into_keys()).chain([200]) {
            metrics.requests.remove(&RequestLabels {
                route: route.clone(),
                status,
            });
        }
        metrics.latency.remove(&RouteLabels { route: route.clone() });
    }
}

/// The series of one backend address, kept and retired like a route's.
pub struct BackendSeries {
    labels: BackendLabels,
    /// `interlock_backend_up`, set at each scrape from the backend's state.
    pub up: Gauge,
    /// `interlock_http_retries`, made on the first retry; `Err(())` once retired.
    retries: Mutex<Result<Option<Counter>, ()>>,
}

impl BackendSeries {
    fn new(metrics: &Metrics, addr: SocketAddr) -> BackendSeries {
        let labels = BackendLabels {
            backend: addr.to_string(),
        };
        let up = metrics.backend_up.get_or_create(&labels).clone();
        BackendSeries {
            labels,
            up,
            retries: Mutex::new(Ok(None)),
        }
    }

    /// Counts a request retried after this backend failed, unless the backend is retired.
    pub fn retried(&self, metrics: &Metrics) {
        let mut retries = self.retries.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(counter) = retries.as_mut() {
            counter
                .get_or_insert_with(|| metrics.retries.get_or_create(&self.labels).clone())
                .inc();
        }
    }

    fn retire(&self, metrics: &Metrics) {
        *self.retries.lock().unwrap_or_else(|e| e.into_inner()) = Err(());
        metrics.retries.remove(&self.labels);
        metrics.backend_up.remove(&self.labels);
    }
}

/// The series of the routes and backends in force, by route name and backend address.
#[derive(Default)]
pub struct SeriesBook {
    routes: HashMap<Arc<str>, Arc<RouteSeries>>,
    backends: HashMap<SocketAddr, Arc<BackendSeries>>,
}

impl SeriesBook {
    /// Brings the book to exactly `routes` and `backends`: new ones get their series, those no
    /// longer named are retired (their label sets removed from every family).
    pub fn sync<'a>(
        &mut self,
        metrics: &Metrics,
        routes: impl IntoIterator<Item = &'a Arc<str>>,
        backends: impl IntoIterator<Item = SocketAddr>,
    ) {
        let mut kept_routes = HashMap::new();
        for name in routes {
            if kept_routes.contains_key(name) {
                continue;
            }
            let series = self
                .routes
                .remove(name)
                .unwrap_or_else(|| Arc::new(RouteSeries::new(metrics, RouteName(name.clone()))));
            kept_routes.insert(name.clone(), series);
        }
        for gone in std::mem::replace(&mut self.routes, kept_routes).into_values() {
            gone.retire(metrics);
        }
        let mut kept_backends = HashMap::new();
        for addr in backends {
            if kept_backends.contains_key(&addr) {
                continue;
            }
            let series = self
                .backends
                .remove(&addr)
                .unwrap_or_else(|| Arc::new(BackendSeries::new(metrics, addr)));
            kept_backends.insert(addr, series);
        }
        for gone in std::mem::replace(&mut self.backends, kept_backends).into_values() {
            gone.retire(metrics);
        }
    }

    pub fn route(&self, name: &str) -> Option<&Arc<RouteSeries>> {
        self.routes.get(name)
    }

    pub fn backend(&self, addr: &SocketAddr) -> Option<&Arc<BackendSeries>> {
        self.backends.get(addr)
    }
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
