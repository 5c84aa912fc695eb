//! The request path: route lookup, redirects, backend choice with retries, the access log
//! and metrics. What it builds on: `live` (the route table in force), `forward` (the
//! request and response as they cross), `splice` (upgrades, passthrough), `respond` (the
//! proxy's own answers), `answer` (what the client's server writes).
pub mod answer;
mod forward;
mod live;
mod respond;
mod splice;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Request, Response};

use crate::access_log;
use crate::l7::error::ProxyError;
use crate::l7::headers;
use crate::l7::metrics::{Metrics, RequestLabels, RouteLabels, RouteName, SeriesBook};
use crate::l7::raw_headers::RawHeaders;
use crate::l7::route::balance::{self, Registry};
use crate::l7::route::table::{self as routes, Lookup, Route};
use crate::l7::upstream::attempt::Attempts;
use crate::l7::upstream::Upstream;
use crate::l7::{BoxError, ProxyBody};
use crate::model::Stickiness;
use crate::l7::normalize::{self, Normalized};
use answer::Answer;
pub use live::LiveTable;
use respond::{error_response, redirect};

/// A request body the proxy can forward: hyper's `Incoming`, or an empty body.
pub trait RequestBody: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Sync + 'static {}
impl<B: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Sync + 'static> RequestBody for B {}

/// The client end of a connection, with what every request on it reuses.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The client IP as X-Forwarded-For carries it: formatted once per connection.
    ip_value: HeaderValue,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            ip_value: headers::ip_value(addr.ip()),
        }
    }

    fn ip_str(&self) -> &str {
        self.ip_value.to_str().unwrap_or("-")
    }
}

pub struct Proxy {
    live: ArcSwap<LiveTable>,
    /// The route label of requests that matched no route.
    no_route: Arc<str>,
    registry: Registry,
    upstream: Upstream,
    /// How long a request waits for a slot at a backend serving its limit (like HAProxy's
    /// `timeout queue`, the connect timeout).
    queue_timeout: Duration,
    pub metrics: Arc<Metrics>,
    /// The metric series of the routes and backends in force (`live::apply` keeps it).
    series: std::sync::Mutex<SeriesBook>,
    proxy_id: HeaderValue,
}

