//! What `interlock status` shows: the agent's routes, backends and L4 counters. The agent
//! serves it as JSON on the admin address (`/status`); the CLI prints it as tables.
use std::collections::HashMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::l4::metrics::L4Counters;
use crate::l7::proxy::Proxy;
use crate::model::Snapshot;

/// The `/status` JSON: the routes the HTTP plane serves (`snapshot`, as combined with the
/// node view), whether each backend is up in the proxy, and the L4 plane's counters.
/// `not_served`: services this agent does not serve by its settings (the network allow-list).
pub fn json(snapshot: &Snapshot, proxy: &Proxy, l4: &L4Counters, not_served: Vec<String>) -> String {
    let up: HashMap<_, _> = proxy.backend_states().iter().map(|b| (b.addr, b.available())).collect();
    let status = Status {
        snapshot_version: snapshot.version,
        routes: snapshot
            .http
            .iter()
            .map(|r| RouteStatus {
                service: r.service.name.clone(),
                hosts: r.hosts.clone(),
                default_backend: r.default_backend,
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
        not_served,
    };
    serde_json::to_string(&status).unwrap_or_default()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub snapshot_version: u64,
    pub routes: Vec<RouteStatus>,
    pub l4: Vec<L4Status>,
    /// Packets to a VIP the XDP path dropped, by reason.
    #[serde(default)]
    pub l4_drops: std::collections::BTreeMap<String, u64>,
    /// Services not served by this agent's settings, one line each (why, naming the setting).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_served: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteStatus {
    pub service: String,
    pub hosts: Vec<String>,
    /// The route for hosts nothing else claims (`com.docker.lb.default_backend`).
    #[serde(default)]
    pub default_backend: bool,
    pub path: String,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub addr: String,
    /// False while ejected after connect failures or failing its health check.
    pub up: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct L4Status {
    /// `vip:port/proto`.
    pub listener: String,
    pub service: String,
    pub backends: Vec<String>,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

/// A route's hosts, `*` added for the default backend (it answers the hosts nobody claims).
fn hosts_column(r: &RouteStatus) -> String {
    match (r.default_backend, r.hosts.is_empty()) {
        (false, _) => r.hosts.join(","),
        (true, true) => "* (default)".into(),
        (true, false) => format!("{},* (default)", r.hosts.join(",")),
    }
}

impl Status {
    /// Two plain-text tables, as `interlock status` prints them.
    pub fn to_table(&self) -> String {
        let mut out = format!("snapshot version {}\n\nHTTP ROUTES\n", self.snapshot_version);
        let mut rows = vec![vec!["SERVICE".into(), "HOSTS".into(), "PATH".into(), "BACKENDS".into()]];
        for r in &self.routes {
            let backends: Vec<String> = r
                .backends
                .iter()
                .map(|b| format!("{}{}", b.addr, if b.up { "" } else { " (down)" }))
                .collect();
            rows.push(vec![
                r.service.clone(),
                hosts_column(r),
                r.path.clone(),
                if backends.is_empty() {
                    "-".into()
                } else {
                    backends.join(" ")
                },
            ]);
        }
        out.push_str(&columns(&rows));
        if !self.not_served.is_empty() {
            out.push_str("\nNOT SERVED\n");
            for line in &self.not_served {
                let _ = writeln!(out, "{line}");
            }
        }
        out.push_str("\nL4 SERVICES\n");
        let mut rows = vec![vec![
            "LISTENER".into(),
            "SERVICE".into(),
            "BACKENDS".into(),
            "PACKETS".into(),
            "BYTES".into(),
            "NEW FLOWS".into(),
        ]];
        for s in &self.l4 {
            rows.push(vec![
                s.listener.clone(),
                s.service.clone(),
                if s.backends.is_empty() {
                    "-".into()
                } else {
                    s.backends.join(" ")
                },
                s.packets.to_string(),
                s.bytes.to_string(),
                s.new_flows.to_string(),
            ]);
        }
        out.push_str(&columns(&rows));
        let drops: Vec<String> = self
            .l4_drops
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        if !drops.is_empty() {
            let _ = writeln!(
                out,
                "
L4 DROPS {}",
                drops.join(" ")
            );
        }
        out
    }
}

/// Left-aligned columns separated by two spaces.
fn columns(rows: &[Vec<String>]) -> String {
    let width = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..width)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_routes_and_l4_counters_as_tables() {
        let status = Status {
            snapshot_version: 7,
            routes: vec![
                RouteStatus {
                    service: "web".into(),
                    hosts: vec!["app.example.org".into()],
                    default_backend: false,
                    path: "/".into(),
                    backends: vec![
                        BackendStatus {
                            addr: "10.0.1.5:80".into(),
                            up: true,
                        },
                        BackendStatus {
                            addr: "10.0.1.6:80".into(),
                            up: false,
                        },
                    ],
                },
                RouteStatus {
                    service: "dflt".into(),
                    hosts: vec![],
                    default_backend: true,
                    path: "/".into(),
                    backends: vec![],
                },
            ],
            l4: vec![L4Status {
                listener: "192.0.2.1:5432/tcp".into(),
                service: "db".into(),
                backends: vec![],
                packets: 12,
                bytes: 3400,
                new_flows: 2,
            }],
            l4_drops: [("flow_table".to_string(), 4), ("fragment".to_string(), 0)].into(),
            not_served: vec!["service admin: network secret is not in allowed_networks (...)".into()],
        };
        let t = status.to_table();
        assert!(
            t.ends_with("\nL4 DROPS flow_table=4\n"),
            "only reasons that happened: {t}"
        );
        assert!(t.starts_with("snapshot version 7\n"), "{t}");
        assert!(
            t.contains("\nNOT SERVED\nservice admin: network secret is not in allowed_networks (...)\n\nL4 SERVICES"),
            "{t}"
        );
        assert!(
            t.contains("web      app.example.org  /     10.0.1.5:80 10.0.1.6:80 (down)"),
            "{t}"
        );
        assert!(t.contains("\ndflt     * (default)      /     -\n"), "{t}");
        assert!(
            t.contains("192.0.2.1:5432/tcp  db       -         12       3400   2"),
            "{t}"
        );
        let json = serde_json::to_string(&status).unwrap();
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), status);
    }
}
