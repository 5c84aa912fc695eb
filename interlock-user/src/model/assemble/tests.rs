use super::*;
use crate::model::labels::*;
use crate::model::snapshot::{L4Protocol, Stickiness};

fn net(id: &str, name: &str) -> NetworkInfo {
    NetworkInfo {
        id: id.into(),
        name: name.into(),
    }
}

fn svc(id: &str, created: &str, networks: &[&str], labels: &[(&str, &str)]) -> ServiceInfo {
    ServiceInfo {
        id: id.into(),
        name: format!("svc-{id}"),
        created_at: created.into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        networks: networks.iter().map(|n| n.to_string()).collect(),
        vips: networks
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), Ipv4Addr::new(10, 9, i as u8, 2)))
            .collect(),
    }
}

fn task(id: &str, service: &str, network: &str, last: u8, running: bool) -> TaskInfo {
    TaskInfo {
        id: id.into(),
        service_id: service.into(),
        running,
        draining: false,
        addresses: vec![(network.into(), Ipv4Addr::new(10, 0, 0, last))],
    }
}

fn state(services: Vec<ServiceInfo>, tasks: Vec<TaskInfo>) -> ClusterState {
    ClusterState {
        services,
        tasks,
        networks: vec![net("n1", "appnet"), net("n2", "othernet"), net("ing", "ingress")],
        secrets: ["cert".to_string(), "key".to_string()].into_iter().collect(),
    }
}

const WEB: &[(&str, &str)] = &[(HOSTS, "web.example"), (PORT, "8080")];

#[test]
fn running_tasks_become_backends_on_the_service_network() {
    let s = state(
        vec![svc("a", "1", &["n1", "ing"], WEB)],
        vec![
            task("t1", "a", "n1", 5, true),
            task("t2", "a", "n1", 6, true),
            task("t3", "a", "n1", 7, false),
        ],
    );
    let out = Assembler::default().assemble(&s);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.http.len(), 1);
    let addrs: Vec<String> = out.http[0].backends.iter().map(|b| b.addr.to_string()).collect();
    assert_eq!(
        addrs,
        vec!["10.0.0.5:8080", "10.0.0.6:8080"],
        "the stopped task is not a backend"
    );
    assert_eq!(out.networks, vec!["appnet"]);
}

#[test]
fn tasks_being_replaced_are_routed_only_while_nothing_else_runs() {
    let draining = |id, last| TaskInfo {
        draining: true,
        ..task(id, "a", "n1", last, false)
    };
    let addrs = |tasks: Vec<TaskInfo>| -> Vec<String> {
        let out = Assembler::default().assemble(&state(vec![svc("a", "1", &["n1"], WEB)], tasks));
        out.http[0].backends.iter().map(|b| b.addr.to_string()).collect()
    };
    // Swarm rescheduling every task: the old ones still run, the new ones are starting.
    assert_eq!(
        addrs(vec![draining("old", 5), task("new", "a", "n1", 6, false)]),
        vec!["10.0.0.5:8080"]
    );
    // Once a replacement runs, the old task gets no new requests.
    assert_eq!(
        addrs(vec![draining("old", 5), task("new", "a", "n1", 6, true)]),
        vec!["10.0.0.6:8080"]
    );
}

#[test]
fn vip_mode_routes_to_the_service_vip() {
    let mut labels = WEB.to_vec();
    labels.push((BACKEND_MODE, "vip"));
    let out = Assembler::default().assemble(&state(vec![svc("a", "1", &["n1"], &labels)], vec![]));
    assert_eq!(out.http[0].backends[0].addr.to_string(), "10.9.0.2:8080");
}

#[test]
fn network_must_be_named_when_several_and_must_exist() {
    let several = state(vec![svc("a", "1", &["n1", "n2"], WEB)], vec![]);
    let out = Assembler::default().assemble(&several);
    assert!(out.http.is_empty());
    assert_eq!(out.errors[0].error.label, NETWORK);

    let mut labels = WEB.to_vec();
    labels.push((NETWORK, "othernet"));
    let out = Assembler::default().assemble(&state(
        vec![svc("a", "1", &["n1", "n2"], &labels)],
        vec![task("t", "a", "n2", 9, true)],
    ));
    assert_eq!(out.http[0].backends[0].addr.to_string(), "10.0.0.9:8080");

    let mut labels = WEB.to_vec();
    labels.push((NETWORK, "nosuchnet"));
    let out = Assembler::default().assemble(&state(vec![svc("a", "1", &["n1"], &labels)], vec![]));
    assert!(out.http.is_empty());
    assert!(out.errors[0].to_string().contains("nosuchnet"), "{}", out.errors[0]);
}

