//! Parsing one service's `com.docker.lb.*` labels. Pure: no I/O, one service at a time,
//! every bad value reported as a `LabelError` naming the label, the value and the reason.
//!
//! Interlock's contract (REFERENCE.md) plus Interlock's own additions:
//! - `com.docker.lb.health_path`, `com.docker.lb.health_interval_ms`: optional active health check;
//! - `com.docker.lb.ssl_backend_ca`: the Docker secret holding the CA certificates a backend's
//!   certificate is verified against with `ssl_backend_tls_verify=required` (Interlock has
//!   no such label: without it the system's roots are used);
//! - `com.docker.lb.l4.port`, `.l4.target_port`, `.l4.protocol`, `.l4.vip`: a TCP/UDP service
//!   balanced by the XDP fast path (see README).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::snapshot::{HealthCheck, L4Protocol, Redirect, Stickiness};

pub const PREFIX: &str = "com.docker.lb.";
pub const HOSTS: &str = "com.docker.lb.hosts";
pub const PORT: &str = "com.docker.lb.port";
pub const NETWORK: &str = "com.docker.lb.network";
pub const CONTEXT_ROOT: &str = "com.docker.lb.context_root";
pub const CONTEXT_ROOT_REWRITE: &str = "com.docker.lb.context_root_rewrite";
pub const SSL_CERT: &str = "com.docker.lb.ssl_cert";
pub const SSL_KEY: &str = "com.docker.lb.ssl_key";
pub const SSL_PASSTHROUGH: &str = "com.docker.lb.ssl_passthrough";
pub const SSL_ONLY: &str = "com.docker.lb.ssl_only";
pub const SSL_BACKEND: &str = "com.docker.lb.ssl_backend";
pub const SSL_BACKEND_TLS_VERIFY: &str = "com.docker.lb.ssl_backend_tls_verify";
pub const SSL_BACKEND_CA: &str = "com.docker.lb.ssl_backend_ca";
pub const WEBSOCKET_ENDPOINTS: &str = "com.docker.lb.websocket_endpoints";
pub const STICKY_COOKIE: &str = "com.docker.lb.sticky_session_cookie";
pub const IP_HASH: &str = "com.docker.lb.ip_hash";
pub const REDIRECTS: &str = "com.docker.lb.redirects";
pub const SERVICE_CLUSTER: &str = "com.docker.lb.service_cluster";
pub const BACKEND_MODE: &str = "com.docker.lb.backend_mode";
pub const DEFAULT_BACKEND: &str = "com.docker.lb.default_backend";
pub const HEALTH_PATH: &str = "com.docker.lb.health_path";
pub const HEALTH_INTERVAL_MS: &str = "com.docker.lb.health_interval_ms";
pub const L4_PORT: &str = "com.docker.lb.l4.port";
pub const L4_TARGET_PORT: &str = "com.docker.lb.l4.target_port";
pub const L4_PROTOCOL: &str = "com.docker.lb.l4.protocol";
pub const L4_VIP: &str = "com.docker.lb.l4.vip";

const KNOWN: &[&str] = &[
    HOSTS,
    PORT,
    NETWORK,
    CONTEXT_ROOT,
    CONTEXT_ROOT_REWRITE,
    SSL_CERT,
    SSL_KEY,
    SSL_PASSTHROUGH,
    SSL_ONLY,
    SSL_BACKEND,
    SSL_BACKEND_TLS_VERIFY,
    SSL_BACKEND_CA,
    WEBSOCKET_ENDPOINTS,
    STICKY_COOKIE,
    IP_HASH,
    REDIRECTS,
    SERVICE_CLUSTER,
    BACKEND_MODE,
    DEFAULT_BACKEND,
    HEALTH_PATH,
    HEALTH_INTERVAL_MS,
    L4_PORT,
    L4_TARGET_PORT,
    L4_PROTOCOL,
    L4_VIP,
];

/// One bad label value: which label, what it said, why it is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label {label}={value:?}: {reason}")]
pub struct LabelError {
    pub label: String,
    pub value: String,
    pub reason: String,
}

