//! The request path: route lookup, redirects, backend choice with retries, forwarding with
//! streamed bodies, websocket upgrades, response headers, access log and metrics.
//!
//! The live route table sits behind an `ArcSwap`: a new snapshot swaps it in one store;
//! requests in flight keep the table (and backends) they started with.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, HOST, LOCATION};
use hyper::{Request, Response, StatusCode, Uri, Version};

use super::answer::Answer;
use super::balance::{self, Backend, Registry};
use super::error::ProxyError;
use super::h1_client::LeanRequest;
use super::headers;
use super::metrics::{BackendLabels, LimitLabels, Metrics, RequestLabels, RouteLabels, RouteName};
use super::raw_headers::RawHeaders;
use super::routes::{self, Lookup, Route, RouteTable};
use super::upstream::{Outgoing, Upstream, UpstreamBody};
use super::{BoxError, ProxyBody};
use crate::access_log;
use crate::model::assemble::{LIMIT_BACKENDS_PER_SERVICE, LIMIT_HTTP_ROUTES};
use crate::model::{Snapshot, Stickiness};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

/// A request body the proxy can forward: hyper's `Incoming`, or an empty body.
pub trait RequestBody: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Sync + 'static {}
impl<B: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Sync + 'static> RequestBody for B {}

/// At most this many backends are tried for one request (connect failures only).
const MAX_ATTEMPTS: usize = 3;

/// A route table with the live state of every backend it names.
pub struct LiveTable {
    pub table: RouteTable,
    /// Keyed by the route's address in memory: one lookup per request.
    routes: foldhash::HashMap<usize, RouteState>,
}

/// What the proxy keeps per route of a live table: its backends' live state and its metric
/// handles, taken from the metric families once per swap instead of looked up (hashing the
/// labels, locking the family) per request.
struct RouteState {
    backends: Arc<[Arc<Backend>]>,
    latency: Histogram,
    /// Requests answered 200, the usual status; others go through the family.
    ok: Counter,
}

impl LiveTable {
    pub fn backends_of(&self, route: &Arc<Route>) -> Arc<[Arc<Backend>]> {
        self.state_of(route)
            .map(|s| s.backends.clone())
            .unwrap_or_else(|| Arc::from(Vec::new()))
    }