#[test]
fn one_bad_service_leaves_the_others_alone() {
    let s = state(
        vec![
            svc("a", "1", &["n1"], WEB),
            svc("b", "2", &["n1"], &[(HOSTS, "b.example"), (PORT, "99999")]),
        ],
        vec![],
    );
    let out = Assembler::default().assemble(&s);
    assert_eq!(out.http.len(), 1);
    assert_eq!(out.http[0].service.name, "svc-a");
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].service, "svc-b");
    assert_eq!(out.errors[0].error.label, PORT);
    assert!(!out.errors[0].kept_last_good);
}

#[test]
fn a_bad_update_keeps_the_last_good_routes() {
    let mut assembler = Assembler::default();
    let good = state(vec![svc("a", "1", &["n1"], WEB)], vec![task("t1", "a", "n1", 5, true)]);
    assert_eq!(assembler.assemble(&good).http.len(), 1);
    let bad = state(
        vec![svc("a", "1", &["n1"], &[(HOSTS, "web.example"), (PORT, "nope")])],
        vec![task("t1", "a", "n1", 5, true), task("t2", "a", "n1", 6, true)],
    );
    let out = assembler.assemble(&bad);
    assert_eq!(out.http.len(), 1, "the last good routes stay");
    assert_eq!(out.http[0].backends.len(), 2, "with the current tasks");
    assert!(out.errors[0].kept_last_good);
    assert!(out.errors[0].to_string().contains("keeping its last good routes"));
}

#[test]
fn missing_secret_is_an_error_and_present_secrets_become_paths() {
    let mut labels = WEB.to_vec();
    labels.extend([(SSL_CERT, "cert"), (SSL_KEY, "nokey")]);
    let out = Assembler::default().assemble(&state(vec![svc("a", "1", &["n1"], &labels)], vec![]));
    assert!(out.http.is_empty());
    assert_eq!(out.errors[0].error.label, SSL_KEY);

    let mut labels = WEB.to_vec();
    labels.extend([(SSL_CERT, "cert"), (SSL_KEY, "key")]);
    let out = Assembler::default().assemble(&state(vec![svc("a", "1", &["n1"], &labels)], vec![]));
    assert_eq!(
        out.http[0].tls,
        TlsMode::Terminate {
            cert: "/run/secrets/cert".into(),
            key: "/run/secrets/key".into()
        }
    );
}

#[test]
fn same_host_and_settings_is_a_canary_split() {
    let s = state(
        vec![svc("blue", "1", &["n1"], WEB), svc("green", "2", &["n1"], WEB)],
        vec![
            task("b1", "blue", "n1", 1, true),
            task("g1", "green", "n1", 2, true),
            task("g2", "green", "n1", 3, true),
        ],
    );
    let out = Assembler::default().assemble(&s);
    assert!(out.errors.is_empty());
    assert_eq!(out.http.len(), 2);
    assert_eq!(out.http.iter().map(|r| r.backends.len()).sum::<usize>(), 3);
}

