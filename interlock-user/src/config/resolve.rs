//! Resolving the settings: the command line and environment first (clap reads both), then
//! the TOML file, then `defaults`. What comes out is one plain config per plane, the values
//! the planes are started with, and where each value came from (`Origins`). Pure.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::args::{AccessLogFormat, AgentArgs, ControlArgs, HttpArgs, L4Args, LogFormat, Role, RunArgs, XdpMode};
use super::defaults as d;
use crate::l7::front::trust::TrustedProxies;

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    File,
    Default,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Env => "env",
            Source::File => "file",
            Source::Default => "default",
        }
    }
}

/// Which settings the command line or the environment gave (by key), as clap saw them.
#[derive(Debug, Clone, Default)]
pub struct Given(BTreeMap<String, Source>);

impl Given {
    pub fn from_matches(matches: &clap::ArgMatches) -> Given {
        let mut given = BTreeMap::new();
        for id in matches.ids() {
            let source = match matches.value_source(id.as_str()) {
                Some(clap::parser::ValueSource::CommandLine) => Source::Flag,
                Some(clap::parser::ValueSource::EnvVariable) => Source::Env,
                _ => continue,
            };
            given.insert(id.to_string(), source);
        }
        Given(given)
    }

    /// A key clap did not report (arguments built by code, not parsed) counts as a flag.
    fn source(&self, key: &str) -> Source {
        self.0.get(key).copied().unwrap_or(Source::Flag)
    }
}

/// Where each effective setting came from, by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origins(BTreeMap<&'static str, Source>);

impl Origins {
    pub fn of(&self, key: &str) -> Source {
        self.0.get(key).copied().unwrap_or(Source::Default)
    }
}

/// Picks each setting from the command line, then the file, then the default, and notes
/// where it came from.
struct Pick<'a> {
    given: &'a Given,
    origins: Origins,
}

impl<'a> Pick<'a> {
    fn new(given: &'a Given) -> Self {
        Pick {
            given,
            origins: Origins::default(),
        }
    }

    fn opt<T>(&mut self, key: &'static str, arg: Option<T>, file: Option<T>) -> Option<T> {
        if arg.is_some() {
            self.origins.0.insert(key, self.given.source(key));
            return arg;
        }
        if file.is_some() {
            self.origins.0.insert(key, Source::File);
        }
        file
    }

    fn or<T>(&mut self, key: &'static str, arg: Option<T>, file: Option<T>, default: T) -> T {
        self.opt(key, arg, file).unwrap_or(default)
    }
}

/// The control plane's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlConfig {
    pub role: Role,
    pub leader: Option<String>,
    pub snapshot_listen: Option<SocketAddr>,
    pub stream_tls_dir: Option<PathBuf>,
    pub poll: Duration,
    pub reconcile: Duration,
    pub service_cluster: Option<String>,
    pub secrets_dir: PathBuf,
}

/// The HTTP plane's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub admin: SocketAddr,
    /// The network namespace the HTTP(S) sockets live in (`None`: the process's own).
    pub listen_netns: Option<PathBuf>,
    pub handover: bool,
    pub proxy_id: String,
    pub max_connections: usize,
    pub max_backend_requests: usize,
    pub header_read_timeout: Duration,
    pub client_body_timeout: Duration,
    /// The largest request body forwarded (`None`: no limit).
    pub max_request_body: Option<u64>,
    pub connect_timeout: Duration,
    /// Backends tried per request (1 to `MAX_ATTEMPTS`).
    pub backend_attempts: usize,
    pub ejection: crate::l7::route::balance::Ejection,
    pub health_timeout: Duration,
    pub upstream_timeout: Duration,
    pub drain_grace: Duration,
    pub first_routes_wait: Duration,
    pub trusted_proxies: TrustedProxies,
    /// The HTTPS listener's TLS version and cipher suites (checked).
    pub tls: crate::l7::front::tls::TlsPolicy,
    pub access_log: crate::access_log::Destination,
    pub access_log_format: AccessLogFormat,
}

