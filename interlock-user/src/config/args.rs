//! The settings as the command line, `INTERLOCK_*` variables and the TOML file give them:
//! one group per plane, shared by the commands that run that plane (`run` has them all,
//! `proxy` the control and HTTP groups, `control` the control group). Every field is
//! optional, so the file can fill in what the command line leaves out; defaults are applied
//! in `resolve`, from `defaults`. The TOML keys are the field names (the flags with
//! underscores); the environment variable of each is `INTERLOCK_` and the key in capitals.
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Leader on a swarm manager, else follower.
    Auto,
    /// Watch Docker (a manager) and serve snapshots.
    Leader,
    /// Follow a leader's snapshot stream (workers cannot list services).
    Follower,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Generic XDP: needed to forward into docker_gwbridge.
    Skb,
    Driver,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The access log's line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// `name=value` fields, as the agent's text log lines.
    Text,
    /// One JSON object per line, as the agent's JSON log lines.
    Json,
    /// Apache's and nginx's combined log format.
    Combined,
}

/// The control plane: where snapshots come from.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
pub struct ControlArgs {
    /// leader: watch Docker; follower: follow --leader; auto: leader on a manager [default: auto].
    #[arg(long, value_enum, env = "INTERLOCK_ROLE")]
    pub role: Option<Role>,
    /// Follower: the leader's snapshot stream (host:port).
    #[arg(long, env = "INTERLOCK_LEADER")]
    pub leader: Option<String>,
    /// Leader: serve the snapshot stream to followers on this address.
    #[arg(long, env = "INTERLOCK_SNAPSHOT_LISTEN")]
    pub snapshot_listen: Option<SocketAddr>,
    /// Mutual TLS for the snapshot stream: a directory with interlock-{ca,cert,key}.pem
    /// (`interlock certs`); leaders then serve, and followers accept, only peers from that CA.
    #[arg(long, env = "INTERLOCK_STREAM_TLS_DIR")]
    pub stream_tls_dir: Option<PathBuf>,
    /// Task poll interval in milliseconds (Docker emits no task events) [default: 1000].
    #[arg(long, env = "INTERLOCK_POLL_MS")]
    pub poll_ms: Option<u64>,
    /// Full reconcile interval in seconds [default: 30].
    #[arg(long, env = "INTERLOCK_RECONCILE_S")]
    pub reconcile_s: Option<u64>,
    /// Serve only services whose com.docker.lb.service_cluster label has this value.
    #[arg(long, env = "INTERLOCK_SERVICE_CLUSTER")]
    pub service_cluster: Option<String>,
    /// Where Docker secrets named by ssl_cert/ssl_key are mounted [default: /run/secrets].
    #[arg(long, env = "INTERLOCK_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
}

