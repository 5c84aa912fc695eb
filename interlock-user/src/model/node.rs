//! This node as the data planes see it: the view its Docker engine gives (local tasks'
//! `docker_gwbridge` addresses, the networks the agent's container is on), published like the
//! snapshot by one watcher (`docker::node`), and the pure functions that combine it with a
//! snapshot for each plane: `localize` (L4), `reachable_only` (HTTP), and `plan` (which
//! networks the watcher joins and leaves).
//!
//! Task addresses in a snapshot are overlay addresses, which the host's namespace (where XDP
//! runs) cannot route to. Every local task also has an address on `docker_gwbridge`, which
//! the host reaches directly; so each node balances L4 flows across its own tasks of the
//! service (like Kubernetes' `externalTrafficPolicy: Local`).
use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{L4Service, Snapshot};

/// How long a joined network must be unneeded before the agent leaves it: a service being
/// redeployed must not lose its proxy path for a moment.
pub const LEAVE_AFTER: Duration = Duration::from_secs(60);

/// A local task's address on `docker_gwbridge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayAddr {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

/// What this node's engine says, as last read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeView {
    /// Task id -> `docker_gwbridge` address, for the swarm tasks running on this node.
    pub gateways: HashMap<String, GatewayAddr>,
    /// The snapshot version the gateways were last read (or tried) for: the L4 plane applies
    /// a snapshot only with gateways read for it, so a task it names is not left out for a
    /// second, nor every service emptied before the first read after a restart.
    pub gateways_for: u64,
    /// The networks the agent's container is on; `None` when the agent joins none (not asked
    /// to, or not in a container).
    pub joined: Option<BTreeSet<String>>,
    /// The snapshot version the joins were last tried for (the first routes wait for it).
    pub joins_for: u64,
    /// Why services are not served here because the allow-list (`allowed_networks`) leaves
    /// their network out: one line each, as logged, for `interlock status`.
    pub refused: Vec<String>,
}

pub type NodeRx = tokio::sync::watch::Receiver<Arc<NodeView>>;
pub type NodeTx = tokio::sync::watch::Sender<Arc<NodeView>>;

/// `services` with each backend moved to its task's local `docker_gwbridge` address; backends
/// of tasks on other nodes are left out (a service with none here keeps its VIP, with no
/// backends, so its packets are counted and dropped rather than passed to the host).
pub fn localize(services: &[L4Service], local: &HashMap<String, GatewayAddr>) -> Vec<L4Service> {
    services
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.backends = s
                .backends
                .iter()
                .filter_map(|b| {
                    let gw = local.get(&b.id)?;
                    let mut b = b.clone();
                    b.addr = SocketAddr::new(gw.ip.into(), b.addr.port());
                    Some(b)
                })
                .collect();
            s
        })
        .collect()
}

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

/// A service whose network the allow-list (`allowed_networks`) leaves out: the network is
/// not joined, so the service's routes have no backends here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refused {
    pub service: String,
    pub network: String,
}

impl Refused {
    /// The one line an operator reads: which service, which network, which setting.
    pub fn message(&self, allowed: &BTreeSet<String>) -> String {
        let list: Vec<&str> = allowed.iter().map(String::as_str).collect();
        format!(
            "service {}: network {} is not in allowed_networks (--allowed-networks / \
             INTERLOCK_ALLOWED_NETWORKS: {}): not joined, the service's routes are not served here",
            self.service,
            self.network,
            list.join(",")
        )
    }
}

/// The networks of `snapshot` the agent joins, and the services it refuses: with an
/// allow-list (`Some`), only the networks on it; without one, all. Refusals come once per
/// service and network, HTTP and L4 routes alike, sorted.
pub fn allowed_networks(snapshot: &Snapshot, allowed: Option<&BTreeSet<String>>) -> (BTreeSet<String>, Vec<Refused>) {
    let Some(allowed) = allowed else {
        return (snapshot.networks.iter().cloned().collect(), vec![]);
    };
    let wanted = snapshot
        .networks
        .iter()
        .filter(|n| allowed.contains(*n))
        .cloned()
        .collect();
    let refused: BTreeSet<Refused> = snapshot
        .http
        .iter()
        .filter_map(|r| {
            let network = r.network.as_ref()?;
            (!allowed.contains(network)).then(|| Refused {
                service: r.service.name.clone(),
                network: network.clone(),
            })
        })
        .collect();
    (wanted, refused.into_iter().collect())
}

