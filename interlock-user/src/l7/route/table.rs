//! The route table: a snapshot's HTTP routes compiled once into lookup structures, so a
//! request costs one host lookup and a scan of that host's few prefixes. Pure: no I/O.
//!
//! Order: exact host, then the longest matching wildcard (`*.example.com` matches one or more
//! labels in front), then within the host the longest segment-aligned path prefix; then the
//! default backend (the service labelled `default_backend`, with or without hosts of its own:
//! it answers every host no route claims); else no route (404). Redirects come first
//! (`redirect`). Host is compared without port, case-insensitively.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::model::{BackendTls, HttpRoute, Snapshot, Stickiness, TlsMode};

use super::redirect::Redirects;

/// What requests matching one (host, path prefix) get. Routes of several services with the
/// same host and prefix (canary) are merged: their backends share the traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Service names, for logs and metrics (`a+b` for a canary pair).
    pub name: Arc<str>,
    pub path_prefix: String,
    pub strip_prefix: bool,
    pub tls: TlsMode,
    /// TLS to the backends (`ssl_backend`): such requests always take hyper's client.
    /// Routes merged for a canary agree on it (`assemble` refuses them otherwise).
    pub backend_tls: Option<BackendTls>,
    pub ssl_only: bool,
    pub websocket_endpoints: Vec<String>,
    pub stickiness: Stickiness,
    pub backends: Vec<SocketAddr>,
}

/// A host's routes, longest prefix first.
#[derive(Debug, Clone, Default)]
struct HostRoutes {
    routes: Vec<Arc<Route>>,
}

impl HostRoutes {
    fn find(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| prefix_matches(&r.path_prefix, path))
    }
}

/// The compiled table; immutable, swapped whole when a new snapshot arrives.
#[derive(Debug, Default)]
pub struct RouteTable {
    pub version: u64,
    /// foldhash: one lookup per request; the keys come from the snapshot, not from clients.
    exact: foldhash::HashMap<String, HostRoutes>,
    /// (suffix including the dot, e.g. ".example.com", routes), longest suffix first.
    wildcard: Vec<(String, HostRoutes)>,
    default: Option<Arc<Route>>,
    redirects: Redirects,
}

/// What a request resolves to.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Route(Arc<Route>),
    Redirect(String),
    NotFound,
}

impl RouteTable {
    pub fn compile(snapshot: &Snapshot) -> RouteTable {
        // (host, prefix) -> merged route
        let mut merged: HashMap<(String, String), Route> = HashMap::new();
        let mut default: Option<Route> = None;
        for r in &snapshot.http {
            for host in &r.hosts {
                merge(
                    merged
                        .entry((host.clone(), r.path_prefix.clone()))
                        .or_insert_with(|| route_of(r)),
                    r,
                );
            }
            if r.default_backend {
                merge(default.get_or_insert_with(|| route_of(r)), r);
            }
        }
        let mut exact: foldhash::HashMap<String, HostRoutes> = foldhash::HashMap::default();
        let mut wildcard: HashMap<String, HostRoutes> = HashMap::new();
        for ((host, _), route) in merged {
            let route = Arc::new(route);
            match host.strip_prefix('*') {
                Some(suffix) => wildcard.entry(suffix.to_string()).or_default().routes.push(route),
                None => exact.entry(host).or_default().routes.push(route),
            }
        }
        for h in exact.values_mut().chain(wildcard.values_mut()) {
            h.routes.sort_by(|a, b| {
                b.path_prefix
                    .len()
                    .cmp(&a.path_prefix.len())
                    .then(a.path_prefix.cmp(&b.path_prefix))
            });
        }
        let mut wildcard: Vec<(String, HostRoutes)> = wildcard.into_iter().collect();
        wildcard.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        RouteTable {
            version: snapshot.version,
            exact,
            wildcard,
            default: default.map(Arc::new),
            redirects: Redirects::compile(
                snapshot
                    .http
                    .iter()
                    .flat_map(|r| r.redirects.iter().map(|d| (d, r.hosts.as_slice()))),
            ),
        }
    }

