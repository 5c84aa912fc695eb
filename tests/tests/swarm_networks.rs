//! The network allow-list on a real swarm: the stack deployed with
//! `INTERLOCK_ALLOWED_NETWORKS` joins and serves a service on an allowed network, does not
//! join the network of a service on another one (its host answers 503, no backends), and
//! logs one line naming that service, its network and the setting, which `interlock status`
//! shows too.
use std::time::Duration;

use interlock_tests::docker::{docker, ensure_backend_image, unique, Network};
use interlock_tests::stack::{get, routed_page, wait_served, Stack};
use interlock_tests::{report, require_root, wait_until};

#[test]
fn only_networks_on_the_allow_list_are_joined_and_served() {
    require_root();
    ensure_backend_image().unwrap();
    // Declared before the stack so they are removed after the agent has left them.
    let allowed = Network::new().unwrap();
    let other = Network::new().unwrap();
    let stack = Stack::deploy_with("", &[("INTERLOCK_ALLOWED_NETWORKS", allowed.name.as_str())]).unwrap();
    let (ok_host, refused_host) = (format!("{}.example", unique("ok")), format!("{}.example", unique("no")));
    let _served = routed_page(&allowed, &ok_host, &[], "allowed").unwrap();
    let refused = routed_page(&other, &refused_host, &[], "refused").unwrap();

    let took = wait_served(&ok_host, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}\nagent log:\n{}", stack.logs()));
    let line = format!(
        "service {}: network {} is not in allowed_networks",
        refused.name, other.name
    );
    wait_until("the refusal logged", Duration::from_secs(60), || {
        Ok(stack.agent_log().contains(&line))
    })
    .unwrap_or_else(|e| panic!("{e:#}\nagent log:\n{}", stack.logs()));
    // Time for a join the agent would have made (it joins within a second of a route).
    std::thread::sleep(Duration::from_secs(3));
    let (status, body) = get(&refused_host, "/").unwrap();
    assert_eq!(status, 503, "a service on a network not allowed is not served: {body}");
    let (status, body) = get(&ok_host, "/").unwrap();
    assert_eq!(
        (status, body.trim()),
        (200, "allowed"),
        "the allowed service is unaffected"
    );
    let container = stack.agent_container().unwrap();
    let networks = docker(&[
        "inspect",
        "--format",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        &container,
    ])
    .unwrap();
    assert!(
        networks.contains(&allowed.name),
        "the allowed network is joined: {networks}"
    );
    assert!(
        !networks.contains(&other.name),
        "the other network was joined: {networks}"
    );
    let log = stack.agent_log();
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains(&line)).collect();
    assert_eq!(refusals.len(), 1, "one refusal line, not one per recheck: {refusals:?}");
    assert!(
        refusals[0].contains("INTERLOCK_ALLOWED_NETWORKS") && refusals[0].contains(&allowed.name),
        "the line names the setting and its value: {}",
        refusals[0]
    );
    let status = stack.status().unwrap();
    assert!(
        status.contains("NOT SERVED") && status.contains(&line),
        "interlock status shows the refusal:\n{status}"
    );
    report(&format!(
        "swarm networks: allowed service served within {took:.2} s; the other not joined, 503, one warning"
    ));
}