/// What the HTTP plane serves: `snapshot` with no backends on routes whose network the
/// agent has not joined (a quick 503 instead of a connect hanging until its timeout). A node
/// that does not join networks (`joined: None`) reaches what the snapshot says.
pub fn reachable_only(snapshot: &Snapshot, node: &NodeView) -> Snapshot {
    let mut out = snapshot.clone();
    let Some(joined) = &node.joined else { return out };
    for route in &mut out.http {
        if route.network.as_ref().is_some_and(|n| !joined.contains(n)) {
            route.backends.clear();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, L4Protocol, ServiceRef};

    fn backend(id: &str, addr: &str) -> Backend {
        Backend {
            addr: addr.parse().unwrap(),
            weight: 1,
            id: id.into(),
        }
    }

    #[test]
    fn keeps_local_tasks_at_their_gateway_address() {
        let services = vec![L4Service {
            service: ServiceRef {
                id: "s".into(),
                name: "db".into(),
            },
            vip: None,
            port: 5432,
            protocol: L4Protocol::Tcp,
            backends: vec![backend("t1", "10.0.1.5:5432"), backend("t2", "10.0.1.6:5432")],
        }];
        let local = HashMap::from([(
            "t2".to_string(),
            GatewayAddr {
                ip: Ipv4Addr::new(172, 18, 0, 7),
                mac: [0; 6],
            },
        )]);
        let out = localize(&services, &local);
        assert_eq!(out[0].backends, vec![backend("t2", "172.18.0.7:5432")]);
        assert_eq!(out[0].port, 5432);
        let none = localize(&services, &HashMap::new());
        assert!(none[0].backends.is_empty(), "remote tasks are not reachable from here");
    }

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
        use crate::model::HttpRoute;
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
        let node = NodeView {
            joined: Some(set(&["web"])),
            ..NodeView::default()
        };
        let out = reachable_only(&snapshot, &node);
        assert_eq!(
            reachable_only(&snapshot, &NodeView::default()),
            snapshot,
            "not joining: all reachable"
        );
        let counts: Vec<usize> = out.http.iter().map(|r| r.backends.len()).collect();
        assert_eq!(counts, vec![0, 1, 1]);
        assert_eq!(out.version, 3);
    }

    #[test]
    fn the_allow_list_keeps_other_networks_out_and_names_their_services() {
        use crate::model::HttpRoute;
        let on = |service: &str, network: &str| {
            let mut r = HttpRoute::plain(
                ServiceRef {
                    id: service.into(),
                    name: service.into(),
                },
                vec![format!("{service}.example")],
                "/",
                vec![],
            );
            r.network = Some(network.into());
            r
        };
        let snapshot = Snapshot {
            version: 1,
            http: vec![on("web", "front"), on("admin", "secret"), on("admin-api", "secret")],
            networks: vec!["front".into(), "secret".into()],
            ..Snapshot::default()
        };
        let (wanted, refused) = allowed_networks(&snapshot, None);
        assert_eq!(wanted, set(&["front", "secret"]), "no list: every network");
        assert!(refused.is_empty());
        let allowed = set(&["front", "other"]);
        let (wanted, refused) = allowed_networks(&snapshot, Some(&allowed));
        assert_eq!(wanted, set(&["front"]));
        let services: Vec<&str> = refused.iter().map(|r| r.service.as_str()).collect();
        assert_eq!(services, vec!["admin", "admin-api"]);
        let message = refused[0].message(&allowed);
        for part in [
            "service admin",
            "network secret",
            "allowed_networks",
            "INTERLOCK_ALLOWED_NETWORKS",
            "front,other",
        ] {
            assert!(message.contains(part), "{part} missing in {message}");
        }
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