    /// Resolves a request. `host` may carry a port and any case; `scheme` is "http" or "https";
    /// `path` and `query` as normalised (a redirect's Location keeps them).
    pub fn lookup(&self, scheme: &str, host: &str, path: &str, query: Option<&str>) -> Lookup {
        let host = normalize_host(host);
        let redirects = !self.redirects.is_empty();
        if let Some(target) = redirects
            .then(|| self.redirects.find(scheme, &host, path, query))
            .flatten()
        {
            return Lookup::Redirect(target);
        }
        let claimed = self.exact.get(host.as_ref()).and_then(|h| h.find(path)).or_else(|| {
            self.wildcard
                .iter()
                .filter(|(suffix, _)| host.ends_with(suffix.as_str()))
                .find_map(|(_, h)| h.find(path))
        });
        if let Some(route) = claimed {
            return Lookup::Route(route.clone());
        }
        // Nothing claims this host and path: the default backend's, where its own path
        // redirects (a hostless service's) apply.
        if let Some(target) = redirects
            .then(|| self.redirects.find_fallback(scheme, path, query))
            .flatten()
        {
            return Lookup::Redirect(target);
        }
        match &self.default {
            Some(route) => Lookup::Route(route.clone()),
            None => Lookup::NotFound,
        }
    }

    /// The passthrough route for an SNI name (exact host first, then the longest wildcard).
    pub fn passthrough_backends(&self, sni: &str) -> Option<Arc<Route>> {
        let host = normalize_host(sni);
        let routes = self.exact.get(host.as_ref()).or_else(|| {
            self.wildcard
                .iter()
                .find(|(suffix, _)| host.ends_with(suffix.as_str()))
                .map(|(_, h)| h)
        })?;
        routes.routes.iter().find(|r| r.tls == TlsMode::Passthrough).cloned()
    }

    /// Every distinct route (for health checks and metrics).
    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.exact
            .values()
            .chain(self.wildcard.iter().map(|(_, h)| h))
            .flat_map(|h| h.routes.iter())
            .chain(self.default.iter())
    }
}

fn route_of(r: &HttpRoute) -> Route {
    Route {
        name: Arc::from(r.service.name.as_str()),
        path_prefix: r.path_prefix.clone(),
        strip_prefix: r.strip_prefix,
        tls: r.tls.clone(),
        backend_tls: r.backend_tls.clone(),
        ssl_only: r.ssl_only,
        websocket_endpoints: r.websocket_endpoints.clone(),
        stickiness: r.stickiness.clone(),
        backends: Vec::new(),
    }
}

fn merge(into: &mut Route, r: &HttpRoute) {
    if !into.name.split('+').any(|n| n == r.service.name) {
        into.name = Arc::from(format!("{}+{}", into.name, r.service.name));
    }
    for b in &r.backends {
        for _ in 0..b.weight.clamp(1, 100) {
            into.backends.push(b.addr);
        }
    }
    into.backends.sort();
}

/// Lower-cased host without port (`Example.COM:8080` -> `example.com`; `[::1]:80` -> `[::1]`).
/// Borrowed when already lower-case (the usual case): no allocation per request.
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = host.trim();
    let without_port = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    let name = without_port.trim_end_matches('.');
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// `/app` matches `/app`, `/app/`, `/app/x`, not `/apple`; `/` matches everything.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix) && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/') | Some(b'?')))
}

