//! Reaching app networks: the agent's container joins the overlay networks of labelled
//! services (`docker network connect`, no restart) and leaves the ones it joined once no
//! route needs them for a while, so operators can remove their networks.
//!
//! The HTTP plane gets the snapshots through here, with the backends of routes on networks
//! not joined yet held back: a request then gets a quick 503 instead of a connect that hangs
//! until its timeout towards an address the agent cannot reach yet. The first routes wait
//! for their joins instead: the HTTP ports open only on them.
//!
//! `plan` and `reachable_only` decide (pure, unit-tested); `run` talks to Docker.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::{interval, MissedTickBehavior};

use crate::docker::DockerSource;
use crate::model::{Snapshot, SnapshotRx, SnapshotTx};

/// How long a joined network must be unneeded before the agent leaves it: a service being
/// redeployed must not lose its proxy path for a moment.
const LEAVE_AFTER: Duration = Duration::from_secs(60);
/// A full recheck this often; a failed join is retried sooner (a network a node has not
/// instantiated yet answers "not found" until the first task on it is scheduled there).
const RECHECK: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_millis(250);
/// The first routes wait at most this long for their networks' joins before going out.
const FIRST_JOINS_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub join: Vec<String>,
    pub leave: Vec<String>,
}

/// What to join and leave. `pinned`: networks the container started with (the stack's own),
/// never left. `unneeded_since`: when each joined network stopped being wanted (updated here).
pub fn plan(
    wanted: &BTreeSet<String>,
    joined: &BTreeSet<String>,
    pinned: &BTreeSet<String>,
    unneeded_since: &mut HashMap<String, Instant>,
    now: Instant,
) -> Plan {
    let join = wanted.difference(joined).cloned().collect();
    unneeded_since.retain(|n, _| joined.contains(n) && !wanted.contains(n));
    let mut leave = vec![];
    for n in joined.iter().filter(|n| !wanted.contains(*n) && !pinned.contains(*n)) {
        let since = *unneeded_since.entry(n.clone()).or_insert(now);
        if now.duration_since(since) >= LEAVE_AFTER {
            leave.push(n.clone());
        }
    }
    Plan { join, leave }
}

/// `snapshot` with no backends on routes whose network is not in `joined`.
pub fn reachable_only(snapshot: &Snapshot, joined: &BTreeSet<String>) -> Snapshot {
    let mut out = snapshot.clone();
    for route in &mut out.http {
        if route.network.as_ref().is_some_and(|n| !joined.contains(n)) {
            route.backends.clear();
        }
    }
    out
}

/// Starts keeping the container `container` on the networks the snapshots name; returns the
/// snapshots for the HTTP plane (see the module comment).
pub fn start(rx: SnapshotRx, container: String) -> SnapshotRx {
    let (tx, out) = tokio::sync::watch::channel(Arc::new(Snapshot::default()));
    tokio::spawn(run(rx, container, tx));
    out
}

/// Publishes what is reachable now, if that changed.
fn publish(tx: &SnapshotTx, snapshot: &Snapshot, joined: &BTreeSet<String>) {
    let reachable = reachable_only(snapshot, joined);
    tx.send_if_modified(|current| {
        if **current == reachable {
            return false;
        }
        *current = Arc::new(reachable);
        true
    });
}

/// Runs until the snapshot channel closes.
async fn run(mut rx: SnapshotRx, container: String, tx: SnapshotTx) {
    let mut joiner = Joiner {
        container,
        source: None,
        joined: BTreeSet::new(),
        pinned: None,
        unneeded_since: HashMap::new(),
        reported: BTreeMap::new(),
    };
    let mut tick = interval(RETRY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_check: Option<Instant> = None;
    loop {
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = tick.tick() => {
                if !joiner.retry_pending() && last_check.is_some_and(|t| t.elapsed() < RECHECK) {
                    continue;
                }
            }
        }
        last_check = Some(Instant::now());
        let snapshot = rx.borrow_and_update().clone();
        let wanted: BTreeSet<String> = snapshot.networks.iter().cloned().collect();
        // Once routes are out, what is reachable goes out first: joins may take a second. The
        // first routes wait for their joins (at most FIRST_JOINS_WAIT): the HTTP ports open on
        // them (`l7::wait_for_first_routes`), and a route on a network still being joined would
        // answer 503 meanwhile.
        if tx.borrow().version > 0 {
            publish(&tx, &snapshot, &joiner.joined);
            joiner.sync(&wanted, |joined| publish(&tx, &snapshot, joined)).await;
        } else {
            // What the joins reached so far, for a Docker that is slow to join.
            let reached = std::sync::Mutex::new(BTreeSet::new());
            let sync = joiner.sync(&wanted, |joined| {
                *reached.lock().unwrap_or_else(|e| e.into_inner()) = joined.clone();
            });
            tokio::pin!(sync);
            if tokio::time::timeout(FIRST_JOINS_WAIT, &mut sync).await.is_err() {
                tracing::warn!(
                    "joining the networks of the first routes takes over {FIRST_JOINS_WAIT:?}: \
                     serving them meanwhile (503 for services on networks not joined yet)"
                );
                let reached = reached.lock().unwrap_or_else(|e| e.into_inner()).clone();
                publish(&tx, &snapshot, &reached);
                sync.await;
            }
        }
        publish(&tx, &snapshot, &joiner.joined);
    }
}

