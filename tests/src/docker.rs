//! Swarm objects for tests (a FROM-scratch backend image, overlay networks, services), each
//! named `ilt-*` and removed on drop, and a control-plane agent whose snapshots can be awaited.
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use interlock::model::Snapshot;

use crate::agent::{interlock_bin, AgentProcess};
use crate::netns::run;

pub use xtask::backend_image::BACKEND_IMAGE;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// `ilt-<what>-<pid>-<n>`: unique per process and call.
pub fn unique(what: &str) -> String {
    format!(
        "ilt-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `docker <args>` and returns its trimmed stdout.
pub fn docker(args: &[&str]) -> Result<String> {
    let out = run(Command::new("docker").args(args))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Builds the backend image once (busybox httpd FROM scratch, see xtask/src/backend_image.rs).
pub fn ensure_backend_image() -> Result<()> {
    xtask::backend_image::ensure().map_err(|e| anyhow::anyhow!(e))
}

/// An attachable overlay network, removed on drop.
pub struct Network {
    pub name: String,
}

impl Network {
    pub fn new() -> Result<Network> {
        let name = unique("net");
        docker(&["network", "create", "--driver", "overlay", "--attachable", &name])?;
        Ok(Network { name })
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Services must be gone first; retry briefly while their tasks detach.
        for _ in 0..60 {
            if docker(&["network", "rm", &self.name]).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// A swarm service, removed on drop.
pub struct Service {
    pub name: String,
}

impl Service {
    /// `docker service create` with the given extra arguments (labels, network, replicas).
    pub fn create(extra: &[&str]) -> Result<Service> {
        Service::create_cmd(extra, &[])
    }

    /// A backend whose page `/` answers `text` (busybox httpd on port 80).
    pub fn page(extra: &[&str], text: &str) -> Result<Service> {
        // `/cgi-bin/env` answers the page's text, then the request as busybox httpd's CGI
        // saw it (`REQUEST_URI`, one `HTTP_<NAME>` per header): what the proxy forwarded.
        let script = format!(
            "/busybox mkdir -p /tmp/www/cgi-bin && echo {text} > /tmp/www/index.html && \
             printf '#!/busybox sh\\necho Content-Type: text/plain\\necho\\n/busybox cat /tmp/www/index.html\\n/busybox env\\n' \
             > /tmp/www/cgi-bin/env && /busybox chmod +x /tmp/www/cgi-bin/env && \
             exec /busybox httpd -f -p 80 -h /tmp/www"
        );
        let mut args = extra.to_vec();
        args.extend_from_slice(&["--entrypoint", "/busybox"]);
        Service::create_cmd(&args, &["sh", "-c", &script])
    }

    /// Like `create`, with a command after the image.
    pub fn create_cmd(extra: &[&str], cmd: &[&str]) -> Result<Service> {
        let name = unique("svc");
        let mut args = vec![
            "service",
            "create",
            "--detach",
            "--quiet",
            "--no-resolve-image",
            "--name",
            &name,
        ];
        args.extend_from_slice(extra);
        args.push(BACKEND_IMAGE);
        args.extend_from_slice(cmd);
        docker(&args)?;
        Ok(Service { name })
    }

    /// A service routed at `host` (port 80) on `net` with `replicas` tasks.
    pub fn routed(net: &Network, replicas: u32, host: &str) -> Result<Service> {
        let (replicas, hosts) = (replicas.to_string(), format!("com.docker.lb.hosts={host}"));
        Service::create(&[
            "--network",
            &net.name,
            "--replicas",
            &replicas,
            "--label",
            &hosts,
            "--label",
            "com.docker.lb.port=80",
        ])
    }

    pub fn update(&self, extra: &[&str]) -> Result<()> {
        let mut args = vec!["service", "update", "--detach", "--quiet"];
        args.extend_from_slice(extra);
        args.push(&self.name);
        docker(&args).map(|_| ())
    }

    /// `docker service update` waiting until the service converged.
    pub fn update_and_wait(&self, extra: &[&str]) -> Result<()> {
        let mut args = vec!["service", "update", "--quiet"];
        args.extend_from_slice(extra);
        args.push(&self.name);
        docker(&args).map(|_| ())
    }

    /// When (Unix ns) the container of each running task started. (A task's own status
    /// timestamp is refreshed by later status reports, so it does not tell when it began to run.)
    pub fn running_since(&self) -> Result<Vec<i64>> {
        let ids = docker(&[
            "service",
            "ps",
            "--quiet",
            "--filter",
            "desired-state=running",
            &self.name,
        ])?;
        let mut out = vec![];
        for id in ids.lines() {
            let line = docker(&[
                "inspect",
                "--format",
                "{{.Status.State}} {{.Status.ContainerStatus.ContainerID}}",
                id,
            ])?;
            let Some(("running", container)) = line.split_once(' ') else {
                continue;
            };
            let started = docker(&["inspect", "--format", "{{.State.StartedAt}}", container])?;
            let ns = run(Command::new("date").args(["-d", &started, "+%s%N"]))?;
            out.push(String::from_utf8_lossy(&ns.stdout).trim().parse()?);
        }
        Ok(out)
    }

    pub fn id(&self) -> Result<String> {
        docker(&["service", "inspect", "--format", "{{.ID}}", &self.name])
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = docker(&["service", "rm", &self.name]);
    }
}

/// `interlock control --print` as a child; its stdout lines are snapshots.
pub struct ControlAgent {
    pub process: AgentProcess,
}

impl ControlAgent {
    pub fn start(args: &[&str]) -> Result<ControlAgent> {
        let mut cmd = Command::new(interlock_bin());
        cmd.args(["control", "--print"]).args(args);
        Ok(ControlAgent {
            process: AgentProcess::spawn(cmd)?,
        })
    }

    /// Every snapshot printed so far, oldest first.
    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.process
            .output()
            .iter()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for a snapshot that satisfies `pred`; returns it with the time it took to appear.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Snapshot) -> bool) -> Result<Snapshot> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.snapshots().into_iter().rev().find(|s| pred(s)) {
                if self.snapshots().last().is_some_and(|last| last.version == s.version) {
                    return Ok(s);
                }
            }
            if Instant::now() > deadline {
                let last = self.snapshots().pop();
                bail!("no snapshot with {what} within {timeout:?}; last: {last:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The HTTP route of service `name` in a snapshot.
pub fn route<'a>(s: &'a Snapshot, name: &str) -> Option<&'a interlock::model::HttpRoute> {
    s.http.iter().find(|r| r.service.name == name)
}