/// The XDP fast path's settings (`interlock run` with interfaces).
#[derive(Debug, Clone, PartialEq)]
pub struct L4Config {
    /// Empty: no fast path.
    pub interfaces: Vec<String>,
    pub mode: XdpMode,
    pub vip: Option<std::net::Ipv4Addr>,
    pub bpffs: PathBuf,
    pub host_netns: Option<PathBuf>,
}

/// The process and the node view.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub docker_host: Option<String>,
    pub join_networks: bool,
    /// The networks the agent may join (`None`: all).
    pub allowed_networks: Option<std::collections::BTreeSet<String>>,
    pub log_format: LogFormat,
}

/// Everything `interlock run` runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub control: ControlConfig,
    pub http: HttpConfig,
    pub l4: L4Config,
    pub agent: AgentConfig,
    pub origins: Origins,
}

impl Settings {
    /// Reads the TOML file named by `--config` (if any) and resolves.
    pub fn load(args: RunArgs, given: &Given) -> Result<Settings> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => RunArgs::default(),
        };
        Settings::resolve(args, file, given)
    }

    /// Command line first, then the file, then the default.
    pub fn resolve(a: RunArgs, f: RunArgs, given: &Given) -> Result<Settings> {
        let mut pick = Pick::new(given);
        let control = control(&mut pick, a.control, f.control)?;
        let http = http(&mut pick, a.http, f.http)?;
        let l4 = l4(&mut pick, a.l4, f.l4);
        let agent = agent(&mut pick, a.agent, f.agent);
        let mut http = http;
        if pick.origins.of("access_log_format") == Source::Default && agent.log_format == LogFormat::Json {
            // Access lines in the shape of the agent's other lines unless told otherwise.
            http.access_log_format = AccessLogFormat::Json;
        }
        Ok(Settings {
            control,
            http,
            l4,
            agent,
            origins: pick.origins,
        })
    }
}

/// The control group alone (`interlock control`, `interlock proxy`: no file).
pub fn control_config(args: ControlArgs, given: &Given) -> Result<ControlConfig> {
    control(&mut Pick::new(given), args, ControlArgs::default())
}

/// The HTTP group alone (`interlock proxy`: no file).
pub fn http_config(args: HttpArgs, given: &Given) -> Result<HttpConfig> {
    http(&mut Pick::new(given), args, HttpArgs::default())
}

/// Task polls faster than this would load the managers for nothing.
const MIN_POLL_MS: u64 = 50;

fn control(p: &mut Pick, a: ControlArgs, f: ControlArgs) -> Result<ControlConfig> {
    let poll_ms = p.or("poll_ms", a.poll_ms, f.poll_ms, d::POLL_MS);
    if poll_ms < MIN_POLL_MS {
        bail!("poll_ms: {poll_ms} is below the minimum of {MIN_POLL_MS} (milliseconds)");
    }
    let reconcile_s = p.or("reconcile_s", a.reconcile_s, f.reconcile_s, d::RECONCILE_S);
    if reconcile_s == 0 {
        bail!("reconcile_s: 0: expected at least 1 (seconds)");
    }
    Ok(ControlConfig {
        role: p.or("role", a.role, f.role, d::ROLE),
        leader: p.opt("leader", a.leader, f.leader),
        snapshot_listen: p.opt("snapshot_listen", a.snapshot_listen, f.snapshot_listen),
        stream_tls_dir: p.opt("stream_tls_dir", a.stream_tls_dir, f.stream_tls_dir),
        poll: Duration::from_millis(poll_ms),
        reconcile: Duration::from_secs(reconcile_s),
        service_cluster: p.opt("service_cluster", a.service_cluster, f.service_cluster),
        secrets_dir: p.or("secrets_dir", a.secrets_dir, f.secrets_dir, d::SECRETS_DIR.into()),
    })
}

