//! The node watcher: the one place that asks this node's engine what the data planes need
//! (works on workers too) and acts on it. It reads the local tasks' `docker_gwbridge`
//! addresses (for L4), keeps the agent's container on the overlay networks the snapshots
//! name (`docker network connect`, no restart; networks it joined are left once no route
//! needs them for a while, so operators can remove them), and publishes what it saw as a
//! `NodeView`. What to join and how a view combines with a snapshot is decided in
//! `model::node` (pure).
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::{interval, MissedTickBehavior};

use super::DockerSource;
use crate::model::node::{plan, NodeRx, NodeTx, NodeView};
use crate::model::SnapshotRx;

/// A full recheck of the networks this often; a failed join is retried sooner (a network a
/// node has not instantiated yet answers "not found" until the first task on it is scheduled
/// there).
const RECHECK: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_millis(250);
/// Local task addresses are read again this often (tasks start and stop without a snapshot
/// change on this node's side).
const GATEWAYS_EVERY: Duration = Duration::from_secs(1);

/// What the watcher reads and does.
#[derive(Debug, Clone, Default)]
pub struct NodeWatch {
    /// Keep this container (the agent's own) on the networks the snapshots name.
    pub join_as: Option<String>,
    /// Read the local tasks' `docker_gwbridge` addresses (the L4 plane needs them).
    pub gateways: bool,
}

/// Starts watching; the view changes as the engine's answers do. With nothing to watch the
/// view stays the default (no gateways, networks not managed).
pub fn start(snapshots: SnapshotRx, watch: NodeWatch) -> NodeRx {
    let initial = NodeView {
        joined: watch.join_as.as_ref().map(|_| BTreeSet::new()),
        ..NodeView::default()
    };
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(initial));
    if watch.join_as.is_some() || watch.gateways {
        tokio::spawn(run(snapshots, watch, tx));
    }
    rx
}

/// Runs until the snapshot channel closes.
async fn run(mut rx: SnapshotRx, watch: NodeWatch, tx: NodeTx) {
    let mut node = Node {
        source: None,
        joiner: watch.join_as.map(|container| Joiner {
            container,
            joined: BTreeSet::new(),
            pinned: None,
            unneeded_since: HashMap::new(),
        }),
        reported: BTreeMap::new(),
    };
    let mut tick = interval(RETRY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut last_joins, mut last_gateways): (Option<Instant>, Option<Instant>) = (None, None);
    loop {
        let changed = tokio::select! {
            changed = rx.changed() => if changed.is_err() { return } else { true },
            _ = tick.tick() => false,
        };
        let snapshot = rx.borrow_and_update().clone();
        let due = |last: Option<Instant>, every: Duration| last.is_none_or(|t| t.elapsed() >= every);
        if watch.gateways && (changed || due(last_gateways, GATEWAYS_EVERY)) {
            last_gateways = Some(Instant::now());
            node.read_gateways(&tx).await;
        }
        if node.joiner.is_some() && (changed || node.retry_pending() || due(last_joins, RECHECK)) {
            last_joins = Some(Instant::now());
            let wanted: BTreeSet<String> = snapshot.networks.iter().cloned().collect();
            node.sync_networks(&wanted, &tx).await;
            tx.send_if_modified(|v| {
                let done = v.joins_for != snapshot.version;
                if done {
                    Arc::make_mut(v).joins_for = snapshot.version;
                }
                done
            });
        }
    }
}

/// The container's network memberships.
struct Joiner {
    container: String,
    joined: BTreeSet<String>,
    /// The networks the container started with (the stack's own): never left.
    pinned: Option<BTreeSet<String>>,
    unneeded_since: HashMap<String, Instant>,
}

struct Node {
    /// One connection, kept while it works (connecting negotiates the API version).
    source: Option<DockerSource>,
    joiner: Option<Joiner>,
    /// Failures are logged when they first happen or change, not every recheck.
    reported: BTreeMap<String, String>,
}

impl Node {
    /// A join failed: retry sooner than the full recheck.
    fn retry_pending(&self) -> bool {
        self.reported.keys().any(|k| k != "docker" && k != "gateways")
    }

    async fn source(&mut self) -> Option<&DockerSource> {
        if self.source.is_none() {
            match DockerSource::connect().await {
                Ok(s) => self.source = Some(s),
                Err(e) => {
                    report(&mut self.reported, "docker", format!("cannot reach Docker: {e:#}"));
                    return None;
                }
            }
        }
        self.source.as_ref()
    }

    async fn read_gateways(&mut self, tx: &NodeTx) {
        let Some(source) = self.source().await else { return };
        match source.local_gateway_addrs().await {
            Ok(gateways) => {
                self.reported.remove("gateways");
                tx.send_if_modified(|v| {
                    let changed = v.gateways != gateways;
                    if changed {
                        Arc::make_mut(v).gateways = gateways;
                    }
                    changed
                });
            }
            Err(e) => {
                let message = format!("reading local task addresses, keeping the last ones: {e:#}");
                report(&mut self.reported, "gateways", message);
                self.source = None;
            }
        }
    }

    /// Joins the `wanted` networks and leaves unneeded ones, publishing the joined set as
    /// read from Docker, then after each join (what is reachable goes out at once).
    async fn sync_networks(&mut self, wanted: &BTreeSet<String>, tx: &NodeTx) {
        if self.source().await.is_none() {
            return;
        }
        let (Some(source), Some(j)) = (self.source.as_ref(), self.joiner.as_mut()) else {
            return;
        };
        j.joined = match source.container_networks(&j.container).await {
            Ok(n) => n.into_keys().collect(),
            Err(e) => {
                report(&mut self.reported, "docker", format!("{e:#}"));
                self.source = None;
                return;
            }
        };
        self.reported.remove("docker");
        publish_joined(tx, &j.joined);
        let pinned = j.pinned.get_or_insert_with(|| j.joined.clone());
        let plan = plan(wanted, &j.joined, pinned, &mut j.unneeded_since, Instant::now());
        for network in plan.join {
            match source.connect_network(&network, &j.container).await {
                Ok(()) => {
                    self.reported.remove(&network);
                    tracing::info!(%network, "joined network to reach its services");
                    j.joined.insert(network);
                    publish_joined(tx, &j.joined);
                }
                Err(e) => report(
                    &mut self.reported,
                    &network,
                    format!(
                        "cannot join network {network} (its services stay unreachable; make it \
                         --attachable or add it to the interlock stack): {e:#}"
                    ),
                ),
            }
        }
        for network in plan.leave {
            match source.disconnect_network(&network, &j.container).await {
                Ok(()) => {
                    tracing::info!(%network, "left network no route uses any more");
                    j.joined.remove(&network);
                    publish_joined(tx, &j.joined);
                }
                Err(e) => report(&mut self.reported, &network, format!("{e:#}")),
            }
        }
    }
}

fn publish_joined(tx: &NodeTx, joined: &BTreeSet<String>) {
    tx.send_if_modified(|v| {
        let changed = v.joined.as_ref() != Some(joined);
        if changed {
            Arc::make_mut(v).joined = Some(joined.clone());
        }
        changed
    });
}

fn report(reported: &mut BTreeMap<String, String>, key: &str, message: String) {
    if reported.get(key) != Some(&message) {
        tracing::warn!("{message}");
        reported.insert(key.to_string(), message);
    }
}