impl LabelError {
    pub fn new(label: &str, value: &str, reason: impl Into<String>) -> LabelError {
        LabelError {
            label: label.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackendMode {
    /// Route to the task addresses (default).
    #[default]
    Task,
    /// Route to the service's virtual IP.
    Vip,
}

/// What a service's labels ask for, before Docker's state (networks, tasks) is applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceLabels {
    pub http: Option<HttpLabels>,
    pub l4: Option<L4Labels>,
    /// Explicit `com.docker.lb.network` (name or id).
    pub network: Option<String>,
    pub service_cluster: Option<String>,
    pub backend_mode: BackendMode,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpLabels {
    pub hosts: Vec<String>,
    pub port: u16,
    pub path_prefix: String,
    pub strip_prefix: bool,
    /// Secret names of the certificate and key.
    pub ssl_secrets: Option<(String, String)>,
    pub ssl_passthrough: bool,
    pub ssl_only: bool,
    /// TLS to the backends (`ssl_backend=true`).
    pub ssl_backend: Option<SslBackend>,
    pub websocket_endpoints: Vec<String>,
    pub stickiness: Stickiness,
    pub redirects: Vec<Redirect>,
    pub default_backend: bool,
    pub health_check: Option<HealthCheck>,
}

/// `ssl_backend=true` and how the backends' certificates are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslBackend {
    /// SNI and verification name: the first host without `*.`.
    pub server_name: String,
    /// `ssl_backend_tls_verify=required` (default `none`, as Interlock).
    pub verify: bool,
    /// `ssl_backend_ca`: the secret whose certificates are the roots (with `verify` only).
    pub ca_secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct L4Labels {
    pub port: u16,
    pub target_port: u16,
    pub protocol: L4Protocol,
    pub vip: Option<Ipv4Addr>,
}

/// Result of parsing: `Ok(None)` when the service carries no routing labels at all.
pub type Parsed = Result<Option<ServiceLabels>, Vec<LabelError>>;

/// Parses the labels of one service. Unknown `com.docker.lb.*` labels are returned as
/// warnings (likely typos) without failing the service.
pub fn parse(labels: &BTreeMap<String, String>) -> (Parsed, Vec<LabelError>) {
    let warnings: Vec<LabelError> = labels
        .iter()
        .filter(|(k, _)| k.starts_with(PREFIX) && !KNOWN.contains(&k.as_str()))
        .map(|(k, v)| LabelError::new(k, v, "unknown label (ignored)"))
        .collect();
    let mut p = Parser {
        labels,
        errors: Vec::new(),
        warnings,
    };
    // Interlock's default backend carries only `default_backend` and `port`: it is an HTTP
    // service without hosts. Any value of the label (a typo included) makes the service one,
    // so a bad value is reported instead of the service silently not being routed.
    let http = labels.contains_key(HOSTS) || (labels.contains_key(DEFAULT_BACKEND) && !p.is_false(DEFAULT_BACKEND));
    if !http && !labels.contains_key(L4_PORT) {
        return (Ok(None), p.warnings);
    }
    let service = ServiceLabels {
        http: http.then(|| p.http()),
        l4: labels.contains_key(L4_PORT).then(|| p.l4()),
        network: p.get(NETWORK).map(str::to_string),
        service_cluster: p.get(SERVICE_CLUSTER).map(str::to_string),
        backend_mode: match p.get(BACKEND_MODE).map(str::to_string).as_deref() {
            None | Some("task") => BackendMode::Task,
            Some("vip") => BackendMode::Vip,
            Some(other) => {
                p.error(BACKEND_MODE, other, "expected `task` or `vip`");
                BackendMode::Task
            }
        },
    };
    let parsed = if p.errors.is_empty() {
        Ok(Some(service))
    } else {
        Err(p.errors)
    };
    (parsed, p.warnings)
}

struct Parser<'a> {
    labels: &'a BTreeMap<String, String>,
    errors: Vec<LabelError>,
    /// Labels that do nothing as given (kept from `parse`: unknown ones first).
    warnings: Vec<LabelError>,
}

impl Parser<'_> {
    fn get(&self, label: &str) -> Option<&str> {
        self.labels.get(label).map(|v| v.trim())
    }

    fn error(&mut self, label: &str, value: &str, reason: impl Into<String>) {
        self.errors.push(LabelError::new(label, value, reason));
    }

    fn flag(&mut self, label: &str) -> bool {
        match self.get(label).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false") | Some("0") | Some("no") => false,
            Some("true") | Some("1") | Some("yes") => true,
            Some(other) => {
                let other = other.to_string();
                self.error(label, &other, "expected true or false");
                false
            }
        }
    }

