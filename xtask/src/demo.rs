//! `cargo xtask demo`: Interlock as an operator runs it. Makes sure dockerd and a swarm are
//! up, builds the agent's image, deploys `deploy/stack.yml`, deploys labelled sample services
//! (two HTTP services on one host, split by path, and an L4 echo service), requests them
//! through the proxy, prints the answers and the agent's status with its L4 counters, and
//! leaves everything running. `cargo xtask demo --remove` takes it down.
//!
//! The L4 client sits in a network namespace behind a veth pair whose host side
//! (`ilkdemo0`, 10.231.0.1) plays the node's NIC: traffic a host sends to itself never
//! crosses an interface, so it could not show XDP at work.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{cmd, docker, image, root, setup};

const STACK: &str = "interlock";
const NETWORK: &str = "demo";
const HOST: &str = "web.demo.local";
const CLIENT_NS: &str = "ilk-demo-client";
const HOST_IF: &str = "ilkdemo0";
const VIP: &str = "10.231.0.1";
const CLIENT_ADDR: &str = "10.231.0.2";
const L4_PORT: u16 = 9000;
const SERVICES: [&str; 3] = ["demo-web", "demo-api", "demo-echo"];

pub fn run(remove: bool) -> Result<()> {
    if !cmd::is_root() {
        bail!("cargo xtask demo drives Docker, creates a network namespace and loads XDP: run it as root");
    }
    // Held while the demo deploys or removes: a test run takes the demo's stack down.
    let swarm = docker::swarm_lock()?;
    if remove {
        take_down();
        println!("demo: removed the stack, the sample services, the network and the client namespace");
        return Ok(());
    }
    setup::run()?;
    docker::ensure_bpffs()?;
    swarm.ensure_swarm()?;
    xtask::backend_image::ensure().map_err(|e| anyhow::anyhow!(e))?;
    let binary = image::build_static_agent()?;
    image::run()?;
    take_down(); // leftovers of an earlier demo: start clean
                 // The snapshot stream's mutual TLS material, as Docker secrets (kept when they exist).
    cmd::run(Command::new(&binary).args(["certs", "--docker-secrets"]))?;
    client_link()?;

    println!("demo: deploying the stack `{STACK}` (deploy/stack.yml; XDP on {HOST_IF})");
    cmd::run(
        Command::new("docker")
            .args(["stack", "deploy", "--compose-file"])
            .arg(root().join("deploy/stack.yml"))
            .arg(STACK)
            .env("INTERLOCK_XDP_INTERFACES", HOST_IF),
    )?;
    cmd::sh(&format!(
        "docker network create --driver overlay --attachable {NETWORK} >/dev/null"
    ))?;
    sample_services()?;

    println!("demo: requests through the proxy on port 80");
    for path in ["/", "/api/"] {
        let answer = wait_for(&format!("http://{HOST}{path}"), || http_get(HOST, path))?;
        println!("  GET http://{HOST}{path} -> {answer}");
    }
    let miss = http_get("nobody.demo.local", "/")?;
    println!("  GET http://nobody.demo.local/ -> {miss}");

    println!("demo: TCP through the XDP fast path, from namespace {CLIENT_NS} to {VIP}:{L4_PORT}");
    for i in 1..=3 {
        let text = format!("hello {i}");
        let echoed = wait_for("the L4 echo service", || echo(&text))?;
        println!("  sent {text:?} -> echoed {echoed:?}");
    }

    std::thread::sleep(Duration::from_millis(1500)); // one status refresh
    let agent = agent_container()?;
    println!("demo: `docker exec {} /interlock status`", &agent[..12]);
    let status = Command::new("docker")
        .args(["exec", &agent, "/interlock", "status"])
        .output()?;
    print!("{}", String::from_utf8_lossy(&status.stdout));
    println!(
        "demo: the stack keeps running. Try `curl -H 'Host: {HOST}' http://127.0.0.1/api/`; remove it all \
         with `cargo xtask demo --remove`."
    );
    Ok(())
}

fn client_link() -> Result<()> {
    for line in [
        format!("ip netns add {CLIENT_NS}"),
        format!("ip link add {HOST_IF} type veth peer name eth0 netns {CLIENT_NS}"),
        format!("ip addr add {VIP}/24 dev {HOST_IF}"),
        format!("ip link set {HOST_IF} up"),
        format!("ip -n {CLIENT_NS} addr add {CLIENT_ADDR}/24 dev eth0"),
        format!("ip -n {CLIENT_NS} link set eth0 up"),
        format!("ip -n {CLIENT_NS} link set lo up"),
        // XDP rewrites checksums incrementally: the client sends complete ones.
        format!("ip netns exec {CLIENT_NS} ethtool -K eth0 tx off >/dev/null"),
    ] {
        cmd::sh(&line)?;
    }
    Ok(())
}

