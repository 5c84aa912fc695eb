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
use crate::model::node::{allowed_networks, plan, NodeRx, NodeTx, NodeView};
use crate::model::SnapshotRx;

/// A full recheck of the networks this often; a failed join is retried sooner (a network a
/// node has not instantiated yet answers "not found" until the first task on it is scheduled
/// there).
const RECHECK: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_millis(250);
/// Local task addresses are read again this often (a container's address on this node can
/// change without a snapshot change).
const GATEWAYS_EVERY: Duration = Duration::from_secs(1);

/// What the watcher reads and does.
#[derive(Debug, Clone, Default)]
pub struct NodeWatch {
    /// Keep this container (the agent's own) on the networks the snapshots name.
    pub join_as: Option<String>,
    /// Read the local tasks' `docker_gwbridge` addresses (the L4 plane needs them).
    pub gateways: bool,
    /// The only networks the agent may join (`allowed_networks`); `None`: all.
    pub allowed: Option<BTreeSet<String>>,
}

/// Starts watching; the view changes as the engine's answers do. With nothing to watch the
/// view stays the default (no gateways, networks not managed). The gateway reads and the
/// joins run as two tasks, so a slow join does not leave L4 on stale local tasks, nor a slow
/// read hold the joins (and the first routes) back.
pub fn start(snapshots: SnapshotRx, watch: NodeWatch) -> NodeRx {
    let initial = NodeView {
        joined: watch.join_as.as_ref().map(|_| BTreeSet::new()),
        ..NodeView::default()
    };
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(initial));
    let tx = Arc::new(tx);
    if watch.gateways {
        tokio::spawn(read_gateways(snapshots.clone(), tx.clone()));
    }
    if let Some(container) = watch.join_as {
        tokio::spawn(keep_networks(snapshots, container, watch.allowed, tx));
    }
    rx
}

/// Whether `last` is `every` ago, or never happened.
fn due(last: Option<Instant>, every: Duration) -> bool {
    last.is_none_or(|t| t.elapsed() >= every)
}

/// Reads the local tasks' gateway addresses on each snapshot and every second, until the
/// snapshot channel closes.
async fn read_gateways(mut rx: SnapshotRx, tx: Arc<NodeTx>) {
    let mut engine = Engine::default();
    let mut tick = interval(GATEWAYS_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
        let version = rx.borrow_and_update().version;
        let read = match engine.source().await {
            Some(source) => source.local_gateway_addrs().await,
            None => Err(anyhow::anyhow!("Docker unreachable")),
        };
        let gateways = match read {
            Ok(g) => {
                engine.reported.remove("gateways");
                Some(g)
            }
            Err(e) => {
                let message = format!("reading local task addresses, keeping the last ones: {e:#}");
                report(&mut engine.reported, "gateways", message);
                engine.source = None;
                None
            }
        };
        // Tried for this version either way: with Docker unreachable the last ones serve.
        tx.send_if_modified(|v| {
            let changed = v.gateways_for != version || gateways.as_ref().is_some_and(|g| *g != v.gateways);
            if changed {
                let v = Arc::make_mut(v);
                v.gateways_for = version;
                if let Some(g) = gateways {
                    v.gateways = g;
                }
            }
            changed
        });
    }
}

/// Keeps the container on the networks the snapshots name, until the channel closes.
async fn keep_networks(mut rx: SnapshotRx, container: String, allowed: Option<BTreeSet<String>>, tx: Arc<NodeTx>) {
    let mut engine = Engine::default();
    let mut joiner = Joiner {
        container,
        joined: BTreeSet::new(),
        pinned: None,
        unneeded_since: HashMap::new(),
    };
    let mut tick = interval(RETRY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last: Option<Instant> = None;
    // Services refused by the allow-list, logged once each (not retried: only a new setting,
    // hence a new agent, changes the answer).
    let mut refused_logged = BTreeSet::new();
    loop {
        let changed = tokio::select! {
            changed = rx.changed() => if changed.is_err() { return } else { true },
            _ = tick.tick() => false,
        };
        if !(changed || engine.retry_pending() || due(last, RECHECK)) {
            continue;
        }
        last = Some(Instant::now());
        let snapshot = rx.borrow_and_update().clone();
        let (wanted, _) = allowed_networks(&snapshot, allowed.as_ref());
        engine.sync_networks(&mut joiner, &wanted, &tx).await;
        if let (Some(allowed), Some(pinned)) = (&allowed, &joiner.pinned) {
            // The networks the stack attached the agent to are reachable whatever the list
            // says: the operator chose them.
            let reachable: BTreeSet<String> = allowed.union(pinned).cloned().collect();
            let (_, refused) = allowed_networks(&snapshot, Some(&reachable));
            for r in &refused {
                if !refused_logged.contains(r) {
                    tracing::warn!("{}", r.message(allowed));
                }
            }
            let lines: Vec<String> = refused.iter().map(|r| r.message(allowed)).collect();
            tx.send_if_modified(|v| {
                let changed = v.refused != lines;
                if changed {
                    Arc::make_mut(v).refused = lines;
                }
                changed
            });
            refused_logged = refused.into_iter().collect();
        }
        tx.send_if_modified(|v| {
            let done = v.joins_for != snapshot.version;
            if done {
                Arc::make_mut(v).joins_for = snapshot.version;
            }
            done
        });
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

/// One task's connection to the engine and what went wrong with it.
#[derive(Default)]
struct Engine {
    /// One connection, kept while it works (connecting negotiates the API version).
    source: Option<DockerSource>,
    /// Failures are logged when they first happen or change, not every recheck.
    reported: BTreeMap<String, String>,
}

impl Engine {
    /// A join or leave failed: retry sooner than the full recheck.
    fn retry_pending(&self) -> bool {
        self.reported.keys().any(|k| k != "docker" && k != "gateways")
    }

    async fn source(&mut self) -> Option<&DockerSource> {
        if self.source.is_none() {
            match DockerSource::connect().await {
                Ok(s) => {
                    self.reported.remove("docker");
                    self.source = Some(s);
                }
                Err(e) => {
                    report(&mut self.reported, "docker", format!("cannot reach Docker: {e:#}"));
                    return None;
                }
            }
        }
        self.source.as_ref()
    }

    /// Joins the `wanted` networks and leaves unneeded ones, publishing the joined set as
    /// read from Docker, then after each join or leave (what is reachable goes out at once).
    async fn sync_networks(&mut self, j: &mut Joiner, wanted: &BTreeSet<String>, tx: &NodeTx) {
        if self.source().await.is_none() {
            return;
        }
        let Some(source) = self.source.as_ref() else { return };
        j.joined = match source.container_networks(&j.container).await {
            Ok(n) => n.into_keys().collect(),
            Err(e) => {
                report(&mut self.reported, "docker", format!("{e:#}"));
                self.source = None;
                return;
            }
        };
        self.reported.remove("docker");
        // A failure about a network neither wanted nor joined any more is moot: it must not
        // keep the quick retries going.
        self.reported
            .retain(|k, _| k == "docker" || wanted.contains(k) || j.joined.contains(k));
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
                    self.reported.remove(&network);
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