/// Whether the request came in over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl Proxy {
    pub fn new(metrics: Arc<Metrics>, proxy_id: &str, connect_timeout: Duration, response_timeout: Duration) -> Proxy {
        Proxy {
            live: ArcSwap::from_pointee(LiveTable::empty()),
            no_route: Arc::from("-"),
            registry: Registry::default(),
            upstream: Upstream::new(connect_timeout, response_timeout),
            queue_timeout: connect_timeout,
            metrics,
            series: Default::default(),
            proxy_id: HeaderValue::from_str(proxy_id).unwrap_or(HeaderValue::from_static("interlock")),
        }
    }

    /// Lets each backend serve at most `max` requests at once (default
    /// `config::defaults::MAX_BACKEND_REQUESTS`); more wait in line for a slot.
    pub fn with_backend_limit(mut self, max: usize) -> Proxy {
        self.registry = Registry::new(max);
        self
    }
    /// Handles one request; never fails: errors become responses. `B` is hyper's body for
    /// requests hyper's server read, an empty one for those of the lean server (`h1_server`).
    pub async fn handle<B: RequestBody>(self: Arc<Self>, mut req: Request<B>, peer: Peer, scheme: Scheme) -> Answer {
        let started = Instant::now();
        let request_id = headers::request_id(req.headers());
        let method = req.method().clone();
        // Every path, h2 and TLS included, routes what this step leaves (see `normalize`).
        let normalized = normalize::request(&mut req);
        // One cheap clone (shared bytes) serves routing and the access log: the target as
        // routed, or as it came when it was refused.
        let uri = req.uri().clone();
        let host = match &normalized {
            Ok(n) => Some(n.authority.clone()),
            Err(_) => req.headers().get(hyper::header::HOST).cloned(),
        };
        // One table for the whole request: routing, backends, metric handles.
        let live = self.live.load_full();
        let forwarded = match normalized {
            Ok(normalized) => {
                self.route_and_forward(&live, req, &peer, scheme, normalized, &request_id)
                    .await
            }
            Err(e) => Err((None, e)),
        };
        let (route, response, upstream) = match forwarded {
            Ok((route, resp, upstream)) => (route, resp, upstream),
            Err((route, e)) => {
                if !matches!(e, ProxyError::NoRoute { .. }) {
                    tracing::warn!(target: "interlock::access", side = ?e.side(), "{e}");
                }
                (route, error_response(&e), None)
            }
        };
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        access_log::write(&access_log::Line {
            client: peer.ip_str(),
            method: method.as_str(),
            host: host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("-"),
            path: uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            route: route.as_ref().map_or("-", |r| &*r.name),
            upstream: upstream.as_ref().and_then(|u| u.addr.to_str().ok()).unwrap_or("-"),
            status,
            micros: elapsed.as_micros() as u64,
            request_id: request_id.as_str(),
        });
        self.record(&live, route.as_ref(), status, elapsed);
        let (raw, upstream) = match upstream {
            Some(u) => (u.raw, Some((u.addr, u.took))),
            None => (None, None),
        };
        Answer {
            response,
            raw,
            request_id,
            upstream,
            proxy_id: self.proxy_id.clone(),
        }
    }

    /// Counts a request and its latency under its route (`-` when none matched).
    fn record(&self, live: &LiveTable, route: Option<&Arc<Route>>, status: u16, elapsed: Duration) {
        if let Some(route) = route {
            // Every route of the table has its series; through them a request finishing after
            // its route was removed brings no series back.
            if let Some(state) = live.state_of(route) {
                state.series.latency.observe(elapsed.as_secs_f64());
                state.series.count(&self.metrics, status);
            }
            return;
        }
        // No route matched: the `-` series, never removed.
        let label = RouteName(self.no_route.clone());
        self.metrics
            .latency
            .get_or_create(&RouteLabels { route: label.clone() })
            .observe(elapsed.as_secs_f64());
        self.metrics
            .requests
            .get_or_create(&RequestLabels { route: label, status })
            .inc();
    }

    /// Routes and forwards; on error returns the route name (when one was chosen) and why.
    /// On success also which backend answered, when one did.
    async fn route_and_forward<B: RequestBody>(
        &self,
        live: &LiveTable,
        req: Request<B>,
        peer: &Peer,
        scheme: Scheme,
        normalized: Normalized,
        request_id: &headers::RequestId,
    ) -> Result<(Option<Arc<Route>>, Response<ProxyBody>, Option<Upstreamed>), (Option<Arc<Route>>, ProxyError)> {
        // Checked by `normalize`: ASCII.
        let host = normalized.authority.to_str().unwrap_or_default();
        let uri = req.uri();
        let path = uri.path();
        let route = match live.table.lookup(scheme.as_str(), host, path) {
            Lookup::Route(route) => route,
            Lookup::Redirect(target) => return Ok((None, redirect(&target), None)),
            Lookup::NotFound => {
                return Err((
                    None,
                    ProxyError::NoRoute {
                        host: routes::normalize_host(host).into_owned(),
                    },
                ))
            }
        };
        let name = Some(route.clone());
        if route.ssl_only && scheme == Scheme::Http {
            let target = format!(
                "https://{}{}",
                routes::normalize_host(host),
                uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
            );
            return Ok((name, redirect(&target), None));
        }
        let upgrade = normalized.upgrade;
        if upgrade.is_some()
            && !route.websocket_endpoints.is_empty()
            && !route
                .websocket_endpoints
                .iter()
                .any(|p| routes::prefix_matches(p, path))
        {
            return Err((name, ProxyError::BadRequest("upgrade not allowed on this path")));
        }
        let sticky = match &route.stickiness {
            Stickiness::None => None,
            Stickiness::Cookie(cookie) => headers::cookie(req.headers(), cookie).map(balance::sticky_key),
            Stickiness::ClientIp => Some(balance::sticky_key(peer.addr.ip())),
        };
        let backends = live.backends_of(&route);
        if backends.is_empty() {
            return Err((
                name,
                ProxyError::NoBackend {
                    route: route.name.to_string(),
                },
            ));
        }
        let forwarded = headers::Forwarded {
            client: peer.ip_value.clone(),
            proto: scheme.as_str(),
            host: normalized.authority,
            request_id: request_id.clone(),
        };
        let mut req = self
            .upstream_request(req, &route, forwarded, upgrade.as_ref())
            .map_err(|e| (name.clone(), e))?;
        let client_upgrade = if upgrade.is_some() { req.on_upgrade() } else { None };
        let mut attempts = Attempts::new(&backends, sticky);
        while let Some(backend) = attempts.next_backend() {
            let mut in_flight = backend.start();
            let admission = in_flight.admit(self.queue_timeout).await;
            if admission != balance::Admission::Immediate {
                self.metrics.limit_reached("backend_requests");
            }
            if admission == balance::Admission::TimedOut {
                let busy = ProxyError::BackendBusy { addr: backend.addr };
                req = attempts
                    .failed(&backend, busy, Some(req))
                    .map_err(|e| (name.clone(), e))?;
                continue;
            }
            let sent_at = Instant::now();
            match self.upstream.send(backend.addr, req).await {
                Ok(resp) => {
                    attempts.succeeded(&backend);
                    let took = sent_at.elapsed();
                    let (resp, raw) = self.downstream_response(resp, client_upgrade, in_flight);
                    let upstream = Upstreamed {
                        addr: backend.addr_value.clone(),
                        took,
                        raw,
                    };
                    return Ok((name, resp, Some(upstream)));
                }
                Err((e, unsent)) => {
                    req = attempts.failed(&backend, e, unsent).map_err(|e| (name.clone(), e))?;
                    if let Some(series) = live.backend_series(&backend.addr) {
                        series.retried(&self.metrics);
                    }
                }
            }
        }
        let error = attempts.last_error().unwrap_or(ProxyError::NoBackend {
            route: route.name.to_string(),
        });
        Err((name, error))
    }
}

/// The backend that answered a request.
struct Upstreamed {
    /// Its `x-upstream-addr` value.
    addr: HeaderValue,
    took: Duration,
    /// Its header lines, when the lean client kept them raw.
    raw: Option<RawHeaders>,
}
