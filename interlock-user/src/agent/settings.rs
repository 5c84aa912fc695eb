//! `interlock run` settings: command-line flags, then environment variables (clap reads both),
//! then an optional TOML file, then defaults. Pure: resolving is unit-tested.
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::commands::control::Role;

/// Flags (and their `INTERLOCK_*` environment variables), and also the keys of the TOML file
/// (as the flags, with underscores; unknown keys are an error, so a typo does not silently
/// leave a default in place). Every one is optional so the file can fill in what the command
/// line leaves out.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunArgs {
    /// TOML file with any of the settings below (keys as the flags, with underscores).
    #[arg(long, env = "INTERLOCK_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// leader: watch Docker (a manager); follower: follow --leader; auto: ask the engine.
    #[arg(long, value_enum, env = "INTERLOCK_ROLE")]
    pub role: Option<Role>,
    /// Follower: the leader's snapshot stream (host:port).
    #[arg(long, env = "INTERLOCK_LEADER")]
    pub leader: Option<String>,
    /// Leader: serve the snapshot stream to followers on this address.
    #[arg(long, env = "INTERLOCK_SNAPSHOT_LISTEN")]
    pub snapshot_listen: Option<SocketAddr>,
    /// Mutual TLS for the snapshot stream: directory with interlock-{ca,cert,key}.pem.
    #[arg(long, env = "INTERLOCK_STREAM_TLS_DIR")]
    pub stream_tls_dir: Option<PathBuf>,
    /// Docker endpoint (unix:///var/run/docker.sock, tcp://host:2376); default: DOCKER_HOST.
    #[arg(long, env = "INTERLOCK_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Plain HTTP listen address.
    #[arg(long, env = "INTERLOCK_HTTP")]
    pub http: Option<SocketAddr>,
    /// HTTPS listen address ("off" to disable).
    #[arg(long, env = "INTERLOCK_HTTPS")]
    pub https: Option<String>,
    /// Admin address: /metrics, /healthz, /status. Loopback or a management network.
    #[arg(long, env = "INTERLOCK_ADMIN")]
    pub admin: Option<SocketAddr>,
    /// Interfaces (comma-separated) where the XDP fast path receives clients; empty: no L4.
    #[arg(long, env = "INTERLOCK_XDP_INTERFACES", value_delimiter = ',')]
    pub xdp_interfaces: Option<Vec<String>>,
    /// XDP attach mode: skb (generic; needed to forward into docker_gwbridge) or driver.
    #[arg(long, value_enum, env = "INTERLOCK_XDP_MODE")]
    pub xdp_mode: Option<XdpModeSetting>,
    /// VIP of L4 services that name none (default: the first XDP interface's address).
    #[arg(long, env = "INTERLOCK_L4_VIP")]
    pub l4_vip: Option<Ipv4Addr>,
    /// bpffs directory for the pinned maps and links.
    #[arg(long, env = "INTERLOCK_BPFFS")]
    pub bpffs: Option<PathBuf>,
    /// The host's network namespace, for the XDP fast path when the agent runs in a container.
    #[arg(long, env = "INTERLOCK_HOST_NETNS")]
    pub host_netns: Option<PathBuf>,
    /// Listen for HTTP(S) in this network namespace (the host's, from a container: the
    /// agent replacing this one then takes the same sockets over).
    #[arg(long, env = "INTERLOCK_LISTEN_NETNS")]
    pub listen_netns: Option<PathBuf>,
    /// Take the listening sockets over from an agent already serving the HTTP address, and
    /// offer them to the next (default true).
    #[arg(long, env = "INTERLOCK_HANDOVER")]
    pub handover: Option<bool>,
    /// Serve only services whose com.docker.lb.service_cluster label has this value.
    #[arg(long, env = "INTERLOCK_SERVICE_CLUSTER")]
    pub service_cluster: Option<String>,
    /// Connect this agent's container to the overlay networks of labelled services.
    #[arg(long, env = "INTERLOCK_JOIN_NETWORKS")]
    pub join_networks: Option<bool>,
    /// Log lines as text or json.
    #[arg(long, value_enum, env = "INTERLOCK_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Value of the x-proxy-id response header (default: the host name).
    #[arg(long, env = "INTERLOCK_PROXY_ID")]
    pub proxy_id: Option<String>,
    #[arg(long, env = "INTERLOCK_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Requests one backend serves at once; more wait in line (default 1024).
    #[arg(long, env = "INTERLOCK_MAX_BACKEND_REQUESTS")]
    pub max_backend_requests: Option<usize>,
    /// Seconds open connections get to finish on SIGTERM.
    #[arg(long, env = "INTERLOCK_DRAIN_GRACE_S")]
    pub drain_grace_s: Option<u64>,
    /// Seconds the HTTP(S) ports stay closed at start while no routes have come (default 15).
    #[arg(long, env = "INTERLOCK_FIRST_ROUTES_WAIT_S")]
    pub first_routes_wait_s: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeSetting {
    Skb,
    Driver,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything resolved: what the agent runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub role: Role,
    pub leader: Option<String>,
    pub snapshot_listen: Option<SocketAddr>,
    pub stream_tls_dir: Option<PathBuf>,
    pub docker_host: Option<String>,
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub xdp_interfaces: Vec<String>,
    pub xdp_mode: XdpModeSetting,
    pub l4_vip: Option<Ipv4Addr>,
    pub bpffs: PathBuf,
    pub host_netns: Option<PathBuf>,
    pub listen_netns: Option<PathBuf>,
    pub handover: bool,
    pub service_cluster: Option<String>,
    pub join_networks: bool,
    pub log_format: LogFormat,
    pub proxy_id: Option<String>,
    pub max_connections: usize,
    pub max_backend_requests: usize,
    pub drain_grace_s: u64,
    pub first_routes_wait_s: u64,
}

