//! The HTTP plane: binds (or takes over) the listening sockets, follows the snapshots into
//! the route table and certificates, serves the admin address, opens the HTTP(S) ports once
//! the first routes are in place, and drains on SIGTERM.
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::HttpConfig;
use crate::l7::admin::{Admin, Readiness};
use crate::l7::front::{listeners, server, tls::TlsFront};
use crate::l7::{self, proxy::Proxy};
use crate::model::SnapshotRx;

/// Serves HTTP(S) and the admin address with routes from `rx` until SIGTERM/Ctrl-C, then
/// drains. The HTTP(S) ports accept only once the first routes are in place (at most
/// `first_routes_wait`); the admin address at once. `status` answers the admin `/status`
/// path; `collectors` add other planes' metrics to `/metrics`.
pub async fn serve(
    opts: HttpConfig,
    rx: SnapshotRx,
    status: Option<l7::admin::StatusFn>,
    collectors: Vec<Box<dyn prometheus_client::collector::Collector>>,
) -> Result<()> {
    // Held to the end: dropping it writes the access lines still queued for a file.
    let _access_log = crate::access_log::configure(opts.access_log_format, &opts.access_log)
        .with_context(|| format!("access_log: opening {:?}", opts.access_log))?;
    let mut registry = prometheus_client::registry::Registry::default();
    for c in collectors {
        registry.register_collector(c);
    }
    registry.register_collector(Box::new(crate::log_writer::DroppedLinesCollector));
    let metrics = Arc::new(l7::metrics::Metrics::new(&mut registry));
    let proxy = Arc::new(
        Proxy::new(metrics, &opts.proxy_id, opts.connect_timeout, opts.upstream_timeout)
            .with_backend_limit(opts.max_backend_requests)
            .with_max_request_body(opts.max_request_body)
            .with_backend_attempts(opts.backend_attempts)
            .with_ejection(opts.ejection)
            .with_https_port(opts.https.map(|a| a.port())),
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
        Some(socket) => Some((socket, Arc::new(TlsFront::with_policy(&opts.tls)?))),
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
    tokio::spawn(l7::route::health::run_with_timeout(
        rx,
        proxy.clone(),
        opts.health_timeout,
    ));
    let (readiness, readiness_rx) = watch::channel(Readiness::WaitingForRoutes);
    let admin = Admin {
        registry: Arc::new(Mutex::new(registry)),
        proxy: proxy.clone(),
        status,
        readiness: readiness_rx,
    };
    let admin_listener = bind_admin(opts.admin, sockets.from_pid.is_some()).await?;
    tokio::spawn(async move { l7::admin::serve(admin_listener.await, admin).await });

    let shutdown = crate::runtime::shutdown_signal();
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
        client_body_timeout: opts.client_body_timeout,
        drain_grace: opts.drain_grace,
        trusted_proxies: std::sync::Arc::new(opts.trusted_proxies.clone()),
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