fn http(p: &mut Pick, a: HttpArgs, f: HttpArgs) -> Result<HttpConfig> {
    let https = match p.opt("https", a.https, f.https).as_deref() {
        None | Some("off") | Some("") => None,
        Some(s) => Some(
            s.parse()
                .with_context(|| format!("https: {s:?} is not an address (ip:port) or \"off\""))?,
        ),
    };
    let client_body_timeout_s = p.or(
        "client_body_timeout_s",
        a.client_body_timeout_s,
        f.client_body_timeout_s,
        d::CLIENT_BODY_TIMEOUT_S,
    );
    if client_body_timeout_s == 0 {
        // Every body not in with its head would fail at once.
        bail!("client_body_timeout_s: 0: expected at least 1 (seconds)");
    }
    let trusted = p
        .opt("trusted_proxies", a.trusted_proxies, f.trusted_proxies)
        .unwrap_or_default();
    let trusted_proxies = TrustedProxies::parse(&trusted).map_err(anyhow::Error::msg)?;
    let tls_ciphers: Vec<String> = p
        .opt("tls_ciphers", a.tls_ciphers, f.tls_ciphers)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .collect();
    let tls = crate::l7::front::tls::TlsPolicy {
        min_version: p.or(
            "tls_min_version",
            a.tls_min_version,
            f.tls_min_version,
            d::TLS_MIN_VERSION,
        ),
        ciphers: crate::l7::front::tls::canonical_cipher_names(&tls_ciphers).context("tls_ciphers")?,
    };
    crate::l7::front::tls::check_policy(&tls).context("tls_ciphers")?;
    let connect_timeout_ms = p.or(
        "connect_timeout_ms",
        a.connect_timeout_ms,
        f.connect_timeout_ms,
        d::CONNECT_TIMEOUT_MS,
    );
    if connect_timeout_ms == 0 {
        bail!("connect_timeout_ms: 0: expected at least 1 (milliseconds)");
    }
    let backend_attempts = p.or(
        "backend_attempts",
        a.backend_attempts,
        f.backend_attempts,
        d::BACKEND_ATTEMPTS,
    );
    let most = crate::l7::upstream::attempt::MAX_ATTEMPTS;
    if !(1..=most).contains(&backend_attempts) {
        bail!("backend_attempts: {backend_attempts}: expected 1 to {most}");
    }
    let health_timeout_ms = p.or(
        "health_timeout_ms",
        a.health_timeout_ms,
        f.health_timeout_ms,
        d::HEALTH_TIMEOUT_MS,
    );
    if health_timeout_ms == 0 {
        bail!("health_timeout_ms: 0: expected at least 1 (milliseconds)");
    }
    let ejection = crate::l7::route::balance::Ejection {
        after: p.or(
            "eject_after_failures",
            a.eject_after_failures,
            f.eject_after_failures,
            d::EJECT_AFTER_FAILURES,
        ),
        base: Duration::from_millis(p.or("eject_base_ms", a.eject_base_ms, f.eject_base_ms, d::EJECT_BASE_MS)),
        max: Duration::from_millis(p.or("eject_max_ms", a.eject_max_ms, f.eject_max_ms, d::EJECT_MAX_MS)),
    };
    if ejection.base.is_zero() {
        bail!("eject_base_ms: 0: expected at least 1 (milliseconds)");
    }
    if ejection.max < ejection.base {
        bail!(
            "eject_max_ms: {} is below eject_base_ms ({})",
            ejection.max.as_millis(),
            ejection.base.as_millis()
        );
    }
    let secs = Duration::from_secs;
    Ok(HttpConfig {
        trusted_proxies,
        http: p.or("http", a.http, f.http, d::HTTP_LISTEN),
        https,
        admin: p.or("admin", a.admin, f.admin, d::ADMIN_LISTEN),
        listen_netns: p.opt("listen_netns", a.listen_netns, f.listen_netns),
        handover: p.or("handover", a.handover, f.handover, d::HANDOVER),
        proxy_id: p.opt("proxy_id", a.proxy_id, f.proxy_id).unwrap_or_else(host_name),
        max_connections: p.or(
            "max_connections",
            a.max_connections,
            f.max_connections,
            d::MAX_CONNECTIONS,
        ),
        max_backend_requests: p.or(
            "max_backend_requests",
            a.max_backend_requests,
            f.max_backend_requests,
            d::MAX_BACKEND_REQUESTS,
        ),
        header_read_timeout: secs(p.or(
            "header_read_timeout_s",
            a.header_read_timeout_s,
            f.header_read_timeout_s,
            d::HEADER_READ_TIMEOUT_S,
        )),
        client_body_timeout: secs(client_body_timeout_s),
        max_request_body: Some(p.or(
            "max_request_body_bytes",
            a.max_request_body_bytes,
            f.max_request_body_bytes,
            d::MAX_REQUEST_BODY_BYTES,
        ))
        .filter(|max| *max > 0),
        connect_timeout: Duration::from_millis(connect_timeout_ms),
        backend_attempts,
        ejection,
        health_timeout: Duration::from_millis(health_timeout_ms),
        upstream_timeout: secs(p.or(
            "upstream_timeout_s",
            a.upstream_timeout_s,
            f.upstream_timeout_s,
            d::UPSTREAM_TIMEOUT_S,
        )),
        drain_grace: secs(p.or("drain_grace_s", a.drain_grace_s, f.drain_grace_s, d::DRAIN_GRACE_S)),
        first_routes_wait: secs(p.or(
            "first_routes_wait_s",
            a.first_routes_wait_s,
            f.first_routes_wait_s,
            d::FIRST_ROUTES_WAIT_S,
        )),
        tls,
        access_log: crate::access_log::destination(
            p.or("access_log", a.access_log, f.access_log, d::ACCESS_LOG.into())
                .trim(),
        ),
        access_log_format: p.or(
            "access_log_format",
            a.access_log_format,
            f.access_log_format,
            d::ACCESS_LOG_FORMAT,
        ),
    })
}

