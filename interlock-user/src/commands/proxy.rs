//! `interlock proxy`: the HTTP plane. Routes come from the control plane (watching Docker
//! or following a leader, same flags as `interlock control`) or, with `--routes FILE`, from
//! a snapshot JSON file that is reloaded when it changes.
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::control::{self as control_cmd, ControlArgs};
use crate::l7::admin::{Admin, Readiness};
use crate::l7::front::{listeners, server, tls::TlsFront};
use crate::l7::{self, proxy::Proxy};
use crate::model::{Snapshot, SnapshotRx};

#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Plain HTTP listen address.
    #[arg(long, default_value = "0.0.0.0:80", env = "INTERLOCK_HTTP")]
    pub http: SocketAddr,
    /// HTTPS listen address (TLS termination by SNI, and passthrough).
    #[arg(long, env = "INTERLOCK_HTTPS")]
    pub https: Option<SocketAddr>,
    /// Listen for HTTP(S) in this network namespace (e.g. the host's, `/host/proc/1/ns/net`,
    /// from a container) instead of the process's own.
    #[arg(long, env = "INTERLOCK_LISTEN_NETNS")]
    pub listen_netns: Option<PathBuf>,
    /// Take the listening sockets over from a proxy already serving the HTTP address (and
    /// offer them to the next): restarts and upgrades refuse no connection.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "INTERLOCK_HANDOVER")]
    pub handover: bool,
    /// Admin listener: /metrics, /healthz, /readyz. Keep it on loopback or a management network.
    #[arg(long, default_value = "127.0.0.1:9090", env = "INTERLOCK_ADMIN")]
    pub admin: SocketAddr,
    /// Serve the routes of this snapshot JSON file instead of running the control plane.
    #[arg(long)]
    pub routes: Option<PathBuf>,
    /// Value of the x-proxy-id response header (default: the host name).
    #[arg(long, env = "INTERLOCK_PROXY_ID")]
    pub proxy_id: Option<String>,
    #[arg(long, default_value_t = 20_000, env = "INTERLOCK_MAX_CONNECTIONS")]
    pub max_connections: usize,
    /// Requests one backend serves at once; more wait in line (up to the connect timeout).
    #[arg(long, default_value_t = crate::l7::route::balance::DEFAULT_MAX_REQUESTS_PER_BACKEND, env = "INTERLOCK_MAX_BACKEND_REQUESTS")]
    pub max_backend_requests: usize,
    /// Seconds a client has to send a request head.
    #[arg(long, default_value_t = 10)]
    pub header_read_timeout_s: u64,
    /// Seconds a backend has to answer with a response head.
    #[arg(long, default_value_t = 60)]
    pub upstream_timeout_s: u64,
    /// Seconds open connections get to finish on SIGTERM.
    #[arg(long, default_value_t = 10)]
    pub drain_grace_s: u64,
    /// Seconds the HTTP(S) ports stay closed at start while no routes have come; then they
    /// open anyway (every host answers 404 until routes arrive).
    #[arg(long, default_value_t = 15, env = "INTERLOCK_FIRST_ROUTES_WAIT_S")]
    pub first_routes_wait_s: u64,
    #[command(flatten)]
    pub control: ControlArgs,
}

/// What the HTTP plane needs, whoever starts it (`interlock proxy` or `interlock run`).
pub struct HttpOptions {
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub admin: SocketAddr,
    /// The network namespace the HTTP(S) sockets live in (`None`: the process's own).
    pub listen_netns: Option<PathBuf>,
    /// Take the sockets over from a running proxy, and offer them to the next.
    pub handover: bool,
    pub proxy_id: String,
    pub max_connections: usize,
    pub max_backend_requests: usize,
    pub header_read_timeout: Duration,
    pub upstream_timeout: Duration,
    pub drain_grace: Duration,
    /// How long the HTTP(S) ports stay closed waiting for the first routes.
    pub first_routes_wait: Duration,
}

pub async fn run(args: ProxyArgs) -> Result<()> {
    let rx = match &args.routes {
        Some(file) => watch_routes_file(file.clone())?,
        None => control_cmd::start(&args.control).await?,
    };
    let opts = HttpOptions {
        http: args.http,
        https: args.https,
        admin: args.admin,
        listen_netns: args.listen_netns.clone(),
        handover: args.handover,
        proxy_id: args.proxy_id.clone().unwrap_or_else(host_name),
        max_connections: args.max_connections,
        max_backend_requests: args.max_backend_requests,
        header_read_timeout: Duration::from_secs(args.header_read_timeout_s),
        upstream_timeout: Duration::from_secs(args.upstream_timeout_s),
        drain_grace: Duration::from_secs(args.drain_grace_s),
        first_routes_wait: Duration::from_secs(args.first_routes_wait_s),
    };
    serve_http(opts, rx, None, Vec::new()).await
}