    fn state_of(&self, route: &Arc<Route>) -> Option<&RouteState> {
        self.routes.get(&(Arc::as_ptr(route) as usize))
    }
}

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
            live: ArcSwap::from_pointee(LiveTable {
                table: RouteTable::default(),
                routes: foldhash::HashMap::default(),
            }),
            no_route: Arc::from("-"),
            registry: Registry::default(),
            upstream: Upstream::new(connect_timeout, response_timeout),
            queue_timeout: connect_timeout,
            metrics,
            proxy_id: HeaderValue::from_str(proxy_id).unwrap_or(HeaderValue::from_static("interlock")),
        }
    }

    /// Lets each backend serve at most `max` requests at once (default
    /// `balance::DEFAULT_MAX_REQUESTS_PER_BACKEND`); more wait in line for a slot.
    pub fn with_backend_limit(mut self, max: usize) -> Proxy {
        self.registry = Registry::new(max);
        self
    }

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
        let routes = table
            .routes()
            .map(|r| {
                let list: Vec<Arc<Backend>> = r.backends.iter().filter_map(|a| states.get(a).cloned()).collect();
                let route = RouteName(r.name.clone());
                let state = RouteState {
                    backends: Arc::from(list),
                    latency: self
                        .metrics
                        .latency
                        .get_or_create(&RouteLabels { route: route.clone() })
                        .clone(),
                    ok: self
                        .metrics
                        .requests
                        .get_or_create(&RequestLabels { route, status: 200 })
                        .clone(),
                };
                (Arc::as_ptr(r) as usize, state)
            })
            .collect();
        self.upstream.retain(|a| states.contains_key(a));
        self.live.store(Arc::new(LiveTable { table, routes }));
        self.metrics.route_swaps.inc();
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

    /// Handles one request; never fails: errors become responses. `B` is hyper's body for
    /// requests hyper's server read, an empty one for those of the lean server (`h1_server`).
    pub async fn handle<B: RequestBody>(self: Arc<Self>, req: Request<B>, peer: Peer, scheme: Scheme) -> Answer {
        let started = Instant::now();
        let request_id = headers::request_id(req.headers());
        let method = req.method().clone();
        // One cheap clone (shared bytes) serves routing and the access log.
        let uri = req.uri().clone();
        let host = request_host(&req);
        // One table for the whole request: routing, backends, metric handles.
        let live = self.live.load_full();
        let (route, response, upstream) = match self
            .route_and_forward(&live, req, &uri, &peer, scheme, host.as_ref())
            .await
        {
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
        if let Some(state) = route.and_then(|r| live.state_of(r)) {
            state.latency.observe(elapsed.as_secs_f64());
            if status == 200 {
                state.ok.inc();
                return;
            }
        }
        let label = RouteName(route.map_or_else(|| self.no_route.clone(), |r| r.name.clone()));
        if route.is_none() {
            self.metrics
                .latency
                .get_or_create(&RouteLabels { route: label.clone() })
                .observe(elapsed.as_secs_f64());
        }
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
        uri: &Uri,
        peer: &Peer,
        scheme: Scheme,
        host_value: Option<&HeaderValue>,
    ) -> Result<(Option<Arc<Route>>, Response<ProxyBody>, Option<Upstreamed>), (Option<Arc<Route>>, ProxyError)> {
        let host = host_value.and_then(|h| h.to_str().ok());
        headers::check_request(req.headers(), host).map_err(|e| (None, e))?;
        let host = host.unwrap_or_default();
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
        let upgrade = headers::upgrade_requested(req.headers());
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
        let mut req = self
            .upstream_request(req, &route, peer, scheme, host_value, upgrade.as_ref())
            .map_err(|e| (name.clone(), e))?;
        let client_upgrade = match &mut req {
            Outgoing::Full(r) if upgrade.is_some() => Some(hyper::upgrade::on(r)),
            _ => None,
        };
        // Addresses already tried; a fixed array, no allocation per request.
        let mut tried = [SocketAddr::from(([0, 0, 0, 0], 0)); MAX_ATTEMPTS];
        let attempts = MAX_ATTEMPTS.min(backends.len());
        let mut last_error = None;
        for attempt in 0..attempts {
            let Some(backend) = balance::pick(&backends, sticky, &tried[..attempt]) else {
                break;
            };
            tried[attempt] = backend.addr;
            let mut in_flight = backend.start();
            let admission = in_flight.admit(self.queue_timeout).await;
            if admission != balance::Admission::Immediate {
                self.metrics.limit_reached("backend_requests");
            }
            if admission == balance::Admission::TimedOut {
                last_error = Some(ProxyError::BackendBusy { addr: backend.addr });
                continue;
            }
            let sent_at = Instant::now();
            match self.upstream.send(backend.addr, req).await {
                Ok(resp) => {
                    backend.record_success();
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
                    if matches!(e, ProxyError::Connect { .. } | ProxyError::ConnectTimeout { .. })
                        && backend.record_connect_failure()
                    {
                        tracing::warn!(backend = %backend.addr, "backend ejected after consecutive connect failures");
                    }
                    match unsent {
                        Some(r) if e.retry_safe() => {
                            self.metrics
                                .retries
                                .get_or_create(&BackendLabels {
                                    backend: backend.addr.to_string(),
                                })
                                .inc();
                            req = r;
                            last_error = Some(e);
                        }
                        _ => return Err((name, e)),
                    }
                }
            }
        }
        Err((
            name,
            last_error.unwrap_or(ProxyError::NoBackend {
                route: route.name.to_string(),
            }),
        ))
    }

    /// The request as the backend sees it: origin-form URI (rewritten), HTTP/1.1, no
    /// hop-by-hop headers, forwarding headers set; the body streamed through. Requests
    /// without a body or upgrade go to the lean client, the rest to hyper's.
    fn upstream_request<B: RequestBody>(
        &self,
        req: Request<B>,
        route: &Route,
        peer: &Peer,
        scheme: Scheme,
        host: Option<&HeaderValue>,
        upgrade: Option<&HeaderValue>,
    ) -> Result<Outgoing, ProxyError> {
        let (mut parts, body) = req.into_parts();
        parts.uri = origin_form(&parts.uri, route)?;
        parts.version = Version::HTTP_11;
        if !parts.headers.contains_key(HOST) {
            // HTTP/2 carries the host in :authority.
            if let Some(v) = host {
                parts.headers.insert(HOST, v.clone());
            }
        }
        if upgrade.is_none() && body.is_end_stream() {
            // The lean client writes the forwarding headers itself and leaves the fixed
            // hop-by-hop set out as it writes; only names a Connection header lists need
            // removing here.
            if parts.headers.contains_key(hyper::header::CONNECTION) {
                headers::strip_hop_by_hop(&mut parts.headers);
            }
            let forwarded = headers::Forwarded {
                client: peer.ip_value.clone(),
                proto: scheme.as_str(),
                host: host.cloned(),
            };
            return Ok(Outgoing::Lean(LeanRequest { parts, forwarded }));
        }
        headers::strip_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = upgrade {
            parts
                .headers
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(hyper::header::UPGRADE, protocol.clone());
        }
        headers::set_forwarded(&mut parts.headers, &peer.ip_value, scheme.as_str(), host.cloned());
        Ok(Outgoing::Full(Request::from_parts(
            parts,
            body.map_err(Into::into).boxed(),
        )))
    }

    /// The backend's response as the client gets it, and the backend's header lines when
    /// the lean client kept them raw.
    fn downstream_response(
        &self,
        mut resp: Response<UpstreamBody>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        in_flight: balance::InFlight,
    ) -> (Response<ProxyBody>, Option<RawHeaders>) {
        // The lean client leaves hop-by-hop headers out as it parses.
        let raw = match resp.body_mut() {
            UpstreamBody::Lean(body) => body.take_raw_headers(),
            UpstreamBody::Hyper(_) => None,
        };
        let (mut parts, body) = resp.into_parts();
        let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
        let mut in_flight = Some(in_flight);
        if switching {
            match client_upgrade {
                Some(client_upgrade) => {
                    let backend_upgrade = hyper::upgrade::on(Response::from_parts(parts.clone(), ()));
                    tokio::spawn(splice_upgraded(client_upgrade, backend_upgrade, in_flight.take()));
                    return (Response::from_parts(parts, empty()), raw);
                }
                None => {
                    let e = ProxyError::Internal("backend switched protocols unasked".into());
                    return (error_response(&e), None);
                }
            }
        }
        if raw.is_none() {
            headers::strip_hop_by_hop(&mut parts.headers);
        }
        // Count the request in flight until its body has been read.
        let body = body.map_frame(move |f| {
            let _ = &in_flight;
            f
        });
        (Response::from_parts(parts, body.boxed()), raw)
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

/// Copies bytes both ways between an upgraded client and backend connection.
async fn splice_upgraded(
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    _in_flight: Option<balance::InFlight>,
) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!("upgrade failed: {e}");
            return;
        }
    };
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut backend = hyper_util::rt::TokioIo::new(backend);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
}

