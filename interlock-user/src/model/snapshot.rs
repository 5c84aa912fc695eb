//! `Snapshot`: the one contract between the control plane and the data planes.
//!
//! Immutable and versioned; built only by the control plane, read by the L4 sync and the L7
//! route table through a `tokio::sync::watch::Receiver<Arc<Snapshot>>`. Serializable so a
//! leader can stream it to followers. Planes never ask Docker anything.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Everything the data planes route, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Grows by one with every published change; followers compare it to skip duplicates.
    pub version: u64,
    /// HTTP routes (Interlock's `com.docker.lb.*` contract).
    pub http: Vec<HttpRoute>,
    /// TCP/UDP services balanced by the XDP fast path.
    pub l4: Vec<L4Service>,
    /// Overlay networks the proxy must be attached to, to reach the backends.
    pub networks: Vec<String>,
    /// Services the control plane cut short because they went over one of its bounds, by
    /// bound (`max_http_routes`, `max_backends_per_service`): shown in metrics.
    #[serde(default)]
    pub limits_hit: std::collections::BTreeMap<String, u32>,
}

/// The receiving end every plane holds.
pub type SnapshotRx = tokio::sync::watch::Receiver<Arc<Snapshot>>;
/// The publishing end (control plane only).
pub type SnapshotTx = tokio::sync::watch::Sender<Arc<Snapshot>>;

/// A swarm service as named in routes, logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceRef {
    pub id: String,
    pub name: String,
}

/// One routable target: a task address (task mode) or the service VIP (vip mode).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Backend {
    pub addr: SocketAddr,
    /// Relative share of new requests/flows; 1 for every task by default.
    pub weight: u32,
    /// Task id (or the service id in vip mode), for logs and metrics.
    pub id: String,
}

/// One HTTP route: a service's hosts and path prefix, how to treat requests, and where they go.
/// Two services may share hosts and prefix (canary/blue-green): both routes are present and
/// the L7 plane splits traffic by their backend counts and weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRoute {
    pub service: ServiceRef,
    /// Lower-case host names, no port; `*.example.com` matches one or more labels in front.
    pub hosts: Vec<String>,
    /// Segment-aligned path prefix, always starting with `/` (`/` when no context_root).
    pub path_prefix: String,
    /// Strip `path_prefix` before forwarding (context_root_rewrite).
    pub strip_prefix: bool,
    pub tls: TlsMode,
    /// TLS from the proxy to the backends (`com.docker.lb.ssl_backend`); `None`: plain HTTP.
    #[serde(default)]
    pub backend_tls: Option<BackendTls>,
    /// Answer plain-HTTP requests with a redirect to https (ssl_only).
    pub ssl_only: bool,
    /// Paths whose requests may upgrade to websockets (empty: any path may upgrade).
    pub websocket_endpoints: Vec<String>,
    pub stickiness: Stickiness,
    pub redirects: Vec<Redirect>,
    /// Serves requests whose host matches no route.
    pub default_backend: bool,
    /// Optional active health check (`com.docker.lb.health_path` etc.).
    pub health_check: Option<HealthCheck>,
    /// The network the backends are reached on (`None`: reachable as they are).
    #[serde(default)]
    pub network: Option<String>,
    pub backends: Vec<Backend>,
}

impl HttpRoute {
    /// A route with every option at its default (plain HTTP, no rewrite, no stickiness).
    pub fn plain(service: ServiceRef, hosts: Vec<String>, path_prefix: &str, backends: Vec<Backend>) -> HttpRoute {
        HttpRoute {
            service,
            hosts,
            path_prefix: path_prefix.into(),
            strip_prefix: false,
            tls: TlsMode::None,
            backend_tls: None,
            ssl_only: false,
            websocket_endpoints: vec![],
            stickiness: Stickiness::None,
            redirects: vec![],
            default_backend: false,
            health_check: None,
            network: None,
            backends,
        }
    }
}

/// How TLS is handled for a route's hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsMode {
    /// Plain HTTP only.
    #[default]
    None,
    /// Terminate TLS with this certificate chain and key (PEM files, from Docker secrets).
    Terminate { cert: PathBuf, key: PathBuf },
    /// Route the TLS stream by SNI to the backends without decrypting it.
    Passthrough,
}

/// How the proxy speaks TLS to a route's backends (`com.docker.lb.ssl_backend`,
/// `com.docker.lb.ssl_backend_tls_verify`, `com.docker.lb.ssl_backend_ca`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BackendTls {
    /// Sent by SNI and, when verifying, the name the certificate must carry: the service's
    /// first host without `*.`.
    pub server_name: String,
    pub verify: BackendVerify,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BackendVerify {
    /// Any certificate is taken (Interlock's default, `none`): encrypted, not authenticated.
    None,
    /// The certificate must chain to a trusted root and name `server_name` (`required`):
    /// the roots are the certificates of `ca` (a Docker secret's PEM file) when given, else
    /// the system's (`SSL_CERT_FILE`, `SSL_CERT_DIR`, the usual bundle paths).
    Required { ca: Option<PathBuf> },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stickiness {
    #[default]
    None,
    /// Requests carrying this application cookie stick to one task.
    Cookie(String),
    /// Requests from one client IP stick to one task.
    ClientIp,
}

/// `source` -> `target` answered with a redirect (from `com.docker.lb.redirects`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    /// Absolute URL or path the request must match (`http://old.example.com`, `/old`).
    pub source: String,
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub path: String,
    pub interval_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum L4Protocol {
    Tcp,
    Udp,
}

/// A TCP or UDP service balanced in the kernel: packets to `(vip, port, protocol)` are
/// steered to the backends (full NAT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct L4Service {
    pub service: ServiceRef,
    /// The address clients connect to; `None`: the agent's configured VIP (its node address).
    pub vip: Option<Ipv4Addr>,
    pub port: u16,
    pub protocol: L4Protocol,
    pub backends: Vec<Backend>,
}
