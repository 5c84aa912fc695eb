//! Faults while load runs through the stack's proxy on a real swarm:
//! - dockerd frozen (SIGSTOP) for 30 s: a hung engine. Tasks keep running, so every request
//!   is answered from the agent's last snapshot; once the engine answers again, a change
//!   made then is routed.
//! - the agent's task killed: clients see errors only while no agent runs (refused or cut
//!   connections, never a 404 or 503 from the new agent before its routes), then are served
//!   by the replacement swarm starts.
//! - the agent updated (`docker service update --force`, the stack's start-first order):
//!   the new agent takes the listening sockets over before the old one drains, so not one
//!   request fails.
//!
//! (A dockerd *restart* takes every container with it, swarm having no live-restore; that
//! case is in swarm_routes.) Its own test binary: it freezes the engine under every other
//! Docker test.
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;
use interlock_tests::docker::{docker, ensure_backend_image, unique, Network};
use interlock_tests::load::Load;
use interlock_tests::stack::{routed_page, wait_served, Stack};
use interlock_tests::{report, require_root, wait_until};

const RATE: u32 = 100;

/// Freezes dockerd; thaws it when dropped, whatever happens in the test.
struct Frozen;

impl Frozen {
    fn dockerd() -> Frozen {
        let ok = Command::new("pkill").args(["-STOP", "-x", "dockerd"]).status();
        assert!(ok.is_ok_and(|s| s.success()), "dockerd was running");
        Frozen
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("pkill").args(["-CONT", "-x", "dockerd"]).status();
    }
}

/// Lines of `interlock status` naming `host`, each listing that route's backends.
fn backends_of(stack: &Stack, host: &str) -> Result<usize> {
    let table = stack.status()?;
    let line = table.lines().find(|l| l.contains(host)).unwrap_or("");
    Ok(line.matches(":80").count())
}

#[test]
fn a_frozen_engine_and_a_killed_agent_under_load() {
    require_root();
    ensure_backend_image().unwrap();
    let net = Network::new().unwrap();
    let stack = Stack::deploy("").unwrap();
    let host = format!("{}.example", unique("f"));
    let svc = routed_page(&net, &host, &["--replicas", "2"], "app").unwrap();
    wait_served(&host, Duration::from_secs(60)).unwrap();

    // dockerd frozen for 30 s under load: nothing is lost.
    let load = Load::start(&host, "/", RATE);
    std::thread::sleep(Duration::from_secs(2));
    let frozen = Frozen::dockerd();
    std::thread::sleep(Duration::from_secs(30));
    drop(frozen);
    std::thread::sleep(Duration::from_secs(2));
    let during = load.stop();
    assert_eq!(
        (during.non2xx, during.errors),
        (0, 0),
        "every request answered 2xx while dockerd was frozen; failures: {:?}\nagent log:\n{}",
        during.failures,
        stack.logs()
    );
    assert!(during.ok > u64::from(RATE) * 30, "the load ran: {during:?}");
    // The engine answers again: a change made now is routed.
    svc.update_and_wait(&["--replicas", "3"]).unwrap();
    let routed_s = wait_until("the third task routed", Duration::from_secs(30), || {
        Ok(backends_of(&stack, &host)? == 3)
    })
    .unwrap_or_else(|e| panic!("{e:#}\nstatus:\n{:?}\nagent log:\n{}", stack.status(), stack.logs()));

    // The agent's task killed under load: errors only while no agent runs, then served again.
    let load = Load::start(&host, "/", RATE);
    std::thread::sleep(Duration::from_secs(2));
    let before = load.answered();
    docker(&["kill", &stack.agent_container().unwrap()]).unwrap();
    let killed = Instant::now();
    wait_served(&host, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e:#}\nagent tasks:\n{}", stack.tasks()));
    let gap_s = killed.elapsed().as_secs_f64();
    let back = load.answered();
    std::thread::sleep(Duration::from_secs(5));
    let after = load.stop();
    let served_after = after.ok + after.non2xx - back;
    assert!(
        served_after >= u64::from(RATE) * 4,
        "clients are served again after the restart: {served_after} answers in 5 s; {after:?}"
    );
    assert!(after.ok > before, "{after:?}");
    // The new agent opens its port only with its routes and networks in place: the gap shows
    // as refused or cut connections, never as a 404 or 503 from a proxy that is not ready.
    assert_eq!(
        after.non2xx,
        0,
        "answers other than 2xx around the restart: {:?}\nagent log:\n{}",
        after.failures,
        stack.logs()
    );

    // The agent updated under load: hitless.
    let load = Load::start(&host, "/", RATE);
    std::thread::sleep(Duration::from_secs(2));
    let old = stack.agent_container().unwrap();
    let started = Instant::now();
    docker(&[
        "service",
        "update",
        "--force",
        "--quiet",
        &format!("{}_interlock", stack.name),
    ])
    .unwrap_or_else(|e| panic!("{e:#}\nagent tasks:\n{}", stack.tasks()));
    wait_until("the old agent gone", Duration::from_secs(60), || {
        Ok(docker(&["ps", "--quiet", "--filter", &format!("id={old}")])?
            .trim()
            .is_empty())
    })
    .unwrap_or_else(|e| panic!("{e:#}\nagent tasks:\n{}", stack.tasks()));
    let update_s = started.elapsed().as_secs_f64();
    assert_ne!(stack.agent_container().unwrap(), old, "a new agent runs");
    std::thread::sleep(Duration::from_secs(2));
    let updated = load.stop();
    assert_eq!(
        (updated.non2xx, updated.errors),
        (0, 0),
        "every request answered 2xx while the agent was updated; failures: {:?}\nnew agent's log:\n{}",
        updated.failures,
        stack.agent_log()
    );
    let log = stack.agent_log();
    assert!(
        log.contains("took over the listening sockets"),
        "the new agent took the sockets over:\n{log}"
    );

    report(&format!(
        "swarm_faults: dockerd frozen 30 s at {RATE} req/s: {} answered 2xx, non2xx={} errors={}; afterwards a \
         new task routed in {routed_s:.1} s; agent killed at {RATE} req/s: served again after {gap_s:.1} s, \
         {} failed requests in the gap, {served_after} answered in the next 5 s; agent updated at {RATE} req/s \
         (old one gone after {update_s:.1} s): {} answered 2xx, non2xx={} errors={}",
        during.ok,
        during.non2xx,
        during.errors,
        after.non2xx + after.errors,
        updated.ok,
        updated.non2xx,
        updated.errors
    ));
    drop(svc);
}