    /// The label is absent or says false (no error: `flag` reports bad values).
    fn is_false(&self, label: &str) -> bool {
        matches!(
            self.get(label).map(str::to_ascii_lowercase).as_deref(),
            None | Some("false") | Some("0") | Some("no")
        )
    }

    fn port(&mut self, label: &str) -> Option<u16> {
        let value = self.get(label)?.to_string();
        match value.parse::<u16>() {
            Ok(port) if port > 0 => Some(port),
            _ => {
                self.error(label, &value, "expected a port number between 1 and 65535");
                None
            }
        }
    }

    fn http(&mut self) -> HttpLabels {
        let default_backend = self.flag(DEFAULT_BACKEND);
        let hosts = self.hosts(default_backend);
        let port = match self.get(PORT) {
            None => {
                self.error(
                    PORT,
                    "",
                    "missing: the container port to send traffic to is required with hosts or default_backend",
                );
                0
            }
            Some(_) => self.port(PORT).unwrap_or(0),
        };
        let path_prefix = match self.get(CONTEXT_ROOT) {
            None => "/".to_string(),
            Some(root) => {
                let root = root.to_string();
                normalize_prefix(&root).unwrap_or_else(|reason| {
                    self.error(CONTEXT_ROOT, &root, reason);
                    "/".into()
                })
            }
        };
        let ssl_secrets = match (self.get(SSL_CERT), self.get(SSL_KEY)) {
            (None, None) => None,
            (Some(cert), Some(key)) if !cert.is_empty() && !key.is_empty() => Some((cert.to_string(), key.to_string())),
            (cert, key) => {
                let (label, value) = if cert.is_none_or(str::is_empty) {
                    (SSL_CERT, cert)
                } else {
                    (SSL_KEY, key)
                };
                let value = value.unwrap_or_default().to_string();
                self.error(label, &value, "ssl_cert and ssl_key must both name a secret");
                None
            }
        };
        let ssl_passthrough = self.flag(SSL_PASSTHROUGH);
        if ssl_passthrough && ssl_secrets.is_some() {
            self.error(
                SSL_PASSTHROUGH,
                "true",
                "passthrough cannot be combined with ssl_cert/ssl_key",
            );
        }
        let sticky = self.get(STICKY_COOKIE).map(str::to_string);
        let ip_hash = self.flag(IP_HASH);
        let stickiness = match (sticky, ip_hash) {
            (Some(cookie), false) if is_token(&cookie) => Stickiness::Cookie(cookie),
            (Some(cookie), false) => {
                self.error(STICKY_COOKIE, &cookie, "not a valid cookie name");
                Stickiness::None
            }
            (Some(cookie), true) => {
                self.error(STICKY_COOKIE, &cookie, "cannot be combined with ip_hash");
                Stickiness::None
            }
            (None, true) => Stickiness::ClientIp,
            (None, false) => Stickiness::None,
        };
        let ssl_backend = self.ssl_backend(&hosts, ssl_passthrough);
        let websocket_endpoints = self.paths(WEBSOCKET_ENDPOINTS);
        let redirects = self.redirects();
        let health_check = self.health_check();
        HttpLabels {
            hosts,
            port,
            path_prefix,
            strip_prefix: self.flag(CONTEXT_ROOT_REWRITE),
            ssl_secrets,
            ssl_passthrough,
            ssl_only: self.flag(SSL_ONLY),
            ssl_backend,
            websocket_endpoints,
            stickiness,
            redirects,
            default_backend,
            health_check,
        }
    }