impl Settings {
    /// Reads the TOML file named by `--config` (if any) and resolves.
    pub fn load(args: RunArgs) -> Result<Settings> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => RunArgs::default(),
        };
        Settings::resolve(args, file)
    }

    /// Flag/env first, then the file, then the default.
    pub fn resolve(a: RunArgs, f: RunArgs) -> Result<Settings> {
        let https = match a.https.or(f.https).as_deref() {
            None | Some("off") | Some("") => None,
            Some(s) => Some(
                s.parse()
                    .with_context(|| format!("https: {s:?} is not an address (ip:port)"))?,
            ),
        };
        let xdp_interfaces: Vec<String> = a
            .xdp_interfaces
            .or(f.xdp_interfaces)
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        Ok(Settings {
            role: a.role.or(f.role).unwrap_or(Role::Auto),
            leader: a.leader.or(f.leader),
            snapshot_listen: a.snapshot_listen.or(f.snapshot_listen),
            stream_tls_dir: a.stream_tls_dir.or(f.stream_tls_dir),
            docker_host: a.docker_host.or(f.docker_host),
            http: a.http.or(f.http).unwrap_or_else(|| ([0, 0, 0, 0], 80).into()),
            https,
            admin: a.admin.or(f.admin).unwrap_or_else(|| ([127, 0, 0, 1], 9090).into()),
            xdp_interfaces,
            xdp_mode: a.xdp_mode.or(f.xdp_mode).unwrap_or(XdpModeSetting::Skb),
            l4_vip: a.l4_vip.or(f.l4_vip),
            bpffs: a
                .bpffs
                .or(f.bpffs)
                .unwrap_or_else(|| PathBuf::from(crate::l4::pin::DEFAULT_PIN_DIR)),
            host_netns: a.host_netns.or(f.host_netns),
            listen_netns: a.listen_netns.or(f.listen_netns),
            handover: a.handover.or(f.handover).unwrap_or(true),
            service_cluster: a.service_cluster.or(f.service_cluster),
            join_networks: a.join_networks.or(f.join_networks).unwrap_or(false),
            log_format: a.log_format.or(f.log_format).unwrap_or(LogFormat::Text),
            proxy_id: a.proxy_id.or(f.proxy_id),
            max_connections: a.max_connections.or(f.max_connections).unwrap_or(20_000),
            max_backend_requests: a
                .max_backend_requests
                .or(f.max_backend_requests)
                .unwrap_or(crate::l7::route::balance::DEFAULT_MAX_REQUESTS_PER_BACKEND),
            drain_grace_s: a.drain_grace_s.or(f.drain_grace_s).unwrap_or(10),
            first_routes_wait_s: a.first_routes_wait_s.or(f.first_routes_wait_s).unwrap_or(15),
        })
    }
}

fn read_file(path: &Path) -> Result<RunArgs> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading settings file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("settings file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_nothing_is_given() {
        let s = Settings::resolve(RunArgs::default(), RunArgs::default()).unwrap();
        assert_eq!(s.role, Role::Auto);
        assert_eq!(s.http, "0.0.0.0:80".parse().unwrap());
        assert_eq!(s.admin, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(s.https, None);
        assert!(s.handover, "listening sockets are handed over by default");
        assert_eq!(s.listen_netns, None);
        assert!(s.xdp_interfaces.is_empty());
        assert_eq!(s.xdp_mode, XdpModeSetting::Skb);
        assert!(!s.join_networks);
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file: RunArgs = toml::from_str(
            "http = \"0.0.0.0:8080\"\nadmin = \"0.0.0.0:9100\"\nxdp_interfaces = [\"eth0\"]\nrole = \"follower\"\n\
             join_networks = true\nlog_format = \"json\"\n",
        )
        .unwrap();
        let args = RunArgs {
            http: Some("127.0.0.1:8000".parse().unwrap()),
            https: Some("0.0.0.0:8443".into()),
            ..RunArgs::default()
        };
        let s = Settings::resolve(args, file).unwrap();
        assert_eq!(s.http, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(s.https, Some("0.0.0.0:8443".parse().unwrap()));
        assert_eq!(s.admin, "0.0.0.0:9100".parse().unwrap());
        assert_eq!(s.xdp_interfaces, vec!["eth0".to_string()]);
        assert_eq!(s.role, Role::Follower);
        assert!(s.join_networks);
        assert_eq!(s.log_format, LogFormat::Json);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let typo = toml::from_str::<RunArgs>("htp = \"0.0.0.0:80\"").unwrap_err();
        assert!(typo.to_string().contains("htp"), "{typo}");
        let args = RunArgs {
            https: Some("443".into()),
            ..RunArgs::default()
        };
        let e = Settings::resolve(args, RunArgs::default()).unwrap_err();
        assert!(format!("{e:#}").contains("https"), "{e:#}");
    }

    #[test]
    fn empty_interface_list_means_no_fast_path() {
        let args = RunArgs {
            xdp_interfaces: Some(vec!["".into()]),
            https: Some("off".into()),
            ..RunArgs::default()
        };
        let s = Settings::resolve(args, RunArgs::default()).unwrap();
        assert!(s.xdp_interfaces.is_empty());
        assert_eq!(s.https, None);
    }
}
