//! `cargo xtask bench control`: the control plane on the real engine.
//!
//! - event_p50/p99: 100 label updates; from `docker service update` returning to the agent
//!   printing the snapshot that carries the change.
//! - resync_1000: a fresh agent's time from start to its first snapshot holding 1,000
//!   labelled services (created beforehand with 0 replicas: Docker's creation time excluded).
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{cmd, docker, root, setup};

const UPDATES: usize = 100;
const SERVICES: usize = 1000;
const PREFIX: &str = "ilb-bench";

pub fn run() -> Result<()> {
    if !cmd::is_root() {
        bail!("bench control drives a swarm: run it as root");
    }
    let swarm = docker::swarm_lock()?;
    setup::run()?;
    swarm.ensure_swarm()?;
    cmd::build_release_agent()?;
    cleanup();
    let result = measure();
    cleanup();
    let (p50, p99, resync) = result?;
    println!("BENCH control event_p50_ms={p50:.1} event_p99_ms={p99:.1} resync_1000_ms={resync:.0}");
    Ok(())
}

fn measure() -> Result<(f64, f64, f64)> {
    let net = format!("{PREFIX}-net");
    cmd::sh(&format!(
        "docker network create --driver overlay --attachable {net} >/dev/null"
    ))?;

    // Event latency.
    let svc = format!("{PREFIX}-events");
    create_service(&svc, &net, "events.bench.example")?;
    let mut agent = Agent::start()?;
    agent.wait(|line| line.contains(&svc), Duration::from_secs(30))?;
    let mut samples = Vec::with_capacity(UPDATES);
    for i in 0..UPDATES {
        let needle = format!("\"path_prefix\":\"/v{i}\"");
        let started = Instant::now();
        cmd::sh(&format!(
            "docker service update --detach --quiet --label-add com.docker.lb.context_root=/v{i} {svc} >/dev/null"
        ))?;
        let returned = started.elapsed();
        agent.wait(|line| line.contains(&needle), Duration::from_secs(10))?;
        samples.push((started.elapsed() - returned).as_secs_f64() * 1000.0);
    }
    drop(agent);
    samples.sort_by(f64::total_cmp);
    let p50 = samples[samples.len() / 2];
    let p99 = samples[(samples.len() * 99).div_ceil(100) - 1];

    // Full resync of 1,000 services.
    eprintln!("bench control: creating {SERVICES} labelled services (replicas 0)");
    let names: Vec<String> = (0..SERVICES).map(|i| format!("{PREFIX}-{i}")).collect();
    for chunk in names.chunks(8) {
        let children: Vec<Child> = chunk
            .iter()
            .map(|name| {
                Command::new("docker")
                    .args([
                        "service",
                        "create",
                        "--detach",
                        "--quiet",
                        "--no-resolve-image",
                        "--replicas",
                        "0",
                        "--network",
                        &net,
                        "--name",
                        name,
                    ])
                    .args([
                        "--label",
                        &format!("com.docker.lb.hosts={name}.bench.example"),
                        "--label",
                        "com.docker.lb.port=80",
                    ])
                    .arg(crate::bench::BACKEND_IMAGE_FOR_BENCH)
                    .stdout(Stdio::null())
                    .spawn()
            })
            .collect::<std::io::Result<_>>()?;
        for mut c in children {
            c.wait()?;
        }
    }
    let started = Instant::now();
    let mut agent = Agent::start()?;
    // The snapshot counts the events service too.
    agent.wait(
        |line| line.starts_with('{') && line.matches("\"hosts\"").count() > SERVICES,
        Duration::from_secs(120),
    )?;
    let resync = started.elapsed().as_secs_f64() * 1000.0;
    Ok((p50, p99, resync))
}

fn create_service(name: &str, net: &str, host: &str) -> Result<()> {
    cmd::sh(&format!(
        "docker service create --detach --quiet --no-resolve-image --replicas 0 --network {net} --name {name} \
         --label com.docker.lb.hosts={host} --label com.docker.lb.port=80 {} >/dev/null",
        crate::bench::BACKEND_IMAGE_FOR_BENCH
    ))
}

fn cleanup() {
    let _ = cmd::sh(&format!(
        "docker service ls -q --filter name={PREFIX} | xargs -r -n 100 docker service rm >/dev/null"
    ));
    for _ in 0..30 {
        if cmd::ok(&format!(
            "docker network ls -q --filter name={PREFIX}-net | xargs -r docker network rm >/dev/null 2>&1"
        )) && !cmd::ok(&format!("docker network ls | grep -q {PREFIX}-net"))
        {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The release agent running `control --print`, its stdout lines delivered as they come.
struct Agent {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Agent {
    fn start() -> Result<Agent> {
        let mut child = Command::new(root().join("target/release/interlock"))
            .args(["control", "--print", "--role", "leader"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the agent")?;
        let stdout = child.stdout.take().context("agent stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Agent { child, lines })
    }

    fn wait(&mut self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return Ok(()),
                Ok(_) => {}
                Err(_) => bail!("the agent printed no matching snapshot within {timeout:?}"),
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