/// The container's network memberships and what went wrong with them.
struct Joiner {
    container: String,
    /// One connection, kept while it works (connecting negotiates the API version).
    source: Option<DockerSource>,
    joined: BTreeSet<String>,
    /// The networks the container started with (the stack's own): never left.
    pinned: Option<BTreeSet<String>>,
    unneeded_since: HashMap<String, Instant>,
    /// Failures are logged when they first happen or change, not every recheck.
    reported: BTreeMap<String, String>,
}

impl Joiner {
    /// A join failed: retry sooner than the full recheck.
    fn retry_pending(&self) -> bool {
        self.reported.keys().any(|k| k != "docker")
    }

    /// Joins the `wanted` networks and leaves unneeded ones; `joined_one` sees the joined set
    /// as read from Docker, then after each join.
    async fn sync(&mut self, wanted: &BTreeSet<String>, mut joined_one: impl FnMut(&BTreeSet<String>)) {
        if self.source.is_none() {
            match DockerSource::connect().await {
                Ok(s) => self.source = Some(s),
                Err(e) => {
                    let message = format!("cannot reach Docker to join networks: {e:#}");
                    report(&mut self.reported, "docker", message);
                    return;
                }
            }
        }
        let Some(source) = self.source.as_ref() else { return };
        self.joined = match source.container_networks(&self.container).await {
            Ok(n) => n.into_keys().collect(),
            Err(e) => {
                report(&mut self.reported, "docker", format!("{e:#}"));
                self.source = None;
                return;
            }
        };
        self.reported.remove("docker");
        joined_one(&self.joined);
        let pinned = self.pinned.get_or_insert_with(|| self.joined.clone());
        let plan = plan(wanted, &self.joined, pinned, &mut self.unneeded_since, Instant::now());
        for network in plan.join {
            match source.connect_network(&network, &self.container).await {
                Ok(()) => {
                    self.reported.remove(&network);
                    tracing::info!(%network, "joined network to reach its services");
                    self.joined.insert(network);
                    joined_one(&self.joined);
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
            match source.disconnect_network(&network, &self.container).await {
                Ok(()) => {
                    tracing::info!(%network, "left network no route uses any more");
                    self.joined.remove(&network);
                }
                Err(e) => report(&mut self.reported, &network, format!("{e:#}")),
            }
        }
    }
}

fn report(reported: &mut BTreeMap<String, String>, key: &str, message: String) {
    if reported.get(key) != Some(&message) {
        tracing::warn!("{message}");
        reported.insert(key.to_string(), message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn joins_what_routes_need() {
        let mut since = HashMap::new();
        let p = plan(
            &set(&["app", "web"]),
            &set(&["lb"]),
            &set(&["lb"]),
            &mut since,
            Instant::now(),
        );
        assert_eq!(p.join, vec!["app".to_string(), "web".to_string()]);
        assert!(p.leave.is_empty());
    }

    #[test]
    fn leaves_only_joined_networks_after_the_grace_time() {
        let mut since = HashMap::new();
        let t0 = Instant::now();
        let joined = set(&["lb", "old"]);
        let pinned = set(&["lb"]);
        let p = plan(&set(&[]), &joined, &pinned, &mut since, t0);
        assert!(p.leave.is_empty(), "not before the grace time");
        let p = plan(&set(&[]), &joined, &pinned, &mut since, t0 + LEAVE_AFTER);
        assert_eq!(p.leave, vec!["old".to_string()], "the stack's own network stays");
    }

    #[test]
    fn routes_on_networks_not_joined_have_no_backends_yet() {
        use crate::model::{Backend, HttpRoute, ServiceRef};
        let backend = Backend {
            addr: "10.0.1.5:80".parse().unwrap(),
            weight: 1,
            id: "t".into(),
        };
        let on = |network: Option<&str>| {
            let mut r = HttpRoute::plain(ServiceRef::default(), vec!["a".into()], "/", vec![backend.clone()]);
            r.network = network.map(String::from);
            r
        };
        let snapshot = Snapshot {
            version: 3,
            http: vec![on(Some("app")), on(Some("web")), on(None)],
            ..Snapshot::default()
        };
        let out = reachable_only(&snapshot, &set(&["web"]));
        let counts: Vec<usize> = out.http.iter().map(|r| r.backends.len()).collect();
        assert_eq!(counts, vec![0, 1, 1]);
        assert_eq!(out.version, 3);
    }

    #[test]
    fn a_network_wanted_again_restarts_its_grace_time() {
        let mut since = HashMap::new();
        let t0 = Instant::now();
        let joined = set(&["old"]);
        plan(&set(&[]), &joined, &set(&[]), &mut since, t0);
        plan(&set(&["old"]), &joined, &set(&[]), &mut since, t0 + LEAVE_AFTER / 2);
        let p = plan(&set(&[]), &joined, &set(&[]), &mut since, t0 + LEAVE_AFTER);
        assert!(p.leave.is_empty());
    }
}
