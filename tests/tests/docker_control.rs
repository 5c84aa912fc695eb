//! The control plane against a real dockerd in swarm mode: snapshots follow services being
//! created, scaled, relabelled and removed; dead tasks leave; bad labels stay contained;
//! a follower mirrors its leader.
use std::time::Duration;

use interlock_tests::docker::{docker, ensure_backend_image, route, unique, ControlAgent, Network, Service};
use interlock_tests::{report, require_root};

const WAIT: Duration = Duration::from_secs(90);

fn setup() -> Network {
    require_root();
    ensure_backend_image().expect("building the FROM-scratch backend image");
    Network::new().expect("creating an overlay network")
}

fn backend_ips(s: &interlock::model::Snapshot, service: &str) -> Vec<String> {
    route(s, service)
        .map(|r| r.backends.iter().map(|b| b.addr.ip().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn snapshots_follow_service_lifecycle() {
    let net = setup();
    let agent = ControlAgent::start(&["--role", "leader", "--poll-ms", "500"]).unwrap();
    let host = format!("{}.example", unique("app"));
    let svc = Service::routed(&net, 2, &host).unwrap();
    let name = svc.name.clone();

    let s = agent
        .wait_for("2 backends", WAIT, |s| backend_ips(s, &name).len() == 2)
        .unwrap();
    let r = route(&s, &name).unwrap();
    assert_eq!(r.hosts, vec![host.clone()]);
    assert!(r.backends.iter().all(|b| b.addr.port() == 80));
    assert!(
        s.networks.contains(&net.name),
        "{:?} names the service's network",
        s.networks
    );

    svc.update(&["--replicas", "3"]).unwrap();
    agent
        .wait_for("3 backends after scale-up", WAIT, |s| backend_ips(s, &name).len() == 3)
        .unwrap();

    svc.update(&[
        "--label-add",
        "com.docker.lb.context_root=/app",
        "--label-add",
        "com.docker.lb.context_root_rewrite=true",
    ])
    .unwrap();
    agent
        .wait_for("the new context root", WAIT, |s| {
            route(s, &name).is_some_and(|r| r.path_prefix == "/app" && r.strip_prefix)
        })
        .unwrap();

    // A task's container dies: its address leaves within the poll interval (+ slack).
    let containers = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={name}"),
    ])
    .unwrap();
    let victim = containers.lines().next().expect("a running container").to_string();
    let ip = docker(&[
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
        &victim,
    ])
    .unwrap();
    let ip = ip
        .split_whitespace()
        .next()
        .expect("the container has an overlay address")
        .to_string();
    docker(&["kill", &victim]).unwrap();
    let gone = agent.wait_for("the killed task's address gone", Duration::from_secs(5), |s| {
        !backend_ips(s, &name).contains(&ip)
    });
    assert!(gone.is_ok(), "{gone:?}");

    svc.update(&["--replicas", "0"]).unwrap();
    agent
        .wait_for("no backends at 0 replicas", WAIT, |s| {
            route(s, &name).is_some_and(|r| r.backends.is_empty())
        })
        .unwrap();
    drop(svc);
    agent
        .wait_for("the route removed with the service", WAIT, |s| {
            route(s, &name).is_none()
        })
        .unwrap();
    report(&format!(
        "docker_control: lifecycle followed through {} snapshots",
        agent.snapshots().len()
    ));
}

#[test]
fn bad_labels_affect_only_their_own_service() {
    let net = setup();
    let host = format!("{}.example", unique("good"));
    let good = Service::routed(&net, 1, &host).unwrap();
    let bad_cases: Vec<(Vec<String>, &str, &str)> = vec![
        (
            vec![
                "com.docker.lb.hosts=p.example".into(),
                "com.docker.lb.port=70000".into(),
            ],
            "com.docker.lb.port",
            "70000",
        ),
        (
            vec![
                "com.docker.lb.hosts=n.example".into(),
                "com.docker.lb.port=80".into(),
                "com.docker.lb.network=nosuchnet".into(),
            ],
            "com.docker.lb.network",
            "nosuchnet",
        ),
        (
            vec![
                "com.docker.lb.hosts=s.example".into(),
                "com.docker.lb.port=80".into(),
                "com.docker.lb.ssl_cert=nosuchcert".into(),
                "com.docker.lb.ssl_key=nosuchkey".into(),
            ],
            "com.docker.lb.ssl_cert",
            "nosuchcert",
        ),
        (
            vec![
                "com.docker.lb.hosts=r.example".into(),
                "com.docker.lb.port=80".into(),
                "com.docker.lb.redirects=http://a.example".into(),
            ],
            "com.docker.lb.redirects",
            "http://a.example",
        ),
        (
            // Same host and path as the good (older) service, but sticky: a conflict it loses.
            vec![
                format!("com.docker.lb.hosts={host}"),
                "com.docker.lb.port=80".into(),
                "com.docker.lb.sticky_session_cookie=S".into(),
            ],
            "com.docker.lb.hosts",
            host.as_str(),
        ),
    ];
    let mut agent = ControlAgent::start(&["--role", "leader", "--poll-ms", "500"]).unwrap();
    let mut bad = Vec::new();
    for (labels, _, _) in &bad_cases {
        let mut args: Vec<String> = vec!["--network".into(), net.name.clone(), "--replicas".into(), "0".into()];
        for l in labels {
            args.push("--label".into());
            args.push(l.clone());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        bad.push(Service::create(&refs).unwrap());
    }
    let good_name = good.name.clone();
    agent
        .wait_for("the good route with its task", WAIT, |s| {
            backend_ips(s, &good_name).len() == 1
        })
        .unwrap();
    for (svc, (_, label, value)) in bad.iter().zip(&bad_cases) {
        let line = agent
            .process
            .wait_for_line(&format!("service {}: label {label}=\"{value}\"", svc.name), WAIT);
        assert!(
            line.is_ok(),
            "an error line names {} and {label}={value}: {line:?}",
            svc.name
        );
    }
    let s = agent.snapshots().pop().unwrap();
    // Other tests run beside this one: look only at this test's services.
    let ours: Vec<&str> = s
        .http
        .iter()
        .map(|r| r.service.name.as_str())
        .filter(|n| *n == good_name || bad.iter().any(|b| b.name == *n))
        .collect();
    assert_eq!(ours, vec![good_name.as_str()], "only the good service is routed");
    assert_eq!(route(&s, &good_name).unwrap().hosts, vec![host.clone()]);
    report(&format!(
        "docker_control: {} bad-label cases reported, the good route intact",
        bad_cases.len()
    ));
}

#[test]
fn follower_mirrors_the_leader_and_keeps_its_snapshot_without_it() {
    let net = setup();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let mut leader =
        ControlAgent::start(&["--role", "leader", "--poll-ms", "500", "--snapshot-listen", &listen]).unwrap();
    let mut follower = ControlAgent::start(&["--role", "follower", "--leader", &listen]).unwrap();
    let svc = Service::routed(&net, 1, &format!("{}.example", unique("f"))).unwrap();
    let name = svc.name.clone();
    let on_leader = leader
        .wait_for("the service on the leader", WAIT, |s| backend_ips(s, &name).len() == 1)
        .unwrap();
    // The leader may publish again before the follower has caught up (a reconcile, another
    // change on the engine): the follower mirrors the latest, not each version.
    let on_leader = follower
        .wait_for("a snapshot of the leader's on the follower", WAIT, |s| {
            s.version >= on_leader.version && leader.snapshots().contains(s)
        })
        .unwrap();
    assert_eq!(backend_ips(&on_leader, &name).len(), 1, "{on_leader:?}");

    leader.process.kill();
    follower
        .process
        .wait_for_line("keeping snapshot version", WAIT)
        .unwrap();
    let last = follower.snapshots().pop().unwrap();
    assert!(
        last.version >= on_leader.version && leader.snapshots().contains(&last),
        "the follower keeps the last good snapshot: {last:?}"
    );
    report(&format!(
        "docker_control: follower mirrored leader snapshot v{}",
        on_leader.version
    ));
}

/// A Docker secret removed when the test ends.
struct Secret(String);

impl Secret {
    fn create(name: &str, pem: &str) -> Secret {
        let file = std::env::temp_dir().join(format!("{name}.pem"));
        std::fs::write(&file, pem).unwrap();
        docker(&["secret", "create", name, file.to_str().unwrap()]).unwrap();
        let _ = std::fs::remove_file(file);
        Secret(name.to_string())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let _ = docker(&["secret", "rm", &self.0]);
    }
}

/// `ssl_backend`, `ssl_backend_tls_verify` and `ssl_backend_ca` on real services: the
/// snapshot's route carries TLS to the tasks (SNI the first host, the CA secret as the file
/// the agent reads); a bad value or a missing CA secret is one error line for that service.
/// The TLS bytes themselves are tested on loopback (`interlock-user/tests/l7_ssl_backend.rs`):
/// the swarm tests' tasks are busybox, whose httpd has no TLS.
#[test]
fn ssl_backend_labels_become_tls_to_the_tasks() {
    use interlock::model::{BackendTls, BackendVerify};
    let net = setup();
    let ca_name = unique("backend-ca");
    // The control plane checks that the secret exists; the agent reads it (loopback tests).
    let _ca = Secret::create(
        &ca_name,
        "-----BEGIN CERTIFICATE-----\n(the backends' CA)\n-----END CERTIFICATE-----\n",
    );
    let mut agent = ControlAgent::start(&["--role", "leader", "--poll-ms", "500"]).unwrap();
    let make = |hosts: &str, extra: &[String]| {
        let mut args: Vec<String> = vec!["--network".into(), net.name.clone(), "--replicas".into(), "1".into()];
        for l in [format!("com.docker.lb.hosts={hosts}"), "com.docker.lb.port=80".into()]
            .iter()
            .chain(extra)
        {
            args.push("--label".into());
            args.push(l.clone());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Service::create(&refs).unwrap()
    };
    let (a, b) = (unique("tls"), unique("vfy"));
    let unverified = make(
        &format!("*.{a}.example,{a}.example"),
        &["com.docker.lb.ssl_backend=true".into()],
    );
    let verified = make(
        &format!("{b}.example"),
        &[
            "com.docker.lb.ssl_backend=true".into(),
            "com.docker.lb.ssl_backend_tls_verify=required".into(),
            format!("com.docker.lb.ssl_backend_ca={ca_name}"),
        ],
    );
    let bad_verify = make(
        &format!("{}.example", unique("bad")),
        &[
            "com.docker.lb.ssl_backend=true".into(),
            "com.docker.lb.ssl_backend_tls_verify=sometimes".into(),
        ],
    );
    let no_ca = make(
        &format!("{}.example", unique("noca")),
        &[
            "com.docker.lb.ssl_backend=true".into(),
            "com.docker.lb.ssl_backend_tls_verify=required".into(),
            "com.docker.lb.ssl_backend_ca=no-such-ca-secret".into(),
        ],
    );
    let (u, v) = (unverified.name.clone(), verified.name.clone());
    let s = agent
        .wait_for("both TLS routes with their task", WAIT, |s| {
            backend_ips(s, &u).len() == 1 && backend_ips(s, &v).len() == 1
        })
        .unwrap();
    assert_eq!(
        route(&s, &u).unwrap().backend_tls,
        Some(BackendTls {
            server_name: format!("{a}.example"),
            verify: BackendVerify::None
        }),
        "verify defaults to none; SNI is the first host without `*.`"
    );
    assert_eq!(
        route(&s, &v).unwrap().backend_tls,
        Some(BackendTls {
            server_name: format!("{b}.example"),
            verify: BackendVerify::Required {
                ca: Some(std::path::Path::new("/run/secrets").join(&ca_name))
            }
        })
    );
    for (svc, label, value) in [
        (&bad_verify, "com.docker.lb.ssl_backend_tls_verify", "sometimes"),
        (&no_ca, "com.docker.lb.ssl_backend_ca", "no-such-ca-secret"),
    ] {
        let line = agent
            .process
            .wait_for_line(&format!("service {}: label {label}=\"{value}\"", svc.name), WAIT);
        assert!(
            line.is_ok(),
            "an error line names {} and {label}={value}: {line:?}",
            svc.name
        );
        assert!(route(&agent.snapshots().pop().unwrap(), &svc.name).is_none());
    }
    report("docker_control: ssl_backend labels on real services become TLS to the tasks; bad ones are contained");
}