fn l4(p: &mut Pick, a: L4Args, f: L4Args) -> L4Config {
    let interfaces = p
        .opt("xdp_interfaces", a.xdp_interfaces, f.xdp_interfaces)
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    L4Config {
        interfaces,
        mode: p.or("xdp_mode", a.xdp_mode, f.xdp_mode, d::XDP_MODE),
        vip: p.opt("l4_vip", a.l4_vip, f.l4_vip),
        bpffs: p.or("bpffs", a.bpffs, f.bpffs, d::BPFFS.into()),
        host_netns: p.opt("host_netns", a.host_netns, f.host_netns),
    }
}

fn agent(p: &mut Pick, a: AgentArgs, f: AgentArgs) -> AgentConfig {
    AgentConfig {
        docker_host: p.opt("docker_host", a.docker_host, f.docker_host),
        join_networks: p.or("join_networks", a.join_networks, f.join_networks, d::JOIN_NETWORKS),
        allowed_networks: allowed_networks(p.opt("allowed_networks", a.allowed_networks, f.allowed_networks)),
        log_format: p.or("log_format", a.log_format, f.log_format, d::LOG_FORMAT),
    }
}

/// The allow-list as given, names trimmed; empty means the default (see
/// `defaults::ALLOWED_NETWORKS`).
fn allowed_networks(given: Option<Vec<String>>) -> Option<std::collections::BTreeSet<String>> {
    let names: std::collections::BTreeSet<String> = given?
        .into_iter()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        d::ALLOWED_NETWORKS.map(|l| l.iter().map(|n| n.to_string()).collect())
    } else {
        Some(names)
    }
}

/// The default `x-proxy-id`.
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "interlock".into())
}

/// The TOML file: its keys are checked against `interlock run`'s (a typo must not silently
/// leave a default in place), then read into the same groups as the command line.
fn read_file(path: &Path) -> Result<RunArgs> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading settings file {}", path.display()))?;
    parse_file(&text).with_context(|| format!("settings file {}", path.display()))
}

pub fn parse_file(text: &str) -> Result<RunArgs> {
    let table: toml::Table = toml::from_str(text)?;
    let known = super::args::run_keys();
    if let Some(unknown) = table.keys().find(|k| !known.contains(k)) {
        bail!("unknown setting {unknown:?} (known: {})", known.join(", "));
    }
    // Read one key at a time first: through the flattened groups serde's error would not
    // say which key had the wrong type.
    for (key, value) in &table {
        let one = toml::Table::from_iter([(key.clone(), value.clone())]);
        toml::Value::Table(one)
            .try_into::<RunArgs>()
            .with_context(|| format!("setting {key:?}"))?;
    }
    Ok(toml::Value::Table(table).try_into()?)
}
