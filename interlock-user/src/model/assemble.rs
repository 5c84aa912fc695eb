//! From what Docker says (services, tasks, networks, secrets) to the routes of a snapshot.
//! Pure: no I/O; `docker/` reads the cluster, `control/` calls this and publishes.
//!
//! Rules (documented in the README):
//! - each service's labels are parsed alone; a service with a bad label is left out (with one
//!   error naming service, label, value and reason), unless it had a good configuration
//!   before: then that last good configuration stays (with current tasks), so a typo in an
//!   update does not take an application down;
//! - conflicts: two services claiming the same host and path prefix with different
//!   treatment (TLS mode, TLS to the backends, ssl_only, rewrite, stickiness) or the same L4 (vip, port, protocol),
//!   or two default backends: the older service (creation time, then id) keeps it, the newer
//!   is left out and named in an error. Same treatment is a canary split: both are kept.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use super::labels::{self, BackendMode, LabelError, ServiceLabels};
use super::snapshot::{Backend, BackendTls, BackendVerify, HttpRoute, L4Service, ServiceRef, TlsMode};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceInfo {
    pub id: String,
    pub name: String,
    /// RFC 3339 as Docker writes it; orders services for conflict resolution.
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    /// Network ids the service's tasks are attached to (`Spec.TaskTemplate.Networks`).
    pub networks: Vec<String>,
    /// The service's virtual IP per network id (`Endpoint.VirtualIPs`).
    pub vips: Vec<(String, Ipv4Addr)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskInfo {
    pub id: String,
    pub service_id: String,
    /// True when the task's state and desired state are both `running`.
    pub running: bool,
    /// Still running, but swarm wants it gone (desired state `shutdown`): routed only while
    /// its service has no running task (see `Assembler::assemble`).
    pub draining: bool,
    /// The task's address per network id.
    pub addresses: Vec<(String, Ipv4Addr)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkInfo {
    pub id: String,
    pub name: String,
}

/// Everything read from Docker for one snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterState {
    pub services: Vec<ServiceInfo>,
    pub tasks: Vec<TaskInfo>,
    pub networks: Vec<NetworkInfo>,
    /// Names of the swarm's secrets (for ssl_cert / ssl_key).
    pub secrets: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Only services whose `service_cluster` label equals this (None: services without the label).
    pub service_cluster: Option<String>,
    /// Where secrets are mounted in the agent's container: `<dir>/<secret name>`.
    pub secrets_dir: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            service_cluster: None,
            secrets_dir: PathBuf::from("/run/secrets"),
        }
    }
}

/// A problem with one service, for one log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub service: String,
    pub error: LabelError,
    /// True when the service's last good configuration stays in place.
    pub kept_last_good: bool,
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let effect = if self.kept_last_good {
            "keeping its last good routes"
        } else {
            "service not routed"
        };
        write!(f, "service {}: {} ({effect})", self.service, self.error)
    }
}

/// Bounds that keep one cluster (or one runaway service) from growing the proxy without
/// limit; what goes over is reported like a bad label, for that service only.
pub const MAX_HTTP_ROUTES: usize = 10_000;
pub const MAX_BACKENDS_PER_SERVICE: usize = 1_000;
/// The names these bounds go by in `Snapshot::limits_hit` and in metrics.
pub const LIMIT_HTTP_ROUTES: &str = "max_http_routes";
pub const LIMIT_BACKENDS_PER_SERVICE: &str = "max_backends_per_service";

/// The routing part of a snapshot, plus what went wrong.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assembly {
    pub http: Vec<HttpRoute>,
    pub l4: Vec<L4Service>,
    pub networks: Vec<String>,
    pub errors: Vec<ServiceError>,
    pub warnings: Vec<ServiceError>,
    /// Services cut short by a bound, by bound name.
    pub limits_hit: BTreeMap<String, u32>,
}

/// Turns cluster states into routes; remembers each service's last good labels.
#[derive(Debug, Default)]
pub struct Assembler {
    pub options: Options,
    last_good: HashMap<String, ServiceLabels>,
}

