//! `interlock run`: the agent an operator deploys. It puts the planes together:
//! control plane (leader or follower) -> snapshots -> L7 router, L4 maps, network joins.
//!
//! - `settings`: flags, environment and TOML resolved into one `Settings`.
//! - `networks`: joining the overlays of labelled services.
//! - `l4_plane`, `local_backends`, `hostns`: the XDP fast path on the host's interfaces;
//!   `l4_metrics`: its counters on `/metrics`.
//! - `status`: what `interlock status` shows.
pub mod hostns;
pub mod l4_metrics;
pub mod l4_plane;
pub mod local_backends;
pub mod networks;
pub mod settings;
pub mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use arc_swap::ArcSwap;
use futures_util::future::OptionFuture;

use crate::commands::control::{self as control_cmd, ControlArgs};
use crate::commands::proxy::{self, HttpOptions};
use crate::l7::proxy::Proxy;
use crate::model::SnapshotRx;
use l4_metrics::L4Counters;
use settings::Settings;
use status::{BackendStatus, RouteStatus, Status};

pub async fn run(s: Settings) -> Result<()> {
    let control = ControlArgs {
        role: s.role,
        snapshot_listen: s.snapshot_listen,
        leader: s.leader.clone(),
        poll_ms: 1000,
        reconcile_s: 30,
        service_cluster: s.service_cluster.clone(),
        stream_tls_dir: s.stream_tls_dir.clone(),
        secrets_dir: "/run/secrets".into(),
    };
    let rx = control_cmd::start(&control).await?;

    // The HTTP plane's snapshots: through the network joiner when it runs.
    let mut http_rx = rx.clone();
    if s.join_networks {
        match crate::docker::local::own_container_id() {
            Some(id) => {
                tracing::info!(container = %id, "joining the networks of labelled services");
                http_rx = networks::start(rx.clone(), id);
            }
            None => tracing::warn!("join_networks is on but the agent is not in a container: not joining networks"),
        }
    }

    let l4_status = Arc::new(ArcSwap::from_pointee(L4Counters::default()));
    let l4_opts = (!s.xdp_interfaces.is_empty()).then(|| l4_plane::L4Options {
        interfaces: s.xdp_interfaces.clone(),
        mode: s.xdp_mode,
        vip: s.l4_vip,
        bpffs: s.bpffs.clone(),
        host_netns: s.host_netns.clone(),
    });
    let l4_start = OptionFuture::from(l4_opts.map(|opts| l4_plane::start(opts, rx.clone(), l4_status.clone())));

    let status_rx = rx.clone();
    let l4_counters = l4_status.clone();
    let status_fn: crate::l7::admin::StatusFn =
        Arc::new(move |proxy: &Proxy| status_json(&status_rx, proxy, &l4_status.load()));
    let http = HttpOptions {
        http: s.http,
        https: s.https,
        admin: s.admin,
        listen_netns: s.listen_netns.clone(),
        handover: s.handover,
        proxy_id: s.proxy_id.clone().unwrap_or_else(proxy::host_name),
        max_connections: s.max_connections,
        max_backend_requests: s.max_backend_requests,
        header_read_timeout: Duration::from_secs(10),
        upstream_timeout: Duration::from_secs(60),
        drain_grace: Duration::from_secs(s.drain_grace_s),
        first_routes_wait: Duration::from_secs(s.first_routes_wait_s),
    };
    let collectors: Vec<Box<dyn prometheus_client::collector::Collector>> =
        vec![Box::new(l4_metrics::L4Collector(l4_counters))];
    // The planes start side by side: loading and attaching the XDP programs takes a few
    // hundred milliseconds, which need not keep the HTTP ports closed after a restart. A
    // failed L4 start still ends the agent.
    let serving = proxy::serve_http(http, http_rx, Some(status_fn), collectors);
    tokio::pin!(serving);
    tokio::select! {
        started = l4_start => {
            started.transpose()?;
            serving.await
        }
        served = &mut serving => served,
    }
}

fn status_json(rx: &SnapshotRx, proxy: &Proxy, l4: &L4Counters) -> String {
    let snapshot = rx.borrow().clone();
    let up: HashMap<_, _> = proxy.backend_states().iter().map(|b| (b.addr, b.available())).collect();
    let status = Status {
        snapshot_version: snapshot.version,
        routes: snapshot
            .http
            .iter()
            .map(|r| RouteStatus {
                service: r.service.name.clone(),
                hosts: r.hosts.clone(),
                path: r.path_prefix.clone(),
                backends: r
                    .backends
                    .iter()
                    .map(|b| BackendStatus {
                        addr: b.addr.to_string(),
                        up: up.get(&b.addr).copied().unwrap_or(true),
                    })
                    .collect(),
            })
            .collect(),
        l4: l4.services.clone(),
        l4_drops: l4.drops.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
    };
    serde_json::to_string(&status).unwrap_or_default()
}
