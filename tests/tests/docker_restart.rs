//! dockerd restarted under a running control plane: it keeps its last snapshot while the
//! engine is away (never publishes an empty one), then resyncs and follows new changes.
//! Its own test binary: it takes the engine away from every other Docker test.
use std::time::Duration;

use interlock_tests::docker::{ensure_backend_image, route, unique, ControlAgent, Network, Service};
use interlock_tests::engine::{start_dockerd, stop_dockerd, wait_engine, EngineGuard};
use interlock_tests::{report, require_root};

const WAIT: Duration = Duration::from_secs(120);

#[test]
fn dockerd_restart_keeps_the_last_snapshot_then_resyncs() {
    require_root();
    ensure_backend_image().unwrap();
    let net = Network::new().unwrap();
    let svc = Service::routed(&net, 1, &format!("{}.example", unique("r"))).unwrap();
    let name = svc.name.clone();
    let mut agent = ControlAgent::start(&["--role", "leader", "--poll-ms", "500"]).unwrap();
    let before = agent
        .wait_for("the service routed", WAIT, |s| {
            route(s, &name).is_some_and(|r| r.backends.len() == 1)
        })
        .unwrap();

    // Declared after the swarm objects so it is dropped first: they are removed with a live engine.
    let _engine = EngineGuard;
    stop_dockerd();
    wait_engine(false);
    agent
        .process
        .wait_for_line("Docker unreachable, keeping the last snapshot", WAIT)
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let during = agent.snapshots();
    assert!(
        during.iter().all(|s| route(s, &name).is_some()),
        "no snapshot without the route while Docker is away"
    );

    start_dockerd();
    wait_engine(true);
    // After the restart the task comes back (maybe with a new address); then a change made
    // now must be picked up.
    agent
        .wait_for("resynced after the restart", WAIT, |s| {
            route(s, &name).is_some_and(|r| r.backends.len() == 1) && s.version > before.version
                || route(s, &name).is_some_and(|r| r.backends.len() == 1)
        })
        .unwrap();
    svc.update(&["--replicas", "2"]).unwrap();
    let after = agent
        .wait_for("the scale-up after the restart", WAIT, |s| {
            route(s, &name).is_some_and(|r| r.backends.len() == 2)
        })
        .unwrap();
    assert!(after.version > before.version);
    report(&format!(
        "docker_restart: kept v{} while dockerd was down, resynced to v{}",
        before.version, after.version
    ));
}