/// The path to forward: with `strip`, the prefix removed (`/app/x` -> `/x`, `/app` -> `/`).
pub fn rewrite_path(prefix: &str, strip: bool, path_and_query: &str) -> String {
    if !strip || prefix == "/" {
        return path_and_query.to_string();
    }
    let rest = &path_and_query[prefix.len().min(path_and_query.len())..];
    if rest.is_empty() || rest.starts_with('?') {
        format!("/{rest}")
    } else {
        rest.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, Redirect, ServiceRef};

    fn route(name: &str, hosts: &[&str], prefix: &str, port: u16) -> HttpRoute {
        let backend = Backend {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            weight: 1,
            id: name.into(),
        };
        let service = ServiceRef {
            id: name.into(),
            name: name.into(),
        };
        HttpRoute::plain(
            service,
            hosts.iter().map(|h| h.to_string()).collect(),
            prefix,
            vec![backend],
        )
    }

    fn table(routes: Vec<HttpRoute>) -> RouteTable {
        RouteTable::compile(&Snapshot {
            version: 1,
            http: routes,
            ..Snapshot::default()
        })
    }

    fn name(t: &RouteTable, host: &str, path: &str) -> String {
        match t.lookup("http", host, path, None) {
            Lookup::Route(r) => r.name.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let mut dflt = route("dflt", &["fallback.example"], "/", 3);
        dflt.default_backend = true;
        let t = table(vec![
            route("exact", &["api.example.com"], "/", 1),
            route("wild", &["*.example.com"], "/", 2),
            route("deeper", &["*.eu.example.com"], "/", 4),
            dflt,
        ]);
        assert_eq!(name(&t, "API.Example.com:8080", "/x"), "exact");
        assert_eq!(name(&t, "www.example.com", "/"), "wild");
        assert_eq!(
            name(&t, "a.b.example.com", "/"),
            "wild",
            "wildcards match several labels"
        );
        assert_eq!(name(&t, "x.eu.example.com", "/"), "deeper", "the longest wildcard wins");
        assert_eq!(
            name(&t, "example.com", "/"),
            "dflt",
            "*.example.com does not match the bare domain"
        );
        assert_eq!(name(&t, "other.org", "/"), "dflt");
        assert_eq!(
            table(vec![route("a", &["a.example"], "/", 1)]).lookup("http", "b.example", "/", None),
            Lookup::NotFound
        );
    }

    #[test]
    fn longest_segment_aligned_prefix() {
        let t = table(vec![
            route("root", &["h.example"], "/", 1),
            route("app", &["h.example"], "/app", 2),
            route("api", &["h.example"], "/app/api", 3),
        ]);
        assert_eq!(name(&t, "h.example", "/app/api/v1"), "api");
        assert_eq!(name(&t, "h.example", "/app/apis"), "app");
        assert_eq!(name(&t, "h.example", "/app"), "app");
        assert_eq!(name(&t, "h.example", "/app?x=1"), "app");
        assert_eq!(name(&t, "h.example", "/apple"), "root");
    }

    #[test]
    fn canary_routes_merge_their_backends() {
        let t = table(vec![
            route("blue", &["h.example"], "/", 1),
            route("green", &["h.example"], "/", 2),
        ]);
        let Lookup::Route(r) = t.lookup("http", "h.example", "/", None) else {
            panic!("routed")
        };
        assert_eq!(r.backends.len(), 2);
        assert_eq!(&*r.name, "blue+green");
    }

    #[test]
    fn redirects_by_url_or_path() {
        let mut r = route("a", &["new.example"], "/", 1);
        r.redirects = vec![
            Redirect {
                source: "http://old.example".into(),
                target: "http://new.example".into(),
            },
            Redirect {
                source: "/legacy".into(),
                target: "/app".into(),
            },
        ];
        let t = table(vec![r]);
        assert_eq!(
            t.lookup("http", "old.example", "/", None),
            Lookup::Redirect("http://new.example/".into())
        );
        assert_eq!(
            t.lookup("http", "new.example", "/legacy", None),
            Lookup::Redirect("/app".into())
        );
        assert!(matches!(t.lookup("http", "new.example", "/", None), Lookup::Route(_)));
        assert_eq!(
            t.lookup("http", "old.example", "/x", Some("y")),
            Lookup::Redirect("http://new.example/x?y".into()),
            "the path and query are kept"
        );
    }

    #[test]
    fn a_hostless_default_backend_serves_every_unclaimed_host() {
        let mut dflt = route("dflt", &[], "/", 3);
        dflt.default_backend = true;
        dflt.redirects = vec![Redirect {
            source: "/old".into(),
            target: "/new".into(),
        }];
        let t = table(vec![route("a", &["a.example"], "/app", 1), dflt]);
        assert_eq!(name(&t, "unknown.example", "/"), "dflt");
        assert_eq!(name(&t, "a.example", "/app/x"), "a");
        assert_eq!(name(&t, "a.example", "/"), "dflt", "a claimed host, an unclaimed path");
        assert_eq!(
            t.lookup("http", "unknown.example", "/old/x", None),
            Lookup::Redirect("/new/x".into()),
            "the default backend's path redirects apply where it answers"
        );
        assert_eq!(name(&t, "a.example", "/app/old"), "a");
        assert_eq!(t.routes().count(), 2);
    }

    #[test]
    fn rewrite_strips_the_prefix() {
        assert_eq!(rewrite_path("/app", true, "/app/x?y=1"), "/x?y=1");
        assert_eq!(rewrite_path("/app", true, "/app"), "/");
        assert_eq!(rewrite_path("/app", true, "/app?q"), "/?q");
        assert_eq!(rewrite_path("/app", false, "/app/x"), "/app/x");
        assert_eq!(rewrite_path("/", true, "/x"), "/x");
    }

    #[test]
    fn hosts_normalize() {
        assert_eq!(normalize_host("Example.COM:8080"), "example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
    }

    #[test]
    fn tls_mode_by_sni() {
        let mut pass = route("p", &["pass.example"], "/", 1);
        pass.tls = TlsMode::Passthrough;
        let t = table(vec![pass, route("plain", &["plain.example"], "/", 2)]);
        assert_eq!(
            t.passthrough_backends("PASS.example").map(|r| r.name.to_string()),
            Some("p".into())
        );
        assert!(t.passthrough_backends("plain.example").is_none());
    }
}
