//! Every default of the agent's settings, in one place. Flags, `INTERLOCK_*` variables and
//! the TOML file override them (`config::resolve`); the README's settings table is checked
//! against these by a test.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::args::{LogFormat, Role, XdpMode};

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
/// A backend has this long to answer with a response head.
pub const UPSTREAM_TIMEOUT_S: u64 = 60;
/// On SIGTERM, open connections get this long to finish.
pub const DRAIN_GRACE_S: u64 = 10;
/// The HTTP(S) ports stay closed at most this long waiting for the first routes.
pub const FIRST_ROUTES_WAIT_S: u64 = 15;
/// Connecting to a backend (not a setting: a connect that takes longer is retried elsewhere).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

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
