//! Every default of the agent's settings, in one place. Flags, `INTERLOCK_*` variables and
//! the TOML file override them (`config::resolve`); the README's settings table is checked
//! against these by a test.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::args::{AccessLogFormat, LogFormat, Role, XdpMode};
use crate::l7::front::tls::TlsMinVersion;

// Control plane.
pub const ROLE: Role = Role::Auto;
/// Task poll interval (Docker emits no task events).
pub const POLL_MS: u64 = 1000;
/// Full re-read of the engine's state.
pub const RECONCILE_S: u64 = 30;
/// Where the Docker secrets named by `ssl_cert` / `ssl_key` are mounted.
pub const SECRETS_DIR: &str = "/run/secrets";

// HTTP plane.
pub const HTTP_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 80);
/// Admin address (metrics, health, status): loopback, as it has no authentication.
pub const ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9090);
pub const HANDOVER: bool = true;
/// Client connections at once; further ones are closed at once.
pub const MAX_CONNECTIONS: usize = 20_000;
/// Requests (hence upstream connections) one backend serves at once; more wait in line.
pub const MAX_BACKEND_REQUESTS: usize = 1024;
/// A client has this long to send a request head (slowloris); also the keep-alive idle limit.
pub const HEADER_READ_TIMEOUT_S: u64 = 10;
/// A client sending a request body may pause this long between two reads of it (nginx's
/// `client_body_timeout`, 60 s there). Half the upstream timeout, so that a stalled upload
/// is the client's 408 and frees its backend connection before a 504 would blame the
/// backend; still three times the header timeout, as a body may be large and its link slow.
pub const CLIENT_BODY_TIMEOUT_S: u64 = 30;
/// The largest request body forwarded, in bytes; 0: no limit. Off by default: this proxy
/// has never limited bodies, and a limit switched on by an upgrade would turn uploads that
/// worked into 413s (nginx's 1 MiB default is the usual surprise). Set it to have one.
pub const MAX_REQUEST_BODY_BYTES: u64 = 0;
/// A backend has this long to answer with a response head.
pub const UPSTREAM_TIMEOUT_S: u64 = 60;
/// On SIGTERM, open connections get this long to finish.
pub const DRAIN_GRACE_S: u64 = 10;
/// The HTTP(S) ports stay closed at most this long waiting for the first routes.
pub const FIRST_ROUTES_WAIT_S: u64 = 15;
/// Where access-log lines go: with the agent's own log lines.
pub const ACCESS_LOG: &str = "stderr";
/// The access log's format when `--log-format` is text (with `json`, JSON lines too).
pub const ACCESS_LOG_FORMAT: AccessLogFormat = AccessLogFormat::Text;
/// The lowest TLS version of the HTTPS listener: 1.2, as Interlock's `SSLProtocols` default
/// (`TLSv1.2`) and the lowest rustls speaks.
pub const TLS_MIN_VERSION: TlsMinVersion = TlsMinVersion::Tls12;
/// Connecting to a backend; a connect that takes longer is retried elsewhere. Also how long a
/// request waits in line at a backend serving its limit.
pub const CONNECT_TIMEOUT_MS: u64 = 3000;
/// Backends tried for one request or passthrough connection (another only when nothing
/// reached the one that failed); at most `l7::upstream::attempt::MAX_ATTEMPTS`.
pub const BACKEND_ATTEMPTS: usize = 3;
/// Consecutive connect failures that eject a backend (0: never ejected).
pub const EJECT_AFTER_FAILURES: u32 = 3;
/// A backend's first ejection; it doubles with each further failure, up to `EJECT_MAX_MS`.
pub const EJECT_BASE_MS: u64 = 1000;
pub const EJECT_MAX_MS: u64 = 30_000;
/// An active health probe without an answer head within this long fails.
pub const HEALTH_TIMEOUT_MS: u64 = 2000;

// L4 plane.
pub const XDP_MODE: XdpMode = XdpMode::Skb;
/// bpffs directory of the pinned maps and links.
pub const BPFFS: &str = "/sys/fs/bpf/interlock";

// The agent as a whole.
pub const LOG_FORMAT: LogFormat = LogFormat::Text;
pub const JOIN_NETWORKS: bool = false;
/// Networks the agent may join: `None` is every network a labelled service names (what
/// Interlock does without its `Networks` list). An empty list (the stack passes an unset
/// variable as one) means the same: joining nothing is `join_networks = false`.
pub const ALLOWED_NETWORKS: Option<&[&str]> = None;
