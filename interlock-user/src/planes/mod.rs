//! The wiring: each plane started from its plain config (`config`), and `interlock run`'s
//! agent, which puts them together:
//!
//! control plane (leader or follower) -> snapshots ─┬─> `view` (+ node view) -> HTTP plane
//! node watcher (`docker::node`) -> node view ──────┴─> L4 plane (+ node view)
//!
//! - `control`: the control plane in its role; `http`: the HTTP plane; `l4`: the XDP fast
//!   path on the host's interfaces; `view`: what the HTTP plane serves; `status`: what
//!   `interlock status` shows, from the same values the planes use.
//!
//! The data planes never ask Docker: what they need of this node comes as the node view.
pub mod control;
pub mod http;
pub mod l4;
pub mod status;
pub mod view;

use std::sync::Arc;

use anyhow::Result;
use arc_swap::ArcSwap;
use futures_util::future::OptionFuture;

use crate::config::Settings;
use crate::docker::node::{self as node_watch, NodeWatch};
use crate::l7::proxy::Proxy;
use l4::metrics::L4Counters;

/// `interlock run`: every plane, until SIGTERM (then the HTTP plane drains).
pub async fn run_agent(s: Settings) -> Result<()> {
    let rx = control::start(&s.control).await?;

    let join_as = if s.agent.join_networks {
        match crate::docker::local::own_container_id() {
            Some(id) => {
                tracing::info!(container = %id, "joining the networks of labelled services");
                Some(id)
            }
            None => {
                tracing::warn!("join_networks is on but the agent is not in a container: not joining networks");
                None
            }
        }
    } else {
        None
    };
    let l4_on = !s.l4.interfaces.is_empty();
    let node = node_watch::start(
        rx.clone(),
        NodeWatch {
            join_as,
            gateways: l4_on,
            allowed: s.agent.allowed_networks.clone(),
        },
    );
    let http_rx = view::http_snapshots(rx.clone(), node.clone());
    let status_node = node.clone();

    let l4_status = Arc::new(ArcSwap::from_pointee(L4Counters::default()));
    let l4_config = l4_on.then(|| s.l4.clone());
    let l4_start = OptionFuture::from(l4_config.map(|c| l4::start(c, rx.clone(), node, l4_status.clone())));

    let status_rx = http_rx.clone();
    let l4_counters = l4_status.clone();
    let status_fn: crate::l7::admin::StatusFn = Arc::new(move |proxy: &Proxy| {
        // Cloned out, so the combining task's next send does not wait for the JSON.
        let snapshot = status_rx.borrow().clone();
        let refused = status_node.borrow().refused.clone();
        status::json(&snapshot, proxy, &l4_status.load(), refused)
    });
    let collectors: Vec<Box<dyn prometheus_client::collector::Collector>> =
        vec![Box::new(l4::metrics::L4Collector(l4_counters))];
    // The planes start side by side: loading and attaching the XDP programs takes a few
    // hundred milliseconds, which need not keep the HTTP ports closed after a restart. A
    // failed L4 start still ends the agent.
    let serving = http::serve(s.http, http_rx, Some(status_fn), collectors);
    tokio::pin!(serving);
    tokio::select! {
        started = l4_start => {
            started.transpose()?;
            serving.await
        }
        served = &mut serving => served,
    }
}