    /// The host names; none is fine for a default backend without `hosts` (it serves the
    /// hosts no other service claims), an error otherwise.
    fn hosts(&mut self, default_backend: bool) -> Vec<String> {
        let Some(hosts_value) = self.get(HOSTS).map(str::to_string) else {
            return Vec::new();
        };
        let mut hosts = Vec::new();
        for host in hosts_value.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            match normalize_host(host) {
                Ok(h) => hosts.push(h),
                Err(reason) => self.error(HOSTS, &hosts_value, format!("host {host:?}: {reason}")),
            }
        }
        if hosts.is_empty() && !default_backend && self.errors.is_empty() {
            self.error(HOSTS, &hosts_value, "no host name given");
        }
        hosts
    }

    /// `ssl_backend`, `ssl_backend_tls_verify` (`none` | `required`, Interlock's values) and
    /// `ssl_backend_ca`. The verification labels without `ssl_backend=true` do nothing: a
    /// warning, not an error, as Interlock ignored them too.
    fn ssl_backend(&mut self, hosts: &[String], ssl_passthrough: bool) -> Option<SslBackend> {
        let enabled = self.flag(SSL_BACKEND);
        let verify = match self.get(SSL_BACKEND_TLS_VERIFY).map(str::to_string) {
            None => false,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "none" => false,
                "required" => true,
                _ => {
                    self.error(SSL_BACKEND_TLS_VERIFY, &v, "expected `none` or `required`");
                    false
                }
            },
        };
        let ca_secret = match self.get(SSL_BACKEND_CA).map(str::to_string) {
            Some(ca) if ca.is_empty() => {
                self.error(
                    SSL_BACKEND_CA,
                    &ca,
                    "must name the Docker secret holding the CA certificates",
                );
                None
            }
            ca => ca,
        };
        if !enabled {
            for label in [SSL_BACKEND_TLS_VERIFY, SSL_BACKEND_CA] {
                let refused = self.errors.iter().any(|e| e.label == label);
                if let Some(v) = self.get(label).filter(|_| !refused).map(str::to_string) {
                    self.warnings.push(LabelError::new(
                        label,
                        &v,
                        "has no effect without com.docker.lb.ssl_backend=true (ignored)",
                    ));
                }
            }
            return None;
        }
        if ssl_passthrough {
            self.error(
                SSL_BACKEND,
                "true",
                "cannot be combined with ssl_passthrough: passthrough traffic is never decrypted by the proxy",
            );
        }
        if let (Some(ca), false) = (&ca_secret, verify) {
            self.warnings.push(LabelError::new(
                SSL_BACKEND_CA,
                ca,
                "has no effect with ssl_backend_tls_verify=none (ignored)",
            ));
        }
        let server_name = match hosts.iter().find(|h| !h.starts_with("*.")) {
            Some(host) => host.clone(),
            None if verify && !hosts.is_empty() => {
                self.error(
                    SSL_BACKEND_TLS_VERIFY,
                    "required",
                    "needs a host without `*.` among com.docker.lb.hosts: the name the backends' certificate is checked against",
                );
                return None;
            }
            // Every host a wildcard: the domain they share goes by SNI; nothing is checked.
            None => hosts.first().map(|h| h.trim_start_matches("*.").to_string())?,
        };
        Some(SslBackend {
            server_name,
            verify,
            ca_secret: if verify { ca_secret } else { None },
        })
    }

    fn paths(&mut self, label: &str) -> Vec<String> {
        let Some(value) = self.get(label).map(str::to_string) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for path in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match normalize_prefix(path) {
                Ok(p) => out.push(p),
                Err(reason) => self.error(label, &value, format!("path {path:?}: {reason}")),
            }
        }
        out
    }

    fn redirects(&mut self) -> Vec<Redirect> {
        let Some(value) = self.get(REDIRECTS).map(str::to_string) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for pair in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let parts: Vec<&str> = pair.split(',').map(str::trim).collect();
            let checked = match parts.as_slice() {
                [source, target] => check_redirect_source(source)
                    .map_err(|why| format!("source {source:?}: {why}"))
                    .and_then(|()| check_redirect_target(target).map_err(|why| format!("target {target:?}: {why}"))),
                _ => Err("expected `<source>,<target>`".to_string()),
            };
            match checked {
                Ok(()) => out.push(Redirect {
                    source: parts[0].to_string(),
                    target: parts[1].to_string(),
                }),
                Err(why) => self.error(REDIRECTS, &value, format!("{pair:?}: {why}")),
            }
        }
        out
    }

    fn health_check(&mut self) -> Option<HealthCheck> {
        let path = self.get(HEALTH_PATH)?.to_string();
        if !path.starts_with('/') {
            self.error(HEALTH_PATH, &path, "must start with /");
            return None;
        }
        let interval_ms = match self.get(HEALTH_INTERVAL_MS).map(str::to_string) {
            None => 2000,
            Some(v) => match v.parse::<u64>() {
                Ok(ms) if (100..=3_600_000).contains(&ms) => ms,
                _ => {
                    self.error(HEALTH_INTERVAL_MS, &v, "expected milliseconds between 100 and 3600000");
                    2000
                }
            },
        };
        Some(HealthCheck { path, interval_ms })
    }

    fn l4(&mut self) -> L4Labels {
        let port = self.port(L4_PORT).unwrap_or(0);
        let target_port = if self.get(L4_TARGET_PORT).is_some() {
            self.port(L4_TARGET_PORT).unwrap_or(0)
        } else {
            port
        };
        let protocol = match self.get(L4_PROTOCOL).map(str::to_ascii_lowercase).as_deref() {
            None | Some("tcp") => L4Protocol::Tcp,
            Some("udp") => L4Protocol::Udp,
            Some(other) => {
                let other = other.to_string();
                self.error(L4_PROTOCOL, &other, "expected tcp or udp");
                L4Protocol::Tcp
            }
        };
        let vip = self
            .get(L4_VIP)
            .map(str::to_string)
            .and_then(|v| match v.parse::<Ipv4Addr>() {
                Ok(ip) if !ip.is_unspecified() && !ip.is_multicast() && !ip.is_broadcast() => Some(ip),
                _ => {
                    self.error(L4_VIP, &v, "expected a unicast IPv4 address");
                    None
                }
            });
        L4Labels {
            port,
            target_port,
            protocol,
            vip,
        }
    }
}

