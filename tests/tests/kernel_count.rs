//! The foundation's proof: the agent attaches its XDP program to a veth in a network
//! namespace, counts real traffic per IP protocol, and the kernel's log lines reach the
//! agent's log.
use std::time::Duration;

use interlock_tests::agent::{interlock_bin, AgentProcess};
use interlock_tests::netns::{veth_pair, NetNs};
use interlock_tests::{report, require_root};

/// Parses `proto=<name> packets=<n> ...` lines of `interlock count` into (name, packets).
fn counts(lines: &[String]) -> Vec<(String, u64)> {
    lines
        .iter()
        .filter_map(|l| {
            let proto = l.split_whitespace().find_map(|w| w.strip_prefix("proto="))?;
            let packets = l.split_whitespace().find_map(|w| w.strip_prefix("packets="))?;
            Some((proto.to_string(), packets.parse().ok()?))
        })
        .collect()
}

#[test]
fn xdp_counts_packets_per_protocol_on_a_veth() {
    require_root();
    let client = NetNs::new().unwrap();
    let lb = NetNs::new().unwrap();
    let (_c, l) = veth_pair(&client, "10.232.0.1", &lb, "10.232.0.2").unwrap();

    let mut cmd = lb.command(interlock_bin());
    cmd.args(["count", "--iface", &l.iface, "--duration", "3"]);
    let mut agent = AgentProcess::spawn(cmd).unwrap();
    let attached = agent
        .wait_for_line("attached interlock_count", Duration::from_secs(10))
        .unwrap();
    eprintln!("{attached}");
    assert!(
        attached.contains("driver") || attached.contains("skb"),
        "the agent says which XDP mode: {attached}"
    );

    client
        .sh("ping -c 4 -i 0.2 -W 1 10.232.0.2")
        .expect("ping through the XDP-attached veth");
    // UDP to a closed port: the frame still crosses the program.
    let _ = client.sh("bash -c 'echo x > /dev/udp/10.232.0.2/9999'");

    agent.wait_exit(Duration::from_secs(10)).unwrap();
    let output = agent.output();
    let counts = counts(&output);
    eprintln!("counts: {counts:?}");
    let icmp = counts.iter().find(|(p, _)| p == "ICMP(1)").map(|c| c.1).unwrap_or(0);
    let udp = counts.iter().find(|(p, _)| p == "UDP(17)").map(|c| c.1).unwrap_or(0);
    assert!(icmp >= 4, "4 echo requests cross the program, counted {icmp}");
    assert!(udp >= 1, "the UDP datagram is counted, counted {udp}");
    assert!(
        output.iter().any(|l| l.contains("first packet of IP protocol 1")),
        "the kernel program's log line reaches the agent's log"
    );
    report(&format!(
        "kernel_count: {attached}; after traffic ICMP={icmp} UDP={udp} packets"
    ));
}

#[test]
fn attaching_to_a_missing_interface_fails_clearly() {
    require_root();
    let ns = NetNs::new().unwrap();
    let mut cmd = ns.command(interlock_bin());
    cmd.args(["count", "--iface", "nosuchif0", "--duration", "1"]);
    let mut agent = AgentProcess::spawn(cmd).unwrap();
    let err = agent.wait_exit(Duration::from_secs(10)).unwrap_err();
    assert!(err.to_string().contains("exited"), "{err}");
    assert!(
        agent.output().iter().any(|l| l.contains("nosuchif0")),
        "the error names the interface: {:?}",
        agent.output()
    );
}
