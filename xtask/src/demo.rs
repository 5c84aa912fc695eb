//! `cargo xtask demo`: the balancer at work on a built-in example.
//!
//! For now: a client namespace and a balancer namespace joined by a veth pair; the agent's
//! counting XDP program on the balancer side; traffic from the client; the counters printed;
//! everything removed again (also when a step fails).

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::{cmd, docker, setup};

const CLIENT_NS: &str = "ilk-demo-client";
const LB_NS: &str = "ilk-demo-lb";
const CLIENT_IF: &str = "ilkdemo0";
const LB_IF: &str = "ilkdemo1";
const CLIENT_ADDR: &str = "10.231.0.1";
const LB_ADDR: &str = "10.231.0.2";

/// Deletes the demo namespaces (and with them the veth pair) when dropped.
struct Topology;

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = cmd::ok(&format!("ip netns del {CLIENT_NS}"));
        let _ = cmd::ok(&format!("ip netns del {LB_NS}"));
    }
}

pub fn run() -> Result<()> {
    if !cmd::is_root() {
        bail!("cargo xtask demo creates network namespaces and loads BPF programs: run it as root");
    }
    setup::run()?;
    docker::ensure_bpffs()?;
    let agent = cmd::build_release_agent()?;

    drop(Topology); // leftovers of an interrupted run
    let _topology = Topology;
    for line in [
        format!("ip netns add {CLIENT_NS}"),
        format!("ip netns add {LB_NS}"),
        format!("ip link add {CLIENT_IF} netns {CLIENT_NS} type veth peer name {LB_IF} netns {LB_NS}"),
        format!("ip -n {CLIENT_NS} addr add {CLIENT_ADDR}/24 dev {CLIENT_IF}"),
        format!("ip -n {LB_NS} addr add {LB_ADDR}/24 dev {LB_IF}"),
        format!("ip -n {CLIENT_NS} link set {CLIENT_IF} up"),
        format!("ip -n {LB_NS} link set {LB_IF} up"),
        format!("ip -n {LB_NS} link set lo up"),
    ] {
        cmd::sh(&line)?;
    }
    println!("demo: veth pair {CLIENT_NS}/{CLIENT_IF} ({CLIENT_ADDR}) <-> {LB_NS}/{LB_IF} ({LB_ADDR})");

    let mut child = Command::new("ip")
        .args(["netns", "exec", LB_NS])
        .arg(&agent)
        .args(["count", "--iface", LB_IF, "--duration", "4"])
        .spawn()?;
    std::thread::sleep(Duration::from_millis(1500));
    println!("demo: sending ICMP, TCP and UDP from the client namespace");
    let _ = cmd::ok(&format!("ip netns exec {CLIENT_NS} ping -c 5 -i 0.2 {LB_ADDR}"));
    let _ = cmd::ok(&format!(
        "ip netns exec {CLIENT_NS} bash -c 'echo hi > /dev/tcp/{LB_ADDR}/80'"
    ));
    let _ = cmd::ok(&format!(
        "ip netns exec {CLIENT_NS} bash -c 'echo hi > /dev/udp/{LB_ADDR}/53'"
    ));
    let status = child.wait()?;
    if !status.success() {
        bail!("the agent exited with {status}");
    }
    println!("demo: done; namespaces removed");
    Ok(())
}