/// Lower-cases a host name and checks it: letters, digits, `-` and `.`, optionally `*.` in front.
pub fn normalize_host(host: &str) -> Result<String, &'static str> {
    let host = host.to_ascii_lowercase();
    let name = host.strip_prefix("*.").unwrap_or(&host);
    if name.is_empty() || name.len() > 253 {
        return Err("empty or longer than 253 characters");
    }
    if name.contains(':') {
        return Err("must not carry a port");
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !labels_ok {
        return Err("not a valid host name (letters, digits, '-', '.', optional leading '*.')");
    }
    Ok(host)
}

/// `/app/` -> `/app`; must start with `/`, no query, no `..` segments.
pub fn normalize_prefix(path: &str) -> Result<String, &'static str> {
    if !path.starts_with('/') {
        return Err("must start with /");
    }
    if path.contains(['?', '#', ' ']) || path.split('/').any(|s| s == "..") {
        return Err("must be a plain path (no query, fragment, spaces or '..')");
    }
    let trimmed = path.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/".into() } else { trimmed.into() })
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A redirect source: `http(s)://host[:port][/prefix]` or `/prefix`, the prefix a plain path
/// (it is matched segment-aligned against the request's normalised path).
fn check_redirect_source(source: &str) -> Result<(), &'static str> {
    let Some(rest) = source
        .strip_prefix("http://")
        .or_else(|| source.strip_prefix("https://"))
    else {
        return normalize_prefix(source)
            .map(drop)
            .map_err(|_| "expected an http(s) URL or a path starting with / (no query)");
    };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok_and(|p| p > 0) => host,
        Some(_) => return Err("the port is not a number between 1 and 65535"),
        None => authority,
    };
    if host.starts_with("*.") {
        return Err("a wildcard host cannot be a redirect source");
    }
    normalize_host(host).map_err(|_| "not a valid host name")?;
    normalize_prefix(path)
        .map(drop)
        .map_err(|_| "the path must be plain (no query, fragment, spaces or '..')")
}