#[test]
fn conflicting_claims_go_to_the_older_service() {
    let mut sticky = WEB.to_vec();
    sticky.push((STICKY_COOKIE, "S"));
    // "new" is listed first but created later: the older one wins whatever the order.
    let s = state(
        vec![
            svc("new", "2026-02", &["n1"], &sticky),
            svc("old", "2026-01", &["n1"], WEB),
        ],
        vec![],
    );
    let out = Assembler::default().assemble(&s);
    assert_eq!(out.http.len(), 1);
    assert_eq!(out.http[0].service.name, "svc-old");
    assert_eq!(out.http[0].stickiness, Stickiness::None);
    assert_eq!(out.errors[0].service, "svc-new");
    assert!(out.errors[0].to_string().contains("svc-old"));

    let l4 = &[(L4_PORT, "5432")];
    let out = Assembler::default().assemble(&state(
        vec![svc("x", "2", &["n1"], l4), svc("y", "1", &["n1"], l4)],
        vec![],
    ));
    assert_eq!(out.l4.len(), 1);
    assert_eq!(out.l4[0].service.name, "svc-y");
    assert_eq!(out.l4[0].protocol, L4Protocol::Tcp);

    let mut dflt = vec![(HOSTS, "other.example"), (PORT, "80"), (DEFAULT_BACKEND, "true")];
    let first = svc("d1", "1", &["n1"], &dflt);
    dflt[0] = (HOSTS, "third.example");
    let out = Assembler::default().assemble(&state(vec![first, svc("d2", "2", &["n1"], &dflt)], vec![]));
    assert_eq!(out.http.len(), 1);
    assert_eq!(out.errors[0].error.label, DEFAULT_BACKEND);
}

#[test]
fn a_hostless_default_backend_is_routed_and_a_second_one_is_named() {
    let dflt = &[(DEFAULT_BACKEND, "true"), (PORT, "8080")];
    let s = state(
        vec![
            svc("late", "2", &["n1"], dflt),
            svc("early", "1", &["n1"], dflt),
            svc("w", "3", &["n1"], WEB),
        ],
        vec![task("t1", "early", "n1", 5, true), task("t2", "late", "n1", 6, true)],
    );
    let out = Assembler::default().assemble(&s);
    let routed: Vec<&str> = out.http.iter().map(|r| r.service.name.as_str()).collect();
    assert_eq!(
        routed,
        vec!["svc-early", "svc-w"],
        "the older default backend and the other service"
    );
    let early = &out.http[0];
    assert!(early.default_backend && early.hosts.is_empty());
    assert_eq!(early.backends[0].addr.to_string(), "10.0.0.5:8080");
    assert_eq!(out.networks, vec!["appnet"]);
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    let line = out.errors[0].to_string();
    assert!(
        line.starts_with("service svc-late: label com.docker.lb.default_backend=\"true\": older service svc-early"),
        "{line}"
    );
    assert!(line.ends_with("(service not routed)"), "{line}");
}

#[test]
fn service_cluster_selects_services() {
    let mut edge = WEB.to_vec();
    edge.push((SERVICE_CLUSTER, "edge"));
    let s = state(vec![svc("a", "1", &["n1"], WEB), svc("b", "2", &["n1"], &edge)], vec![]);
    let out = Assembler::default().assemble(&s);
    assert_eq!(
        out.http.iter().map(|r| r.service.name.as_str()).collect::<Vec<_>>(),
        vec!["svc-a"]
    );
    let mut edge_assembler = Assembler::new(Options {
        service_cluster: Some("edge".into()),
        ..Options::default()
    });
    let out = edge_assembler.assemble(&s);
    assert_eq!(
        out.http.iter().map(|r| r.service.name.as_str()).collect::<Vec<_>>(),
        vec!["svc-b"]
    );
}

#[test]
fn l4_backends_use_the_target_port() {
    let labels = &[(L4_PORT, "53"), (L4_TARGET_PORT, "5353"), (L4_PROTOCOL, "udp")];
    let out = Assembler::default().assemble(&state(
        vec![svc("a", "1", &["n1"], labels)],
        vec![task("t", "a", "n1", 4, true)],
    ));
    assert_eq!(out.l4[0].port, 53);
    assert_eq!(out.l4[0].backends[0].addr.to_string(), "10.0.0.4:5353");
    assert!(out.http.is_empty());
}

#[test]
fn a_service_over_the_backend_bound_keeps_the_first_tasks_and_is_warned_about() {
    let tasks: Vec<TaskInfo> = (0..MAX_BACKENDS_PER_SERVICE + 5)
        .map(|i| TaskInfo {
            id: format!("t{i}"),
            service_id: "a".into(),
            running: true,
            draining: false,
            addresses: vec![("n1".into(), Ipv4Addr::from(0x0a00_0000 + i as u32))],
        })
        .collect();
    let out = Assembler::default().assemble(&state(vec![svc("a", "1", &["n1"], WEB)], tasks));
    assert_eq!(out.http[0].backends.len(), MAX_BACKENDS_PER_SERVICE);
    assert_eq!(out.limits_hit.get(LIMIT_BACKENDS_PER_SERVICE), Some(&1));
    assert!(out
        .warnings
        .iter()
        .any(|w| w.service == "svc-a" && w.error.reason.contains("first")));
}