/// `docker service create` of a two-task busybox service on the demo network.
fn busybox_service(name: &str, labels: &[&str], command: &[&str]) -> Result<()> {
    let mut c = Command::new("docker");
    c.args([
        "service",
        "create",
        "--quiet",
        "--detach",
        "--no-resolve-image",
        "--name",
        name,
    ]);
    c.args(["--network", NETWORK, "--replicas", "2", "--entrypoint", "/busybox"]);
    for l in labels {
        c.args(["--label", l]);
    }
    c.arg(xtask::backend_image::BACKEND_IMAGE).args(command);
    cmd::run(c.stdout(std::process::Stdio::null()))
}

fn sample_services() -> Result<()> {
    let page = |name: &str, text: &str, labels: &[&str]| -> Result<()> {
        let script = format!(
            "/busybox mkdir -p /tmp/www && echo '{text}' > /tmp/www/index.html && exec /busybox httpd -f -p 80 -h /tmp/www"
        );
        busybox_service(name, labels, &["sh", "-c", &script])
    };
    let hosts = format!("com.docker.lb.hosts={HOST}");
    page("demo-web", "hello from demo-web", &[&hosts, "com.docker.lb.port=80"])?;
    page(
        "demo-api",
        "hello from demo-api",
        &[
            &hosts,
            "com.docker.lb.port=80",
            "com.docker.lb.context_root=/api",
            "com.docker.lb.context_root_rewrite=true",
        ],
    )?;
    busybox_service(
        "demo-echo",
        &[&format!("com.docker.lb.l4.port={L4_PORT}")],
        &["nc", "-ll", "-p", &L4_PORT.to_string(), "-e", "/busybox", "cat"],
    )?;
    println!("demo: services {} on network {NETWORK}", SERVICES.join(", "));
    Ok(())
}

/// Removes the demo's stack, services, network, pins and client namespace (if any).
pub fn take_down() {
    let _ = cmd::ok(&format!("docker service rm {}", SERVICES.join(" ")));
    if cmd::ok(&format!("docker stack ps {STACK}")) {
        let _ = cmd::ok(&format!("docker stack rm {STACK}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cmd::ok(&format!(
            "test -z \"$(docker ps -aq --filter label=com.docker.stack.namespace={STACK})\""
        )) && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    for _ in 0..40 {
        if !cmd::ok(&format!("docker network inspect {NETWORK}")) || cmd::ok(&format!("docker network rm {NETWORK}")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // Unpinning detaches the XDP programs the agent left on the host.
    let _ = cmd::ok("rm -rf /sys/fs/bpf/interlock");
    let _ = cmd::ok(&format!("ip netns del {CLIENT_NS}"));
}

fn agent_container() -> Result<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={STACK}_interlock"),
        ])
        .output()?;
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty() {
        bail!("the agent container is not running: see `docker service ps {STACK}_interlock`");
    }
    Ok(id)
}

/// Retries `f` for up to a minute (tasks start, the agent joins the network).
fn wait_for(what: &str, mut f: impl FnMut() -> Result<String>) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f() {
            Ok(answer) => return Ok(answer),
            Err(e) if Instant::now() > deadline => return Err(e.context(format!("{what} did not answer in 60 s"))),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// `GET` on 127.0.0.1:80: "<status> <body>" with the backend that answered; errors unless 200.
fn http_get(host: &str, path: &str) -> Result<String> {
    let mut s = TcpStream::connect("127.0.0.1:80")?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).unwrap_or("?").to_string();
    let upstream = head
        .lines()
        .find_map(|l| l.strip_prefix("x-upstream-addr: "))
        .map(|a| format!(" (from {a})"))
        .unwrap_or_default();
    if status != "200" && !host.starts_with("nobody") {
        bail!("{status} {}", body.trim());
    }
    Ok(format!("{status} {}{upstream}", body.trim()))
}

/// One line through the L4 echo service, from the client namespace.
fn echo(text: &str) -> Result<String> {
    let ns = std::fs::File::open(format!("/var/run/netns/{CLIENT_NS}")).context("opening the client namespace")?;
    let text = text.to_string();
    std::thread::spawn(move || -> Result<String> {
        // SAFETY: setns on this short-lived thread only, with a namespace fd we hold open.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        let addr = format!("{VIP}:{L4_PORT}").parse()?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        writeln!(s, "{text}")?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        if line.is_empty() {
            bail!("no echo");
        }
        Ok(line.trim_end().to_string())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the echo thread panicked"))?
}