/// The tasks to route to, by service: the running ones; for a service with none, the ones
/// still running that swarm is replacing. When a node misses its heartbeats (an engine hung
/// for 30 s) swarm reschedules every task on it: the old containers run on for seconds until
/// the new ones start, and sending to them beats answering 503. A stop-first rolling update
/// of one replica is the same case.
fn routable_tasks(all: &[TaskInfo]) -> HashMap<&str, Vec<&TaskInfo>> {
    let mut running: HashMap<&str, Vec<&TaskInfo>> = HashMap::new();
    let mut draining: HashMap<&str, Vec<&TaskInfo>> = HashMap::new();
    for task in all {
        let into = match (task.running, task.draining) {
            (true, _) => &mut running,
            (false, true) => &mut draining,
            (false, false) => continue,
        };
        into.entry(task.service_id.as_str()).or_default().push(task);
    }
    for (service, tasks) in draining {
        running.entry(service).or_insert(tasks);
    }
    running
}

impl Assembler {
    pub fn new(options: Options) -> Assembler {
        Assembler {
            options,
            last_good: HashMap::new(),
        }
    }

    pub fn assemble(&mut self, state: &ClusterState) -> Assembly {
        let mut out = Assembly::default();
        let mut services: Vec<&ServiceInfo> = state.services.iter().collect();
        services.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        let tasks = routable_tasks(&state.tasks);
        let mut claims = Claims::default();
        let mut networks = BTreeSet::new();
        let live: BTreeSet<&str> = services.iter().map(|s| s.id.as_str()).collect();
        self.last_good.retain(|id, _| live.contains(id.as_str()));

        for svc in services {
            let (parsed, warnings) = labels::parse(&svc.labels);
            out.warnings.extend(warnings.into_iter().map(|error| ServiceError {
                service: svc.name.clone(),
                error,
                kept_last_good: false,
            }));
            let resolved = parsed.and_then(|l| match l {
                Some(l) => self.resolve(svc, l, state).map(Some),
                None => Ok(None),
            });
            let labels = match resolved {
                Ok(Some(l)) => {
                    self.last_good.insert(svc.id.clone(), l.clone());
                    l
                }
                Ok(None) => {
                    self.last_good.remove(&svc.id);
                    continue;
                }
                Err(errors) => {
                    let last = self.last_good.get(&svc.id).cloned();
                    out.errors.extend(errors.into_iter().map(|error| ServiceError {
                        service: svc.name.clone(),
                        error,
                        kept_last_good: last.is_some(),
                    }));
                    match last {
                        Some(l) => l,
                        None => continue,
                    }
                }
            };
            if labels.service_cluster != self.options.service_cluster {
                continue;
            }
            let Some((network_id, network_name)) = pick_network(svc, &labels, state).ok() else {
                continue;
            };
            let service = ServiceRef {
                id: svc.id.clone(),
                name: svc.name.clone(),
            };
            let mut addrs = backend_addrs(
                svc,
                &labels,
                &network_id,
                tasks.get(svc.id.as_str()).map(Vec::as_slice).unwrap_or(&[]),
            );
            if addrs.len() > MAX_BACKENDS_PER_SERVICE {
                out.warnings.push(ServiceError {
                    service: svc.name.clone(),
                    error: LabelError::new(
                        "tasks",
                        &addrs.len().to_string(),
                        format!("only the first {MAX_BACKENDS_PER_SERVICE} running tasks are routed"),
                    ),
                    kept_last_good: false,
                });
                addrs.truncate(MAX_BACKENDS_PER_SERVICE);
                *out.limits_hit.entry(LIMIT_BACKENDS_PER_SERVICE.into()).or_default() += 1;
            }
            if labels.http.is_some() && out.http.len() >= MAX_HTTP_ROUTES {
                out.errors.push(ServiceError {
                    service: svc.name.clone(),
                    error: LabelError::new(
                        labels::HOSTS,
                        "",
                        format!("the proxy holds at most {MAX_HTTP_ROUTES} HTTP routes: this service is not routed"),
                    ),
                    kept_last_good: false,
                });
                *out.limits_hit.entry(LIMIT_HTTP_ROUTES.into()).or_default() += 1;
                continue;
            }
            let before = (out.http.len(), out.l4.len());
            if let Some(http) = &labels.http {
                let route = self.http_route(&service, http, &network_name, &addrs);
                if let Err(error) = claims.claim_http(&route) {
                    out.errors.push(ServiceError {
                        service: svc.name.clone(),
                        error,
                        kept_last_good: false,
                    });
                    continue;
                }
                out.http.push(route);
            }
            if let Some(l4) = &labels.l4 {
                let l4_service = L4Service {
                    service: service.clone(),
                    vip: l4.vip,
                    port: l4.port,
                    protocol: l4.protocol,
                    backends: addrs.iter().map(|(id, ip)| backend(id, *ip, l4.target_port)).collect(),
                };
                if let Err(error) = claims.claim_l4(&l4_service) {
                    out.http.truncate(before.0);
                    out.errors.push(ServiceError {
                        service: svc.name.clone(),
                        error,
                        kept_last_good: false,
                    });
                    continue;
                }
                out.l4.push(l4_service);
            }
            networks.insert(network_name);
        }
        out.networks = networks.into_iter().collect();
        out
    }

