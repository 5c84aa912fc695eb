//! Hitless changes on a real swarm: a service scaled 2 -> 6 -> 1, then updated rolling
//! start-first and stop-first, while 200 requests per second go through the stack's proxy:
//! every request is answered 2xx.
use std::time::Duration;

use interlock_tests::docker::{ensure_backend_image, unique, Network};
use interlock_tests::load::Load;
use interlock_tests::stack::{routed_page, wait_served, Stack};
use interlock_tests::{report, require_root};

#[test]
fn scaling_and_rolling_updates_under_load_answer_every_request() {
    require_root();
    ensure_backend_image().unwrap();
    let net = Network::new().unwrap();
    let _stack = Stack::deploy("").unwrap();
    let host = format!("{}.example", unique("u"));
    let svc = routed_page(&net, &host, &["--replicas", "2", "--stop-grace-period", "2s"], "app").unwrap();
    // Not yet served after 30 s: the load's failures will say so.
    let _ = wait_served(&host, Duration::from_secs(30));

    let load = Load::start(&host, "/", 200);
    let settle = || std::thread::sleep(Duration::from_secs(2));
    settle();
    for replicas in ["6", "1", "3"] {
        svc.update_and_wait(&["--replicas", replicas]).unwrap();
        settle();
    }
    for order in ["start-first", "stop-first"] {
        svc.update_and_wait(&[
            "--force",
            "--update-order",
            order,
            "--update-parallelism",
            "1",
            "--update-delay",
            "0s",
        ])
        .unwrap();
        settle();
    }
    let answered = load.answered();
    let r = load.stop();
    assert!(answered > 2000, "the load ran ({answered} answers)");
    assert_eq!(
        (r.non2xx, r.errors),
        (0, 0),
        "every request answered 2xx; failures: {:?}",
        r.failures
    );
    report(&format!(
        "swarm_updates: 2->6->1->3 replicas, rolling start-first and stop-first at 200 req/s: {} answered 2xx, \
         non2xx={} errors={}",
        r.ok, r.non2xx, r.errors
    ));
}
