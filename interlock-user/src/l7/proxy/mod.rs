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
use hyper::{Request, Response, StatusCode};

use crate::access_log;
use crate::l7::error::ProxyError;
use crate::l7::headers;
use crate::l7::metrics::{Metrics, RequestLabels, RouteLabels, RouteName, SeriesBook};
use crate::l7::normalize::{self, Normalized};
use crate::l7::raw_headers::RawHeaders;
use crate::l7::route::balance::{self, Registry};
use crate::l7::route::table::{self as routes, Lookup, Route};
use crate::l7::upstream::attempt::Attempts;
use crate::l7::upstream::Upstream;
use crate::l7::{BoxError, ProxyBody};
use crate::model::Stickiness;
use answer::Answer;
pub use live::LiveTable;
use respond::{error_response, redirect};

/// A request body the proxy can forward: hyper's `Incoming`, or an empty body.
pub trait RequestBody: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Sync + 'static {}
impl<B: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Sync + 'static> RequestBody for B {}

/// The client end of a connection, with what every request on it reuses.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client: the TCP peer, or whom a trusted balancer's PROXY header named.
    pub addr: SocketAddr,
    /// The client IP as X-Forwarded-For carries it: formatted once per connection.
    ip_value: HeaderValue,
    /// The port the client connected to (X-Forwarded-Port).
    local_port: u16,
    /// The peer is a trusted proxy (`--trusted-proxies`): its X-Forwarded-* are kept.
    trusted: bool,
}

impl Peer {
    /// An untrusted client connected to `local_port`.
    pub fn new(addr: SocketAddr, local_port: u16) -> Peer {
        Peer {
            addr,
            ip_value: headers::ip_value(addr.ip()),
            local_port,
            trusted: false,
        }
    }