/// The Host a request is for: the URI authority (HTTP/2, absolute-form) or the Host header.
/// A header value: cloning the Host header shares its bytes, no copy per request.
fn request_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(HOST).cloned(),
    }
}

/// The origin-form URI sent to the backend: the prefix stripped when the route says so.
/// Unchanged paths keep their bytes (no re-parse).
fn origin_form(uri: &Uri, route: &Route) -> Result<Uri, ProxyError> {
    let strip = route.strip_prefix && route.path_prefix != "/";
    if !strip {
        if uri.scheme().is_none() && uri.authority().is_none() {
            return Ok(uri.clone());
        }
        let mut parts = hyper::http::uri::Parts::default();
        parts.path_and_query = Some(
            uri.path_and_query()
                .cloned()
                .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/")),
        );
        return Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest("unparsable path"));
    }
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    routes::rewrite_path(&route.path_prefix, true, path)
        .parse::<Uri>()
        .map_err(|_| ProxyError::BadRequest("unparsable path"))
}

fn empty() -> ProxyBody {
    Full::new(Bytes::new()).map_err(|never| match never {}).boxed()
}

pub fn text_response(status: StatusCode, body: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn redirect(target: &str) -> Response<ProxyBody> {
    let mut resp = text_response(StatusCode::MOVED_PERMANENTLY, "moved\n");
    if let Ok(v) = HeaderValue::from_str(target) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

fn error_response(e: &ProxyError) -> Response<ProxyBody> {
    let body = match e {
        ProxyError::NoRoute { .. } => "no route for this host\n".to_string(),
        ProxyError::BadRequest(why) => format!("bad request: {why}\n"),
        other => format!("{}\n", other.status().canonical_reason().unwrap_or("error")),
    };
    let mut resp = text_response(e.status(), &body);
    if e.side() == super::error::Side::Client {
        // After a malformed request the connection's framing cannot be trusted: close it.
        resp.headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