    /// Checks what labels refer to in Docker: the network and the secrets.
    fn resolve(
        &self,
        svc: &ServiceInfo,
        l: ServiceLabels,
        state: &ClusterState,
    ) -> Result<ServiceLabels, Vec<LabelError>> {
        let mut errors = Vec::new();
        if let Err(e) = pick_network(svc, &l, state) {
            errors.push(e);
        }
        if let Some((cert, key)) = l.http.as_ref().and_then(|h| h.ssl_secrets.as_ref()) {
            for (label, name) in [(labels::SSL_CERT, cert), (labels::SSL_KEY, key)] {
                if !state.secrets.contains(name) {
                    errors.push(LabelError::new(label, name, "no Docker secret with this name"));
                }
            }
        }
        if let Some(ca) = l.http.as_ref().and_then(|h| h.ssl_backend.as_ref()?.ca_secret.as_ref()) {
            if !state.secrets.contains(ca) {
                errors.push(LabelError::new(
                    labels::SSL_BACKEND_CA,
                    ca,
                    "no Docker secret with this name",
                ));
            }
        }
        if errors.is_empty() {
            Ok(l)
        } else {
            Err(errors)
        }
    }

    fn http_route(
        &self,
        service: &ServiceRef,
        h: &labels::HttpLabels,
        network: &str,
        addrs: &[(String, Ipv4Addr)],
    ) -> HttpRoute {
        let tls = match (&h.ssl_secrets, h.ssl_passthrough) {
            (Some((cert, key)), _) => TlsMode::Terminate {
                cert: self.options.secrets_dir.join(cert),
                key: self.options.secrets_dir.join(key),
            },
            (None, true) => TlsMode::Passthrough,
            (None, false) => TlsMode::None,
        };
        HttpRoute {
            service: service.clone(),
            hosts: h.hosts.clone(),
            path_prefix: h.path_prefix.clone(),
            strip_prefix: h.strip_prefix,
            tls,
            backend_tls: h.ssl_backend.as_ref().map(|b| BackendTls {
                server_name: b.server_name.clone(),
                verify: match (b.verify, &b.ca_secret) {
                    (false, _) => BackendVerify::None,
                    (true, ca) => BackendVerify::Required {
                        ca: ca.as_ref().map(|name| self.options.secrets_dir.join(name)),
                    },
                },
            }),
            ssl_only: h.ssl_only,
            websocket_endpoints: h.websocket_endpoints.clone(),
            stickiness: h.stickiness.clone(),
            redirects: h.redirects.clone(),
            default_backend: h.default_backend,
            health_check: h.health_check.clone(),
            network: Some(network.to_string()),
            backends: addrs.iter().map(|(id, ip)| backend(id, *ip, h.port)).collect(),
        }
    }
}

fn backend(id: &str, ip: Ipv4Addr, port: u16) -> Backend {
    Backend {
        addr: SocketAddr::from((ip, port)),
        weight: 1,
        id: id.to_string(),
    }
}