/// Serves HTTP(S) and the admin address with routes from `rx` until SIGTERM/Ctrl-C, then
/// drains. The HTTP(S) ports accept only once the first routes are in place (at most
/// `first_routes_wait`); the admin address at once. `status` answers the admin `/status`
/// path; `collectors` add other planes' metrics to `/metrics`.
pub async fn serve_http(
    opts: HttpOptions,
    rx: SnapshotRx,
    status: Option<l7::admin::StatusFn>,
    collectors: Vec<Box<dyn prometheus_client::collector::Collector>>,
) -> Result<()> {
    let mut registry = prometheus_client::registry::Registry::default();
    for c in collectors {
        registry.register_collector(c);
    }
    registry.register_collector(Box::new(crate::log_writer::DroppedLinesCollector));
    let metrics = Arc::new(l7::metrics::Metrics::new(&mut registry));
    let proxy = Arc::new(
        Proxy::new(metrics, &opts.proxy_id, Duration::from_secs(3), opts.upstream_timeout)
            .with_backend_limit(opts.max_backend_requests),
    );
    let (stop_tx, stop_rx) = watch::channel(false);

    // Bound (or handed over) now, so a taken port fails the start at once; accepting only
    // once the first routes are in place (`l7::wait_for_first_routes`): until then clients
    // are refused, as by a proxy that is not there yet, rather than answered 404. Handed-over
    // sockets are accepted on by the proxy that had them until then.
    let (netns, http_addr, https_addr, handover) = (opts.listen_netns.clone(), opts.http, opts.https, opts.handover);
    let sockets = tokio::task::spawn_blocking(move || listeners::acquire(http_addr, https_addr, netns, handover))
        .await
        .context("acquiring the listening sockets")??;
    if let Some(pid) = sockets.from_pid {
        tracing::info!(
            pid,
            "took over the listening sockets of the running proxy; it serves until this one has its routes"
        );
    }
    let http = sockets.http;
    let https = match sockets.https {
        Some(socket) => Some((socket, Arc::new(TlsFront::new()?))),
        None => None,
    };
    let tls = https.as_ref().map(|(_, front)| front.clone());
    let (applied_tx, applied_rx) = watch::channel(0);
    tokio::spawn(l7::follow_snapshots(
        rx.clone(),
        proxy.clone(),
        tls.clone(),
        applied_tx,
        stop_rx.clone(),
    ));
    tokio::spawn(l7::route::health::run(rx, proxy.clone()));
    let (readiness, readiness_rx) = watch::channel(Readiness::WaitingForRoutes);
    let admin = Admin {
        registry: Arc::new(Mutex::new(registry)),
        proxy: proxy.clone(),
        status,
        readiness: readiness_rx,
    };
    let admin_listener = bind_admin(opts.admin, sockets.from_pid.is_some()).await?;
    tokio::spawn(async move { l7::admin::serve(admin_listener.await, admin).await });

    let shutdown = super::count::shutdown_signal();
    tokio::pin!(shutdown);
    tokio::select! {
        first = l7::wait_for_first_routes(applied_rx, opts.first_routes_wait) => match first {
            l7::FirstRoutes::Applied(version) => tracing::info!(version, "first routes in place"),
            l7::FirstRoutes::TimedOut => tracing::warn!(
                "no routes from the control plane within {:?}: listening anyway, every host \
                 answers 404 until routes arrive",
                opts.first_routes_wait
            ),
        },
        _ = &mut shutdown => {
            tracing::info!("shutting down before the first routes came");
            return Ok(());
        }
    }
    let mut listeners = vec![server::Listener {
        tcp: http.listen()?,
        tls: None,
    }];
    if let Some((https, front)) = https {
        listeners.push(server::Listener {
            tcp: https.listen()?,
            tls: Some(front),
        });
    }
    if opts.handover {
        let held = listeners
            .iter()
            .map(|l| l.tcp.as_fd().try_clone_to_owned())
            .collect::<std::io::Result<Vec<_>>>()?;
        l7::front::handover::offer(opts.listen_netns.clone(), opts.http, held, stop_rx.clone());
    }
    readiness.send_replace(Readiness::Serving);
    tracing::info!(http = %opts.http, https = ?opts.https, admin = %opts.admin, "proxy listening");

    let limits = l7::limits::Limits {
        max_connections: opts.max_connections,
        header_read_timeout: opts.header_read_timeout,
        drain_grace: opts.drain_grace,
        ..l7::limits::Limits::default()
    };
    let serving = tokio::spawn(server::serve(listeners, proxy, limits, stop_rx));
    shutdown.await;
    tracing::info!("shutting down: no new connections; draining");
    readiness.send_replace(Readiness::Draining);
    let _ = stop_tx.send(true);
    let _ = serving.await;
    Ok(())
}

/// The admin listener. Bound now, so a taken address fails the start; except after a
/// handover in the same namespace, where the old proxy holds it until it exits: then it is
/// bound as soon as that one lets go.
async fn bind_admin(addr: SocketAddr, handed_over: bool) -> Result<impl std::future::Future<Output = TcpListener>> {
    let first = match TcpListener::bind(addr).await {
        Ok(l) => Some(l),
        Err(e) if handed_over && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::info!(%addr, "the admin address is the running proxy's until it exits");
            None
        }
        Err(e) => return Err(e).with_context(|| format!("cannot listen on {addr}")),
    };
    Ok(async move {
        if let Some(l) = first {
            return l;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if let Ok(l) = TcpListener::bind(addr).await {
                tracing::info!(%addr, "admin address taken over");
                return l;
            }
        }
    })
}

pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "interlock".into())
}

/// A snapshot channel fed from a JSON file, re-read when its modification time changes.
fn watch_routes_file(path: PathBuf) -> Result<SnapshotRx> {
    let first = read_snapshot(&path)?;
    let (tx, rx) = watch::channel(Arc::new(first));
    tokio::spawn(async move {
        let mut last = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            if now == last {
                continue;
            }
            last = now;
            match read_snapshot(&path) {
                Ok(s) => {
                    tx.send_replace(Arc::new(s));
                }
                Err(e) => tracing::error!("keeping the current routes: {e:#}"),
            }
        }
    });
    Ok(rx)
}

fn read_snapshot(path: &PathBuf) -> Result<Snapshot> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading routes file {}", path.display()))?;
    let mut s: Snapshot =
        serde_json::from_str(&text).with_context(|| format!("parsing routes file {}", path.display()))?;
    s.version = s.version.max(1);
    Ok(s)
}
