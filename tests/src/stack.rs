//! The interlock stack (`deploy/stack.yml`) deployed by a test, removed on drop together with
//! its pinned maps; and plain HTTP requests through it.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::agent::interlock_bin;
use crate::docker::{docker, unique, Network, Service};
use crate::netns::run;

/// Node ports the test stacks publish (the demo's stack keeps 80/443).
pub const HTTP_PORT: u16 = 18080;
pub const HTTPS_PORT: u16 = 18443;

pub struct Stack {
    pub name: String,
    bpffs: PathBuf,
}

impl Stack {
    /// Deploys the stack (image `INTERLOCK_IMAGE`, default `interlock:local` from
    /// `cargo xtask image`) and waits until its proxy answers. `xdp_interfaces`: where the L4
    /// fast path listens ("" for none).
    pub fn deploy(xdp_interfaces: &str) -> Result<Stack> {
        Stack::deploy_with(xdp_interfaces, &[])
    }

    /// `deploy` with more of the stack's variables (`INTERLOCK_*` settings it passes on).
    pub fn deploy_with(xdp_interfaces: &str, env: &[(&str, &str)]) -> Result<Stack> {
        let name = unique("stack");
        let bpffs = PathBuf::from("/sys/fs/bpf").join(&name);
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/stack.yml");
        let stack = Stack { name, bpffs };
        // The snapshot stream's TLS secrets (kept when they exist).
        run(Command::new(interlock_bin()).args(["certs", "--docker-secrets"]))?;
        run(Command::new("docker")
            .args(["stack", "deploy", "--compose-file"])
            .arg(&file)
            .arg(&stack.name)
            .env(
                "INTERLOCK_IMAGE",
                std::env::var("INTERLOCK_IMAGE").unwrap_or_else(|_| "interlock:local".into()),
            )
            .env("INTERLOCK_XDP_INTERFACES", xdp_interfaces)
            .env("INTERLOCK_HTTP_PORT", HTTP_PORT.to_string())
            .env("INTERLOCK_HTTPS_PORT", HTTPS_PORT.to_string())
            .env("INTERLOCK_BPFFS", &stack.bpffs)
            .env("INTERLOCK_DRAIN_GRACE_S", "2")
            .envs(env.iter().copied()))?;
        stack.wait_ready(Duration::from_secs(90))?;
        Ok(stack)
    }