/// The network to reach the service on: the label's (by name or id), else its only network.
fn pick_network(svc: &ServiceInfo, l: &ServiceLabels, state: &ClusterState) -> Result<(String, String), LabelError> {
    let name_of = |id: &str| state.networks.iter().find(|n| n.id == id).map(|n| n.name.clone());
    // The ingress network carries the routing mesh, never task-to-proxy traffic.
    let candidates: Vec<&String> = svc
        .networks
        .iter()
        .filter(|id| name_of(id).as_deref() != Some("ingress"))
        .collect();
    match &l.network {
        Some(wanted) => candidates
            .iter()
            .find(|id| **id == wanted || name_of(id).as_deref() == Some(wanted.as_str()))
            .map(|id| (id.to_string(), name_of(id).unwrap_or_else(|| id.to_string())))
            .ok_or_else(|| LabelError::new(labels::NETWORK, wanted, "the service is not attached to this network")),
        None => match candidates.as_slice() {
            [only] => Ok((only.to_string(), name_of(only).unwrap_or_else(|| only.to_string()))),
            [] => Err(LabelError::new(
                labels::NETWORK,
                "",
                "the service is on no overlay network the proxy can reach",
            )),
            _ => Err(LabelError::new(
                labels::NETWORK,
                "",
                "the service is on several networks: name one with this label",
            )),
        },
    }
}

/// (id, address) of each backend: running tasks' addresses, or the service VIP.
fn backend_addrs(
    svc: &ServiceInfo,
    l: &ServiceLabels,
    network_id: &str,
    tasks: &[&TaskInfo],
) -> Vec<(String, Ipv4Addr)> {
    match l.backend_mode {
        BackendMode::Vip => svc
            .vips
            .iter()
            .filter(|(n, _)| n == network_id)
            .map(|(_, ip)| (svc.id.clone(), *ip))
            .collect(),
        BackendMode::Task => {
            let mut addrs: Vec<(String, Ipv4Addr)> = tasks
                .iter()
                .filter_map(|t| {
                    t.addresses
                        .iter()
                        .find(|(n, _)| n == network_id)
                        .map(|(_, ip)| (t.id.clone(), *ip))
                })
                .collect();
            addrs.sort();
            addrs
        }
    }
}

/// Who holds each host+prefix, L4 listener and the default backend (first come: oldest).
#[derive(Default)]
struct Claims {
    http: HashMap<(String, String), (String, HttpPolicy)>,
    l4: HashMap<(Option<Ipv4Addr>, u16, super::snapshot::L4Protocol), String>,
    default_backend: Option<String>,
}

/// What two routes for the same host and prefix must agree on to share traffic.
type HttpPolicy = (TlsMode, Option<BackendTls>, bool, bool, super::snapshot::Stickiness);

impl Claims {
    fn claim_http(&mut self, r: &HttpRoute) -> Result<(), LabelError> {
        let policy = (
            r.tls.clone(),
            r.backend_tls.clone(),
            r.ssl_only,
            r.strip_prefix,
            r.stickiness.clone(),
        );
        for host in &r.hosts {
            if let Some((owner, theirs)) = self.http.get(&(host.clone(), r.path_prefix.clone())) {
                if *theirs != policy && *owner != r.service.name {
                    return Err(LabelError::new(
                        labels::HOSTS,
                        host,
                        format!("{host}{} is already routed by older service {owner} with different TLS/redirect/rewrite/stickiness settings", r.path_prefix),
                    ));
                }
            }
        }
        if r.default_backend {
            if let Some(owner) = &self.default_backend {
                // Both named: the operator sees which one answers unknown hosts and which to fix.
                return Err(LabelError::new(
                    labels::DEFAULT_BACKEND,
                    "true",
                    format!(
                        "older service {owner} is already the default backend (one per proxy: \
                         the oldest by creation time, then id, keeps it; {} is not routed)",
                        r.service.name
                    ),
                ));
            }
        }
        for host in &r.hosts {
            self.http
                .entry((host.clone(), r.path_prefix.clone()))
                .or_insert((r.service.name.clone(), policy.clone()));
        }
        if r.default_backend {
            self.default_backend = Some(r.service.name.clone());
        }
        Ok(())
    }

    fn claim_l4(&mut self, s: &L4Service) -> Result<(), LabelError> {
        let key = (s.vip, s.port, s.protocol);
        if let Some(owner) = self.l4.get(&key) {
            return Err(LabelError::new(
                labels::L4_PORT,
                &s.port.to_string(),
                format!(
                    "{:?} port {} is already balanced for older service {owner}",
                    s.protocol, s.port
                ),
            ));
        }
        self.l4.insert(key, s.service.name.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
