//! Reaching app networks: the agent's container joins the overlay networks of labelled
//! services (`docker network connect`, no restart) and leaves the ones it joined once no
//! route needs them for a while, so operators can remove their networks.
//!
//! `plan` decides (pure, unit-tested); `run` talks to Docker.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use tokio::time::{interval, MissedTickBehavior};

use crate::docker::DockerSource;
use crate::model::SnapshotRx;

/// How long a joined network must be unneeded before the agent leaves it: a service being
/// redeployed must not lose its proxy path for a moment.
const LEAVE_AFTER: Duration = Duration::from_secs(60);
/// A full recheck this often; a failed join is retried every second (a network a node has
/// not instantiated yet answers "not found" for a moment after its service is created).
const RECHECK: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_secs(1);

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

/// Keeps the container `container` on the networks the snapshots name. Runs until the
/// snapshot channel closes.
pub async fn run(mut rx: SnapshotRx, container: String) {
    let mut pinned: Option<BTreeSet<String>> = None;
    let mut unneeded_since = HashMap::new();
    // Failures are logged when they first happen or change, not every recheck.
    let mut reported: BTreeMap<String, String> = BTreeMap::new();
    let mut tick = interval(RETRY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_check: Option<Instant> = None;
    loop {
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = tick.tick() => {
                let pending = reported.keys().any(|k| k != "docker");
                if !pending && last_check.is_some_and(|t| t.elapsed() < RECHECK) {
                    continue;
                }
            }
        }
        last_check = Some(Instant::now());
        let wanted: BTreeSet<String> = rx.borrow_and_update().networks.iter().cloned().collect();
        let source = match DockerSource::connect().await {
            Ok(s) => s,
            Err(e) => {
                report(
                    &mut reported,
                    "docker",
                    format!("cannot reach Docker to join networks: {e:#}"),
                );
                continue;
            }
        };
        let joined: BTreeSet<String> = match source.container_networks(&container).await {
            Ok(n) => n.into_keys().collect(),
            Err(e) => {
                report(&mut reported, "docker", format!("{e:#}"));
                continue;
            }
        };
        reported.remove("docker");
        let pinned = pinned.get_or_insert_with(|| joined.clone());
        let plan = plan(&wanted, &joined, pinned, &mut unneeded_since, Instant::now());
        for network in plan.join {
            match source.connect_network(&network, &container).await {
                Ok(()) => {
                    reported.remove(&network);
                    tracing::info!(%network, "joined network to reach its services");
                }
                Err(e) => report(
                    &mut reported,
                    &network,
                    format!(
                        "cannot join network {network} (its services stay unreachable; make it \
                         --attachable or add it to the interlock stack): {e:#}"
                    ),
                ),
            }
        }
        for network in plan.leave {
            match source.disconnect_network(&network, &container).await {
                Ok(()) => tracing::info!(%network, "left network no route uses any more"),
                Err(e) => report(&mut reported, &network, format!("{e:#}")),
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