    /// Waits until a proxy answers anything on the HTTP port.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while get("ready.invalid", "/").is_err() {
            if Instant::now() > deadline {
                let ps = docker(&["service", "ps", "--no-trunc", &format!("{}_interlock", self.name)]);
                bail!("the stack's proxy did not answer within {timeout:?}; tasks: {ps:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// Where the stack's agents pin their maps and links on the host.
    pub fn bpffs(&self) -> &std::path::Path {
        &self.bpffs
    }

    /// The running agent container of the manager service.
    pub fn agent_container(&self) -> Result<String> {
        let label = format!("label=com.docker.swarm.service.name={}_interlock", self.name);
        let id = docker(&["ps", "--quiet", "--filter", &label])?;
        match id.lines().next() {
            Some(id) => Ok(id.to_string()),
            None => bail!("no running agent container for stack {}", self.name),
        }
    }

    /// The agent container's health as Docker reports it (`starting`, `healthy`, `unhealthy`):
    /// the stack's health check runs `interlock ready`.
    pub fn health(&self) -> Result<String> {
        let container = self.agent_container()?;
        docker(&["inspect", "--format", "{{.State.Health.Status}}", &container]).map(|s| s.trim().to_string())
    }

    /// `interlock status` run inside the agent container.
    pub fn status(&self) -> Result<String> {
        docker(&["exec", &self.agent_container()?, "/interlock", "status"])
    }

    /// The agent's `/metrics`, fetched inside its network namespace (the admin address is
    /// loopback, and the image has no HTTP client).
    pub fn metrics(&self) -> Result<String> {
        let pid = docker(&["inspect", "--format", "{{.State.Pid}}", &self.agent_container()?])?;
        let out = Command::new("nsenter")
            .args([
                "-t",
                pid.trim(),
                "-n",
                "busybox",
                "wget",
                "-qO-",
                "http://127.0.0.1:9090/metrics",
            ])
            .output()?;
        if !out.status.success() {
            bail!("fetching /metrics: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The agent's tasks with their states and errors.
    pub fn tasks(&self) -> String {
        docker(&["service", "ps", "--no-trunc", &format!("{}_interlock", self.name)])
            .unwrap_or_else(|e| format!("{e:#}"))
    }

    /// The running agent container's own log (`docker logs`, which ends; `docker service logs`
    /// has been seen to hang here once a task of the service was replaced).
    pub fn agent_log(&self) -> String {
        match self.agent_container() {
            Ok(container) => docker_output(&["logs", &container]),
            Err(e) => format!("{e:#}"),
        }
    }

    /// The logs of every agent container of the stack, replaced ones included, oldest
    /// first (`docker logs` of each: `docker service logs` was seen to hang once a task
    /// was replaced, which would hang the failing test that asked for it).
    pub fn logs(&self) -> String {
        let label = format!("label=com.docker.swarm.service.name={}_interlock", self.name);
        let ids = match docker(&["ps", "--all", "--quiet", "--filter", &label]) {
            Ok(ids) => ids,
            Err(e) => return format!("{e:#}"),
        };
        // `docker ps` lists the newest first.
        ids.lines()
            .rev()
            .map(|id| format!("--- agent container {id}:\n{}", docker_output(&["logs", id])))
            .collect()
    }
}

/// What `docker args` printed, stdout then stderr (or why it could not run).
fn docker_output(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_else(|e| format!("docker {}: {e}", args.join(" ")))
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = docker(&["stack", "rm", &self.name]);
        // Containers leave (and release ports and networks) after their drain.
        let label = format!("label=com.docker.stack.namespace={}", self.name);
        let deadline = Instant::now() + Duration::from_secs(60);
        while docker(&["ps", "--all", "--quiet", "--filter", &label]).is_ok_and(|ids| !ids.is_empty())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(250));
        }
        let network = format!("{}_interlock", self.name);
        for _ in 0..40 {
            if docker(&["network", "inspect", &network]).is_err() || docker(&["network", "rm", &network]).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        // Unpinning the links detaches the XDP programs the stack left on the host.
        let _ = std::fs::remove_dir_all(&self.bpffs);
    }
}

/// One `GET` through the stack's proxy with `Connection: close`; returns the status code and
/// the body. Minimal on purpose (no chunked decoding): enough to check answers.
pub fn get(host: &str, path: &str) -> Result<(u16, String)> {
    get_at(HTTP_PORT, host, path)
}

/// `get` on another local port.
pub fn get_at(port: u16, host: &str, path: &str) -> Result<(u16, String)> {
    send_at(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}

/// Sends `request` to the stack's proxy as it is (it should ask for `Connection: close`);
/// returns the status code and the body, as `get`.
pub fn send(request: &str) -> Result<(u16, String)> {
    send_at(HTTP_PORT, request)
}

fn send_at(port: u16, request: &str) -> Result<(u16, String)> {
    send_full_at(port, request).map(|(status, _, body)| (status, body))
}

/// Like `send`, with the response head too (status line and header lines, as they came):
/// for answers whose headers matter (a redirect's `Location`).
pub fn send_full(request: &str) -> Result<(u16, String, String)> {
    send_full_at(HTTP_PORT, request)
}

/// The value of header `name` in a response head from `send_full` (case-insensitive name).
pub fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn send_full_at(port: u16, request: &str) -> Result<(u16, String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).context("connecting")?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).context("reading the answer")?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("not an HTTP answer: {text:?}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Ok((status, head.to_string(), body))
}

/// A chunked body's data (enough for tests: sizes without extensions).
fn dechunk(mut body: &str) -> String {
    let mut data = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        data.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    data
}

/// A page service (answers `text`) on `net`, routed by the stack for `host` to port 80;
/// `extra` adds `docker service create` flags.
pub fn routed_page(net: &Network, host: &str, extra: &[&str], text: &str) -> Result<Service> {
    let hosts = format!("com.docker.lb.hosts={host}");
    let mut args = vec![
        "--network",
        net.name.as_str(),
        "--label",
        &hosts,
        "--label",
        "com.docker.lb.port=80",
    ];
    args.extend_from_slice(extra);
    Service::page(&args, text)
}

/// Waits until `host` answers `GET /` with 200; the seconds it took.
pub fn wait_served(host: &str, timeout: Duration) -> Result<f64> {
    crate::wait_until(&format!("{host} answering 200"), timeout, || {
        Ok(get(host, "/")?.0 == 200)
    })
}