/// A redirect target: an http(s) URL with a host, or a path; it becomes a Location header,
/// so visible ASCII only.
fn check_redirect_target(target: &str) -> Result<(), &'static str> {
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("only visible ASCII characters (no spaces) are allowed");
    }
    match target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        Some(rest) if rest.is_empty() || rest.starts_with(['/', '?', '#']) => Err("the URL has no host"),
        Some(_) => Ok(()),
        None if target.starts_with('/') => Ok(()),
        None => Err("expected an http(s) URL or a path starting with /"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn ok(pairs: &[(&str, &str)]) -> ServiceLabels {
        parse(&labels(pairs))
            .0
            .expect("valid labels")
            .expect("routing labels present")
    }

    fn errs(pairs: &[(&str, &str)]) -> Vec<LabelError> {
        parse(&labels(pairs)).0.expect_err("labels must be refused")
    }

    #[test]
    fn unlabelled_service_is_not_routed() {
        assert_eq!(parse(&labels(&[("other", "x")])).0, Ok(None));
    }

    #[test]
    fn full_http_contract() {
        let s = ok(&[
            (HOSTS, "App.Example.org, *.apps.example.org"),
            (PORT, "8080"),
            (NETWORK, "appnet"),
            (CONTEXT_ROOT, "/app/"),
            (CONTEXT_ROOT_REWRITE, "true"),
            (SSL_CERT, "app-cert"),
            (SSL_KEY, "app-key"),
            (SSL_ONLY, "true"),
            (WEBSOCKET_ENDPOINTS, "/ws,/live"),
            (STICKY_COOKIE, "SESSION"),
            (REDIRECTS, "http://old.example.org,http://app.example.org;/legacy,/app"),
            (SERVICE_CLUSTER, "edge"),
            (BACKEND_MODE, "vip"),
            (DEFAULT_BACKEND, "true"),
            (HEALTH_PATH, "/healthz"),
            (HEALTH_INTERVAL_MS, "500"),
        ]);
        let http = s.http.unwrap();
        assert_eq!(http.hosts, vec!["app.example.org", "*.apps.example.org"]);
        assert_eq!(http.port, 8080);
        assert_eq!(http.path_prefix, "/app");
        assert!(http.strip_prefix && http.ssl_only && http.default_backend);
        assert_eq!(http.ssl_secrets, Some(("app-cert".into(), "app-key".into())));
        assert_eq!(http.websocket_endpoints, vec!["/ws", "/live"]);
        assert_eq!(http.stickiness, Stickiness::Cookie("SESSION".into()));
        assert_eq!(http.redirects.len(), 2);
        assert_eq!(
            http.redirects[1],
            Redirect {
                source: "/legacy".into(),
                target: "/app".into()
            }
        );
        assert_eq!(
            http.health_check,
            Some(HealthCheck {
                path: "/healthz".into(),
                interval_ms: 500
            })
        );
        assert_eq!(s.network.as_deref(), Some("appnet"));
        assert_eq!(s.service_cluster.as_deref(), Some("edge"));
        assert_eq!(s.backend_mode, BackendMode::Vip);
        assert!(s.l4.is_none());
    }

    #[test]
    fn defaults() {
        let http = ok(&[(HOSTS, "a.example"), (PORT, "80")]).http.unwrap();
        assert_eq!(http.path_prefix, "/");
        assert!(!http.strip_prefix && !http.ssl_only && !http.ssl_passthrough);
        assert_eq!(http.stickiness, Stickiness::None);
        assert!(
            ok(&[(HOSTS, "a.example"), (PORT, "80"), (IP_HASH, "1")])
                .http
                .unwrap()
                .stickiness
                == Stickiness::ClientIp
        );
    }

    #[test]
    fn a_default_backend_needs_no_hosts() {
        let http = ok(&[(DEFAULT_BACKEND, "true"), (PORT, "8080")]).http.unwrap();
        assert!(http.default_backend && http.hosts.is_empty());
        assert_eq!(http.port, 8080);
        assert_eq!(parse(&labels(&[(DEFAULT_BACKEND, "false"), (PORT, "80")])).0, Ok(None));
        let e = errs(&[(DEFAULT_BACKEND, "true")]);
        assert_eq!(e[0].label, PORT, "{e:?}");
        let e = errs(&[(DEFAULT_BACKEND, "sure"), (PORT, "80")]);
        assert_eq!(
            e[0].to_string(),
            "label com.docker.lb.default_backend=\"sure\": expected true or false"
        );
    }

    #[test]
    fn redirect_sources_and_targets() {
        for good in [
            "http://old.local,http://new.local",
            "https://old.local:8443/app/,https://new.local/v2",
            "/legacy,/app",
            "http://old.local,/",
            "http://a.local,http://b.local;http://c.local,http://d.local/?from=c",
        ] {
            assert!(
                !ok(&[(HOSTS, "a.example"), (PORT, "80"), (REDIRECTS, good)])
                    .http
                    .unwrap()
                    .redirects
                    .is_empty(),
                "{good}"
            );
        }
        for (bad, why) in [
            ("http://old.local", "expected `<source>,<target>`"),
            ("http://old.local:99999,/x", "port"),
            ("http://*.old.local,/x", "wildcard"),
            ("http://old.local/a?b,/x", "plain"),
            ("legacy,/app", "path starting with /"),
            ("/a,http://", "no host"),
            ("/a,/b c", "visible ASCII"),
            ("/a,ftp://x", "http(s) URL"),
        ] {
            let e = &errs(&[(HOSTS, "a.example"), (PORT, "80"), (REDIRECTS, bad)])[0];
            assert_eq!(e.label, REDIRECTS);
            assert!(e.reason.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn l4_labels() {
        let s = ok(&[(L4_PORT, "5432")]);
        let l4 = s.l4.unwrap();
        assert_eq!(
            (l4.port, l4.target_port, l4.protocol, l4.vip),
            (5432, 5432, L4Protocol::Tcp, None)
        );
        let l4 = ok(&[
            (L4_PORT, "53"),
            (L4_TARGET_PORT, "5353"),
            (L4_PROTOCOL, "UDP"),
            (L4_VIP, "192.0.2.10"),
        ])
        .l4
        .unwrap();
        assert_eq!(
            (l4.target_port, l4.protocol, l4.vip),
            (5353, L4Protocol::Udp, Some(Ipv4Addr::new(192, 0, 2, 10)))
        );
    }

    #[test]
    fn every_bad_value_is_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[(HOSTS, "a.example"), (PORT, "70000")], PORT),
            (&[(HOSTS, "a.example"), (PORT, "0")], PORT),
            (&[(HOSTS, "a.example")], PORT),
            (&[(HOSTS, "bad host!"), (PORT, "80")], HOSTS),
            (&[(HOSTS, "a.example:80"), (PORT, "80")], HOSTS),
            (&[(HOSTS, ""), (PORT, "80")], HOSTS),
            (
                &[(HOSTS, "a.example"), (PORT, "80"), (CONTEXT_ROOT, "app")],
                CONTEXT_ROOT,
            ),
            (
                &[(HOSTS, "a.example"), (PORT, "80"), (CONTEXT_ROOT, "/a/../b")],
                CONTEXT_ROOT,
            ),
            (&[(HOSTS, "a.example"), (PORT, "80"), (SSL_CERT, "c")], SSL_KEY),
            (&[(HOSTS, "a.example"), (PORT, "80"), (SSL_ONLY, "maybe")], SSL_ONLY),
            (
                &[(HOSTS, "a.example"), (PORT, "80"), (REDIRECTS, "http://a.example")],
                REDIRECTS,
            ),
            (
                &[(HOSTS, "a.example"), (PORT, "80"), (REDIRECTS, "ftp://x,/y")],
                REDIRECTS,
            ),
            (
                &[(HOSTS, "a.example"), (PORT, "80"), (STICKY_COOKIE, "a b")],
                STICKY_COOKIE,
            ),
            (
                &[
                    (HOSTS, "a.example"),
                    (PORT, "80"),
                    (STICKY_COOKIE, "s"),
                    (IP_HASH, "true"),
                ],
                STICKY_COOKIE,
            ),
            (
                &[(HOSTS, "a.example"), (PORT, "80"), (BACKEND_MODE, "dns")],
                BACKEND_MODE,
            ),
            (
                &[
                    (HOSTS, "a.example"),
                    (PORT, "80"),
                    (SSL_PASSTHROUGH, "true"),
                    (SSL_CERT, "c"),
                    (SSL_KEY, "k"),
                ],
                SSL_PASSTHROUGH,
            ),
            (
                &[(HOSTS, "a.example"), (PORT, "80"), (HEALTH_PATH, "health")],
                HEALTH_PATH,
            ),
            (
                &[
                    (HOSTS, "a.example"),
                    (PORT, "80"),
                    (HEALTH_PATH, "/h"),
                    (HEALTH_INTERVAL_MS, "1"),
                ],
                HEALTH_INTERVAL_MS,
            ),
            (
                &[(HOSTS, "a.example"), (PORT, "80"), (SSL_BACKEND, "yes please")],
                SSL_BACKEND,
            ),
            (
                &[
                    (HOSTS, "a.example"),
                    (PORT, "443"),
                    (SSL_BACKEND, "true"),
                    (SSL_BACKEND_TLS_VERIFY, "strict"),
                ],
                SSL_BACKEND_TLS_VERIFY,
            ),
            (
                &[
                    (HOSTS, "a.example"),
                    (PORT, "443"),
                    (SSL_BACKEND, "true"),
                    (SSL_BACKEND_TLS_VERIFY, "required"),
                    (SSL_BACKEND_CA, " "),
                ],
                SSL_BACKEND_CA,
            ),
            (
                &[
                    (HOSTS, "*.a.example"),
                    (PORT, "443"),
                    (SSL_BACKEND, "true"),
                    (SSL_BACKEND_TLS_VERIFY, "required"),
                ],
                SSL_BACKEND_TLS_VERIFY,
            ),
            (
                &[
                    (HOSTS, "a.example"),
                    (PORT, "443"),
                    (SSL_BACKEND, "true"),
                    (SSL_PASSTHROUGH, "true"),
                ],
                SSL_BACKEND,
            ),
            (&[(L4_PORT, "x")], L4_PORT),
            (&[(L4_PORT, "53"), (L4_PROTOCOL, "sctp")], L4_PROTOCOL),
            (&[(L4_PORT, "53"), (L4_VIP, "224.0.0.1")], L4_VIP),
        ];
        for (pairs, label) in cases {
            let errors = errs(pairs);
            assert!(
                errors.iter().any(|e| e.label == *label),
                "{pairs:?}: expected an error on {label}, got {errors:?}"
            );
            assert!(errors.iter().all(|e| !e.reason.is_empty()));
        }
    }

    #[test]
    fn error_message_names_label_value_and_reason() {
        let e = &errs(&[(HOSTS, "a.example"), (PORT, "99999")])[0];
        assert_eq!(
            e.to_string(),
            "label com.docker.lb.port=\"99999\": expected a port number between 1 and 65535"
        );
    }

    #[test]
    fn unknown_labels_are_warnings() {
        let (parsed, warnings) = parse(&labels(&[
            (HOSTS, "a.example"),
            (PORT, "80"),
            ("com.docker.lb.hostz", "x"),
        ]));
        assert!(parsed.is_ok());
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].label, "com.docker.lb.hostz");
    }

    #[test]
    fn ssl_backend_labels() {
        let http = |pairs: &[(&str, &str)]| ok(pairs).http.unwrap().ssl_backend;
        assert_eq!(http(&[(HOSTS, "a.example"), (PORT, "80")]), None, "off by default");
        assert_eq!(
            http(&[(HOSTS, "*.w.example, A.example"), (PORT, "443"), (SSL_BACKEND, "true")]),
            Some(SslBackend {
                server_name: "a.example".into(),
                verify: false,
                ca_secret: None
            }),
            "verify defaults to none, as Interlock; SNI is the first host without `*.`"
        );
        assert_eq!(
            http(&[
                (HOSTS, "a.example"),
                (PORT, "443"),
                (SSL_BACKEND, "true"),
                (SSL_BACKEND_TLS_VERIFY, "Required"),
                (SSL_BACKEND_CA, "app-ca"),
            ]),
            Some(SslBackend {
                server_name: "a.example".into(),
                verify: true,
                ca_secret: Some("app-ca".into())
            })
        );
        assert_eq!(
            http(&[(HOSTS, "*.w.example"), (PORT, "443"), (SSL_BACKEND, "true")])
                .unwrap()
                .server_name,
            "w.example",
            "only wildcards, nothing verified: their domain goes by SNI"
        );
    }

    #[test]
    fn ssl_backend_verification_labels_alone_are_warnings() {
        let (parsed, warnings) = parse(&labels(&[
            (HOSTS, "a.example"),
            (PORT, "80"),
            (SSL_BACKEND_TLS_VERIFY, "required"),
            (SSL_BACKEND_CA, "ca"),
        ]));
        assert_eq!(parsed.unwrap().unwrap().http.unwrap().ssl_backend, None);
        let named: Vec<&str> = warnings.iter().map(|w| w.label.as_str()).collect();
        assert_eq!(named, vec![SSL_BACKEND_TLS_VERIFY, SSL_BACKEND_CA]);
        let (parsed, warnings) = parse(&labels(&[
            (HOSTS, "a.example"),
            (PORT, "80"),
            (SSL_BACKEND, "true"),
            (SSL_BACKEND_CA, "ca"),
        ]));
        assert_eq!(
            parsed.unwrap().unwrap().http.unwrap().ssl_backend.unwrap().ca_secret,
            None
        );
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].to_string().contains("ssl_backend_tls_verify=none"));
        let e = &errs(&[
            (HOSTS, "a.example"),
            (PORT, "443"),
            (SSL_BACKEND, "true"),
            (SSL_BACKEND_TLS_VERIFY, "yes"),
        ])[0];
        assert_eq!(
            e.to_string(),
            "label com.docker.lb.ssl_backend_tls_verify=\"yes\": expected `none` or `required`"
        );
    }

    #[test]
    fn prefixes_normalize() {
        assert_eq!(normalize_prefix("/").unwrap(), "/");
        assert_eq!(normalize_prefix("//").unwrap(), "/");
        assert_eq!(normalize_prefix("/a/b/").unwrap(), "/a/b");
        assert!(normalize_prefix("/a?x").is_err());
    }
}
