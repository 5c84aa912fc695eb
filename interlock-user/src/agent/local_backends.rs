//! Which L4 backends this node's fast path can reach, and at what address.
//!
//! Task addresses in a snapshot are overlay addresses, which the host's namespace (where XDP
//! runs) cannot route to. Every local task also has an address on `docker_gwbridge`, which
//! the host reaches directly; so each node balances L4 flows across its own tasks of the
//! service (like Kubernetes' `externalTrafficPolicy: Local`). Pure, unit-tested.
use std::collections::HashMap;
use std::net::SocketAddr;

use crate::docker::local::GatewayAddr;
use crate::model::L4Service;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, L4Protocol, ServiceRef};
    use std::net::Ipv4Addr;

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
}