    /// A peer whose X-Forwarded-* headers are taken as they are (a balancer in front).
    pub fn trusted(self) -> Peer {
        Peer { trusted: true, ..self }
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
    /// The largest request body forwarded (`None`: no limit).
    max_request_body: Option<u64>,
    /// The most backends one request or passthrough connection tries.
    backend_attempts: usize,
    /// The HTTPS listener's port when it is not 443: `ssl_only` redirects name it, else the
    /// client would be sent to a port nothing serves.
    https_port: Option<u16>,
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
            max_request_body: None,
            backend_attempts: crate::config::defaults::BACKEND_ATTEMPTS,
            https_port: None,
        }
    }

    /// The port the HTTPS listener serves on (`ssl_only` redirects carry it unless it is 443).
    pub fn with_https_port(mut self, port: Option<u16>) -> Proxy {
        self.https_port = port.filter(|p| *p != 443);
        self
    }

    /// Lets each backend serve at most `max` requests at once (default
    /// `config::defaults::MAX_BACKEND_REQUESTS`); more wait in line for a slot.
    pub fn with_backend_limit(mut self, max: usize) -> Proxy {
        self.registry = Registry::with_ejection(max, self.registry.ejection());
        self
    }

    /// Ejects backends after consecutive connect failures as `ejection` says (default from
    /// `config::defaults`).
    pub fn with_ejection(mut self, ejection: balance::Ejection) -> Proxy {
        self.registry = Registry::with_ejection(self.registry.max_requests(), ejection);
        self
    }
    /// Refuses request bodies over `max` bytes with `413` (`None`, the default: no limit):
    /// by Content-Length before anything is sent, or once a streamed body passes it (the
    /// client's server wraps bodies in `front::body_limit` with [`Proxy::max_request_body`]).
    pub fn with_max_request_body(mut self, max: Option<u64>) -> Proxy {
        self.max_request_body = max;
        self
    }

    /// Tries at most `n` backends for one request or passthrough connection (1 to
    /// `upstream::attempt::MAX_ATTEMPTS`; default `config::defaults::BACKEND_ATTEMPTS`).
    pub fn with_backend_attempts(mut self, n: usize) -> Proxy {
        self.backend_attempts = n.clamp(1, crate::l7::upstream::attempt::MAX_ATTEMPTS);
        self
    }

    /// The request body size limit (`None`: none).
    pub fn max_request_body(&self) -> Option<u64> {
        self.max_request_body
    }

    /// Handles one request; never fails: errors become responses. `B` is hyper's body for
    /// requests hyper's server read, an empty one for those of the lean server (`h1_server`).
    pub async fn handle<B: RequestBody>(self: Arc<Self>, mut req: Request<B>, peer: Peer, scheme: Scheme) -> Answer {
        let started = Instant::now();
        let request_id = headers::request_id(req.headers());
        let method = req.method().clone();
        let version = req.version();
        // Only when a line will be written: two header lookups (shared bytes, no copy).
        let (user_agent, referer) = if access_log::wanted() {
            let h = req.headers();
            (
                h.get(hyper::header::USER_AGENT).cloned(),
                h.get(hyper::header::REFERER).cloned(),
            )
        } else {
            (None, None)
        };
        // Every path, h2 and TLS included, routes what this step leaves (see `normalize`).
        let normalized = normalize::request(&mut req, peer.trusted);
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
            protocol: protocol_name(version),
            route: route.as_ref().map_or("-", |r| &*r.name),
            upstream: upstream.as_ref().and_then(|u| u.addr.to_str().ok()).unwrap_or("-"),
            status,
            bytes: body_length(&method, &response, upstream.as_ref()),
            micros: elapsed.as_micros() as u64,
            request_id: request_id.as_str(),
            user_agent: user_agent.as_ref().and_then(|v| v.to_str().ok()),
            referer: referer.as_ref().and_then(|v| v.to_str().ok()),
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
        let route = match live.table.lookup(scheme.as_str(), host, path, uri.query()) {
            Lookup::Route(route) => route,
            Lookup::Redirect(target) => return Ok((None, redirect(StatusCode::FOUND, &target), None)),
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
            let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let target = https_location(routes::normalize_host(host).as_ref(), self.https_port, path_and_query);
            return Ok((name, redirect(StatusCode::MOVED_PERMANENTLY, &target), None));
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
        if let Some(limit) = self.max_request_body {
            // An announced length over the limit: refused before anything is sent (and
            // before `Expect: 100-continue` is answered, which waits for the body's first read).
            if hyper::body::Body::size_hint(req.body()).lower() > limit {
                self.metrics.limit_reached("request_body_size");
                return Err((name, ProxyError::BodyTooLarge { addr: None, limit }));
            }
        }
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
            port: peer.local_port,
            request_id: request_id.clone(),
            relayed: normalized.relayed,
        };
        let tls = match &route.backend_tls {
            None => None,
            Some(spec) => match live.tls_of(&route) {
                Some(target) => Some(target),
                // Not set up when the table came (a CA secret not there yet): once more.
                None => Some(self.upstream.tls_target(spec).map_err(|reason| {
                    let route = route.name.to_string();
                    (name.clone(), ProxyError::BackendTlsConfig { route, reason })
                })?),
            },
        };
        let mut req = self
            .upstream_request(req, &route, forwarded, upgrade.as_ref(), tls)
            .map_err(|e| (name.clone(), e))?;
        let client_upgrade = if upgrade.is_some() { req.on_upgrade() } else { None };
        let mut attempts = Attempts::new(&backends, sticky, self.backend_attempts);
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
                    // Read now: the body handed on does not say its length (`map_frame`).
                    let length = hyper::body::Body::size_hint(resp.body()).exact();
                    let (resp, raw) = self.downstream_response(resp, client_upgrade, in_flight);
                    let upstream = Upstreamed {
                        addr: backend.addr_value.clone(),
                        took,
                        raw,
                        length,
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

/// The request line's protocol as access logs write it.
fn protocol_name(version: hyper::Version) -> &'static str {
    match version {
        hyper::Version::HTTP_09 => "HTTP/0.9",
        hyper::Version::HTTP_10 => "HTTP/1.0",
        hyper::Version::HTTP_11 => "HTTP/1.1",
        hyper::Version::HTTP_2 => "HTTP/2.0",
        hyper::Version::HTTP_3 => "HTTP/3.0",
        _ => "-",
    }
}

/// The response body's length when the head says it (a HEAD's answer and a 204/304 carry
/// none); `None` for a body streamed without a length.
fn body_length(method: &hyper::Method, response: &Response<ProxyBody>, upstream: Option<&Upstreamed>) -> Option<u64> {
    let status = response.status();
    if method == hyper::Method::HEAD || status.is_informational() || status == 204 || status == 304 {
        return Some(0);
    }
    match upstream {
        Some(u) => u.length,
        // The proxy's own answers (errors, redirects) are whole.
        None => hyper::body::Body::size_hint(response.body()).exact(),
    }
}

/// Where `ssl_only` sends a plain-HTTP request: the same host, path and query over HTTPS, on
/// the HTTPS listener's port when it is not 443.
fn https_location(host: &str, https_port: Option<u16>, path_and_query: &str) -> String {
    match https_port {
        Some(port) => format!("https://{host}:{port}{path_and_query}"),
        None => format!("https://{host}{path_and_query}"),
    }
}

/// The backend that answered a request.
struct Upstreamed {
    /// Its `x-upstream-addr` value.
    addr: HeaderValue,
    took: Duration,
    /// Its header lines, when the lean client kept them raw.
    raw: Option<RawHeaders>,
    /// Its body's length, when its head said.
    length: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::https_location;

    #[test]
    fn ssl_only_keeps_a_non_443_https_port() {
        assert_eq!(https_location("a.example", None, "/x?y"), "https://a.example/x?y");
        assert_eq!(
            https_location("a.example", Some(8443), "/x?y"),
            "https://a.example:8443/x?y"
        );
        assert_eq!(https_location("[::1]", Some(8443), "/"), "https://[::1]:8443/");
    }
}