#[test]
fn routes_over_the_route_bound_are_refused_one_service_at_a_time() {
    let services: Vec<ServiceInfo> = (0..MAX_HTTP_ROUTES + 2)
        .map(|i| {
            let host = format!("h{i}.example");
            svc(
                &format!("s{i:05}"),
                &format!("{i:05}"),
                &["n1"],
                &[(HOSTS, host.as_str()), (PORT, "80")],
            )
        })
        .collect();
    let out = Assembler::default().assemble(&state(services, vec![]));
    assert_eq!(out.http.len(), MAX_HTTP_ROUTES);
    assert_eq!(out.limits_hit.get(LIMIT_HTTP_ROUTES), Some(&2));
    let refused: Vec<&str> = out.errors.iter().map(|e| e.service.as_str()).collect();
    assert_eq!(
        refused,
        vec!["svc-s10000", "svc-s10001"],
        "the newest services are the ones refused"
    );
}

#[test]
fn ssl_backend_becomes_backend_tls_with_the_ca_secret_as_a_path() {
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut labels = WEB.to_vec();
        labels.push((SSL_BACKEND, "true"));
        labels.extend_from_slice(extra);
        let mut s = state(vec![svc("a", "1", &["n1"], &labels)], vec![]);
        s.secrets.insert("app-ca".into());
        Assembler::default().assemble(&s)
    };
    let out = with(&[]);
    assert_eq!(
        out.http[0].backend_tls,
        Some(BackendTls {
            server_name: "web.example".into(),
            verify: BackendVerify::None
        })
    );
    let out = with(&[(SSL_BACKEND_TLS_VERIFY, "required")]);
    assert_eq!(
        out.http[0].backend_tls.as_ref().unwrap().verify,
        BackendVerify::Required { ca: None }
    );
    let out = with(&[(SSL_BACKEND_TLS_VERIFY, "required"), (SSL_BACKEND_CA, "app-ca")]);
    assert_eq!(
        out.http[0].backend_tls.as_ref().unwrap().verify,
        BackendVerify::Required {
            ca: Some("/run/secrets/app-ca".into())
        }
    );
    let out = with(&[(SSL_BACKEND_TLS_VERIFY, "required"), (SSL_BACKEND_CA, "no-such-ca")]);
    assert!(out.http.is_empty());
    assert_eq!(
        out.errors[0].to_string(),
        "service svc-a: label com.docker.lb.ssl_backend_ca=\"no-such-ca\": no Docker secret with this name (service not routed)"
    );
    assert!(with(&[]).http[0].backend_tls.is_some());
}

#[test]
fn a_bad_ssl_backend_value_harms_only_its_service_and_tls_to_backends_must_agree_in_a_canary() {
    let mut bad = vec![(HOSTS, "b.example"), (PORT, "443"), (SSL_BACKEND, "true")];
    bad.push((SSL_BACKEND_TLS_VERIFY, "sometimes"));
    let out = Assembler::default().assemble(&state(
        vec![svc("a", "1", &["n1"], WEB), svc("b", "2", &["n1"], &bad)],
        vec![],
    ));
    assert_eq!(out.http.len(), 1);
    assert_eq!(out.http[0].service.name, "svc-a");
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].error.label, SSL_BACKEND_TLS_VERIFY);

    let mut tls = WEB.to_vec();
    tls.push((SSL_BACKEND, "true"));
    let out = Assembler::default().assemble(&state(
        vec![svc("old", "1", &["n1"], WEB), svc("new", "2", &["n1"], &tls)],
        vec![],
    ));
    assert_eq!(out.http.len(), 1, "plain and TLS backends cannot share a route");
    assert_eq!(out.errors[0].service, "svc-new");
}
