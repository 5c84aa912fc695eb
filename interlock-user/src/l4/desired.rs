//! What the kernel should hold for a set of L4 services: pure, checked, unit-tested.
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use interlock_common::lb::{VipKey, MAX_BACKENDS, MAX_VIPS, PROTO_TCP, PROTO_UDP};
use thiserror::Error;

use crate::model::{L4Protocol, L4Service};

#[derive(Debug, Error, PartialEq)]
pub enum DesiredError {
    #[error("service {0}: no VIP given and no default VIP configured")]
    NoVip(String),
    #[error("services {0} and {1} both use VIP {2}")]
    DuplicateVip(String, String, String),
    #[error("service {0}: backend {1} is not an IPv4 address (the fast path is IPv4 only)")]
    NotIpv4(String, SocketAddr),
    #[error("service {0}: port 0 is not a usable port")]
    PortZero(String),
    #[error("{0} VIPs requested, the fast path holds at most {MAX_VIPS}")]
    TooManyVips(usize),
    #[error("{0} distinct backends requested, the fast path holds at most {MAX_BACKENDS}")]
    TooManyBackends(usize),
}

/// A backend as written to the kernel: address, port (host order) and weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendSpec {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub weight: u32,
}

/// One VIP with its sorted backends and the service name (for logs and stats).
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredVip {
    pub name: String,
    pub backends: Vec<BackendSpec>,
}

pub fn vip_key(addr: Ipv4Addr, port: u16, proto: L4Protocol) -> VipKey {
    VipKey {
        addr: u32::from(addr).to_be(),
        port: port.to_be(),
        proto: match proto {
            L4Protocol::Tcp => PROTO_TCP,
            L4Protocol::Udp => PROTO_UDP,
        },
        _pad: 0,
    }
}

/// `addr:port/proto` of a key, for logs.
pub fn describe(key: &VipKey) -> String {
    let proto = if key.proto == PROTO_TCP { "tcp" } else { "udp" };
    format!(
        "{}:{}/{proto}",
        Ipv4Addr::from(u32::from_be(key.addr)),
        u16::from_be(key.port)
    )
}

pub fn desired(
    services: &[L4Service],
    default_vip: Option<Ipv4Addr>,
) -> Result<BTreeMap<VipKey, DesiredVip>, DesiredError> {
    let mut out: BTreeMap<VipKey, DesiredVip> = BTreeMap::new();
    let mut distinct = std::collections::HashSet::new();
    for s in services {
        let name = s.service.name.clone();
        let addr = s.vip.or(default_vip).ok_or_else(|| DesiredError::NoVip(name.clone()))?;
        if s.port == 0 {
            return Err(DesiredError::PortZero(name));
        }
        let key = vip_key(addr, s.port, s.protocol);
        let mut backends = Vec::with_capacity(s.backends.len());
        for b in &s.backends {
            let SocketAddr::V4(a) = b.addr else {
                return Err(DesiredError::NotIpv4(name, b.addr));
            };
            if a.port() == 0 {
                return Err(DesiredError::PortZero(name));
            }
            distinct.insert((*a.ip(), a.port()));
            backends.push(BackendSpec {
                addr: *a.ip(),
                port: a.port(),
                weight: b.weight,
            });
        }
        backends.sort();
        backends.dedup_by_key(|b| (b.addr, b.port));
        if let Some(other) = out.get(&key) {
            return Err(DesiredError::DuplicateVip(other.name.clone(), name, describe(&key)));
        }
        out.insert(key, DesiredVip { name, backends });
    }
    if out.len() > MAX_VIPS as usize {
        return Err(DesiredError::TooManyVips(out.len()));
    }
    if distinct.len() > MAX_BACKENDS as usize {
        return Err(DesiredError::TooManyBackends(distinct.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, ServiceRef};

    fn svc(name: &str, vip: Option<&str>, port: u16, backends: &[&str]) -> L4Service {
        L4Service {
            service: ServiceRef {
                id: name.into(),
                name: name.into(),
            },
            vip: vip.map(|v| v.parse().unwrap()),
            port,
            protocol: L4Protocol::Tcp,
            backends: backends
                .iter()
                .map(|b| Backend {
                    addr: b.parse().unwrap(),
                    weight: 1,
                    id: b.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn default_vip_fills_in_and_backends_are_sorted() {
        let d = desired(
            &[svc("a", None, 80, &["10.0.0.3:80", "10.0.0.2:80"])],
            Some("192.0.2.1".parse().unwrap()),
        )
        .unwrap();
        let (k, v) = d.iter().next().unwrap();
        assert_eq!(describe(k), "192.0.2.1:80/tcp");
        assert_eq!(v.backends[0].addr, Ipv4Addr::new(10, 0, 0, 2));
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(
            desired(&[svc("a", None, 80, &[])], None),
            Err(DesiredError::NoVip("a".into()))
        );
        let e = desired(&[svc("a", Some("192.0.2.1"), 80, &["[::1]:80"])], None).unwrap_err();
        assert!(e.to_string().contains("not an IPv4"), "{e}");
        let e = desired(
            &[
                svc("a", Some("192.0.2.1"), 80, &[]),
                svc("b", Some("192.0.2.1"), 80, &[]),
            ],
            None,
        )
        .unwrap_err();
        assert!(matches!(e, DesiredError::DuplicateVip(..)), "{e}");
        let many: Vec<_> = (0..65u16).map(|p| svc("x", Some("192.0.2.1"), p + 1, &[])).collect();
        assert_eq!(desired(&many, None), Err(DesiredError::TooManyVips(65)));
    }
}