/// The HTTP plane: listeners, limits, timeouts.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
pub struct HttpArgs {
    /// Plain HTTP listen address [default: 0.0.0.0:80].
    #[arg(long, env = "INTERLOCK_HTTP")]
    pub http: Option<SocketAddr>,
    /// HTTPS listen address (TLS termination by SNI, and passthrough); "off": none [default: off].
    #[arg(long, env = "INTERLOCK_HTTPS")]
    pub https: Option<String>,
    /// Admin address: /metrics, /healthz, /readyz, /status [default: 127.0.0.1:9090].
    #[arg(long, env = "INTERLOCK_ADMIN")]
    pub admin: Option<SocketAddr>,
    /// Listen for HTTP(S) in this network namespace (the host's, from a container).
    #[arg(long, env = "INTERLOCK_LISTEN_NETNS")]
    pub listen_netns: Option<PathBuf>,
    /// Take the listening sockets over from a running proxy on the HTTP address, and offer
    /// them to the next [default: true].
    #[arg(long, env = "INTERLOCK_HANDOVER")]
    pub handover: Option<bool>,
    /// Value of the x-proxy-id response header [default: the host name].
    #[arg(long, env = "INTERLOCK_PROXY_ID")]
    pub proxy_id: Option<String>,
    /// Client connections at once [default: 20000].
    #[arg(long, env = "INTERLOCK_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Requests one backend serves at once; more wait in line [default: 1024].
    #[arg(long, env = "INTERLOCK_MAX_BACKEND_REQUESTS")]
    pub max_backend_requests: Option<usize>,
    /// Seconds a client has to send a request head [default: 10].
    #[arg(long, env = "INTERLOCK_HEADER_READ_TIMEOUT_S")]
    pub header_read_timeout_s: Option<u64>,
    /// Seconds a client may pause while sending a request body (between two reads) [default: 30].
    #[arg(long, env = "INTERLOCK_CLIENT_BODY_TIMEOUT_S")]
    pub client_body_timeout_s: Option<u64>,
    /// Balancers in front whose PROXY header and X-Forwarded-* are taken: comma-separated
    /// addresses or CIDRs [default: none].
    #[arg(long, env = "INTERLOCK_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// Largest request body in bytes, larger ones are answered 413; 0: no limit [default: 0].
    #[arg(long, env = "INTERLOCK_MAX_REQUEST_BODY_BYTES")]
    pub max_request_body_bytes: Option<u64>,
    /// Milliseconds to connect to a backend before trying another [default: 3000].
    #[arg(long, env = "INTERLOCK_CONNECT_TIMEOUT_MS")]
    pub connect_timeout_ms: Option<u64>,
    /// Backends tried for one request when connecting fails, 1 to 5 [default: 3].
    #[arg(long, env = "INTERLOCK_BACKEND_ATTEMPTS")]
    pub backend_attempts: Option<usize>,
    /// Consecutive connect failures that eject a backend; 0: never [default: 3].
    #[arg(long, env = "INTERLOCK_EJECT_AFTER_FAILURES")]
    pub eject_after_failures: Option<u32>,
    /// Milliseconds of a backend's first ejection, doubled with each further failure [default: 1000].
    #[arg(long, env = "INTERLOCK_EJECT_BASE_MS")]
    pub eject_base_ms: Option<u64>,
    /// Longest ejection in milliseconds [default: 30000].
    #[arg(long, env = "INTERLOCK_EJECT_MAX_MS")]
    pub eject_max_ms: Option<u64>,
    /// Milliseconds an active health probe has for its answer [default: 2000].
    #[arg(long, env = "INTERLOCK_HEALTH_TIMEOUT_MS")]
    pub health_timeout_ms: Option<u64>,
    /// Seconds a backend has to answer with a response head [default: 60].
    #[arg(long, env = "INTERLOCK_UPSTREAM_TIMEOUT_S")]
    pub upstream_timeout_s: Option<u64>,
    /// Seconds open connections get to finish on SIGTERM [default: 10].
    #[arg(long, env = "INTERLOCK_DRAIN_GRACE_S")]
    pub drain_grace_s: Option<u64>,
    /// Seconds the HTTP(S) ports stay closed at start while no routes have come [default: 15].
    #[arg(long, env = "INTERLOCK_FIRST_ROUTES_WAIT_S")]
    pub first_routes_wait_s: Option<u64>,
    /// Lowest TLS version of the HTTPS listener: 1.2 or 1.3 [default: 1.2].
    #[arg(long, value_enum, env = "INTERLOCK_TLS_MIN_VERSION")]
    pub tls_min_version: Option<crate::l7::front::tls::TlsMinVersion>,
    /// Cipher suites of the HTTPS listener, comma-separated rustls names
    /// (TLS13_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, ...) [default: all].
    #[arg(long, env = "INTERLOCK_TLS_CIPHERS", value_delimiter = ',')]
    pub tls_ciphers: Option<Vec<String>>,
    /// Where access-log lines go: stderr, off, or a file path (appended to) [default: stderr].
    #[arg(long, env = "INTERLOCK_ACCESS_LOG")]
    pub access_log: Option<String>,
    /// Access-log line format: text, json or combined [default: the --log-format, else text].
    #[arg(long, value_enum, env = "INTERLOCK_ACCESS_LOG_FORMAT")]
    pub access_log_format: Option<AccessLogFormat>,
}

/// The XDP fast path of `interlock run`.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
pub struct L4Args {
    /// Interfaces (comma-separated) where the XDP fast path receives clients; none: no L4.
    #[arg(long, env = "INTERLOCK_XDP_INTERFACES", value_delimiter = ',')]
    pub xdp_interfaces: Option<Vec<String>>,
    /// XDP attach mode [default: skb].
    #[arg(long, value_enum, env = "INTERLOCK_XDP_MODE")]
    pub xdp_mode: Option<XdpMode>,
    /// VIP of L4 services that name none [default: the first XDP interface's address].
    #[arg(long, env = "INTERLOCK_L4_VIP")]
    pub l4_vip: Option<Ipv4Addr>,
    /// bpffs directory for the pinned maps and links [default: /sys/fs/bpf/interlock].
    #[arg(long, env = "INTERLOCK_BPFFS")]
    pub bpffs: Option<PathBuf>,
    /// The host's network namespace, for the XDP fast path when the agent runs in a container.
    #[arg(long, env = "INTERLOCK_HOST_NETNS")]
    pub host_netns: Option<PathBuf>,
}

/// What the agent's process and its node view need.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
pub struct AgentArgs {
    /// Docker endpoint (unix:///var/run/docker.sock, tcp://host:2376) [default: DOCKER_HOST].
    #[arg(long, env = "INTERLOCK_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Connect this agent's container to the overlay networks of labelled services [default: false].
    #[arg(long, env = "INTERLOCK_JOIN_NETWORKS")]
    pub join_networks: Option<bool>,
    /// Networks (comma-separated names) the agent may join for labelled services; a service
    /// on another is not joined and not served [default: all].
    #[arg(long, env = "INTERLOCK_ALLOWED_NETWORKS", value_delimiter = ',')]
    pub allowed_networks: Option<Vec<String>>,
    /// Log lines as text or json [default: text].
    #[arg(long, value_enum, env = "INTERLOCK_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// `interlock run`: every group.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
pub struct RunArgs {
    /// TOML file with any of the settings (keys as the flags, with underscores).
    #[arg(long, env = "INTERLOCK_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Print the effective settings, the plane each configures and where each came from, then exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,
    #[command(flatten)]
    #[serde(flatten)]
    pub control: ControlArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub l4: L4Args,
    #[command(flatten)]
    #[serde(flatten)]
    pub agent: AgentArgs,
}

/// The keys `interlock run` takes (flags, variables, file): every argument but the two that
/// are about the command itself.
pub fn run_keys() -> Vec<String> {
    use clap::Args;
    RunArgs::augment_args(clap::Command::new("run"))
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|id| id != "config" && id != "print_config")
        .collect()
}
