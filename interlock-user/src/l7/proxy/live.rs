//! The live route table: a snapshot's routes compiled, with each backend's live state and
//! each route's metric handles, swapped in whole (`ArcSwap`) when a snapshot comes.
//!
//! Requests in flight keep the table (and backends) they started with.
use std::sync::Arc;

use std::net::SocketAddr;

use super::Proxy;
use crate::l7::metrics::{BackendSeries, LimitLabels, RouteSeries};
use crate::l7::route::balance::Backend;
use crate::l7::route::table::{Route, RouteTable};
use crate::l7::upstream::tls::TlsTarget;
use crate::model::assemble::{LIMIT_BACKENDS_PER_SERVICE, LIMIT_HTTP_ROUTES};
use crate::model::Snapshot;

/// A route table with the live state of every backend it names.
pub struct LiveTable {
    pub table: RouteTable,
    /// Keyed by the route's address in memory: one lookup per request.
    routes: foldhash::HashMap<usize, RouteState>,
    /// The metric series of every backend the table routes to.
    backend_series: foldhash::HashMap<SocketAddr, Arc<BackendSeries>>,
}

/// What the proxy keeps per route of a live table: its backends' live state and its metric
/// series, taken once per swap instead of looked up (hashing the labels, locking the family)
/// per request. Recording through them after the route was removed brings no series back.
pub(super) struct RouteState {
    backends: Arc<[Arc<Backend>]>,
    pub(super) series: Arc<RouteSeries>,
    /// TLS to the backends (`ssl_backend`), when the route has it and it could be set up
    /// (else each request tries again and fails with the reason).
    pub(super) backend_tls: Option<Arc<TlsTarget>>,
}

impl LiveTable {
    pub(super) fn empty() -> LiveTable {
        LiveTable {
            table: RouteTable::default(),
            routes: foldhash::HashMap::default(),
            backend_series: foldhash::HashMap::default(),
        }
    }

    pub(super) fn backend_series(&self, addr: &SocketAddr) -> Option<&Arc<BackendSeries>> {
        self.backend_series.get(addr)
    }

    pub fn backends_of(&self, route: &Arc<Route>) -> Arc<[Arc<Backend>]> {
        self.state_of(route)
            .map(|s| s.backends.clone())
            .unwrap_or_else(|| Arc::from(Vec::new()))
    }

    /// The route's TLS to its backends, when it has one set up.
    pub(super) fn tls_of(&self, route: &Arc<Route>) -> Option<Arc<TlsTarget>> {
        self.state_of(route)?.backend_tls.clone()
    }

    pub(super) fn state_of(&self, route: &Arc<Route>) -> Option<&RouteState> {
        self.routes.get(&(Arc::as_ptr(route) as usize))
    }
}

impl Proxy {
    /// Compiles and swaps in the routes of `snapshot`.
    pub fn apply(&self, snapshot: &Snapshot) {
        for limit in [LIMIT_HTTP_ROUTES, LIMIT_BACKENDS_PER_SERVICE] {
            let services = snapshot.limits_hit.get(limit).copied().unwrap_or(0);
            self.metrics
                .services_over_limit
                .get_or_create(&LimitLabels { limit })
                .set(i64::from(services));
        }
        let table = RouteTable::compile(snapshot);
        let states = self
            .registry
            .sync(table.routes().flat_map(|r| r.backends.iter().copied()));
        // Held across the swap: a scrape setting `interlock_backend_up` sees the old table with
        // its series or the new one with its own, never a retired backend's series to remake.
        let mut book = self.series.lock().unwrap_or_else(|e| e.into_inner());
        book.sync(&self.metrics, table.routes().map(|r| &r.name), states.keys().copied());
        let routes = table
            .routes()
            .filter_map(|r| {
                let list: Vec<Arc<Backend>> = r.backends.iter().filter_map(|a| states.get(a).cloned()).collect();
                let state = RouteState {
                    backends: Arc::from(list),
                    series: book.route(&r.name)?.clone(),
                    backend_tls: r
                        .backend_tls
                        .as_ref()
                        .and_then(|spec| match self.upstream.tls_target(spec) {
                            Ok(target) => Some(target),
                            Err(reason) => {
                                tracing::error!(route = %r.name, "TLS to the backends cannot be set up: {reason}");
                                None
                            }
                        }),
                };
                Some((Arc::as_ptr(r) as usize, state))
            })
            .collect();
        let backend_series = states
            .keys()
            .filter_map(|a| Some((*a, book.backend(a)?.clone())))
            .collect();
        self.upstream.retain(|a| states.contains_key(a));
        let specs: std::collections::HashSet<&crate::model::BackendTls> =
            table.routes().filter_map(|r| r.backend_tls.as_ref()).collect();
        self.upstream.retain_tls(|spec| specs.contains(spec));
        self.live.store(Arc::new(LiveTable {
            table,
            routes,
            backend_series,
        }));
        drop(book);
        self.metrics.route_swaps.inc();
    }

    /// Sets `interlock_backend_up` of every backend routed to, for a scrape.
    pub fn refresh_backend_up(&self) {
        let _book = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let live = self.live.load();
        for state in live.routes.values() {
            for b in state.backends.iter() {
                if let Some(series) = live.backend_series.get(&b.addr) {
                    series.up.set(i64::from(b.available()));
                }
            }
        }
    }

    pub fn table(&self) -> arc_swap::Guard<Arc<LiveTable>> {
        self.live.load()
    }

    /// Every backend state currently routed to, for health checks and metrics.
    pub fn backend_states(&self) -> Vec<Arc<Backend>> {
        let live = self.live.load();
        let mut all: Vec<Arc<Backend>> = live.routes.values().flat_map(|s| s.backends.iter().cloned()).collect();
        all.sort_by_key(|b| b.addr);
        all.dedup_by_key(|b| b.addr);
        all
    }
}
