//! `cargo xtask bench l7`: wrk against interlock, nginx and HAProxy, each proxying the same
//! route to the same backend (nginx answering a fixed body), on loopback, in one run.
//!
//! Cases: keep-alive, and a new connection per request. Also interlock's peak resident memory
//! under load, and a keep-alive run while its route table is swapped 10 times per second.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{cmd, setup};

const BACKEND_PORT: u16 = 18180;
const NGINX_PORT: u16 = 18181;
const HAPROXY_PORT: u16 = 18182;
const INTERLOCK_PORT: u16 = 18183;
const INTERLOCK_ADMIN: u16 = 18193;
const SECONDS: u32 = 8;

pub fn run() -> Result<()> {
    if !cmd::is_root() {
        bail!("bench l7 starts nginx and HAProxy: run it as root");
    }
    setup::ensure_packages(&["wrk", "nginx-light", "haproxy"])?;
    let agent = cmd::build_release_agent()?;
    let dir = std::env::temp_dir().join(format!("ilb-bench-l7-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&agent, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(agent: &Path, dir: &Path) -> Result<()> {
    let _backend = Proc::start("backend nginx", nginx(dir, "backend", &backend_conf(dir)))?;
    let _nginx = Proc::start("nginx", nginx(dir, "proxy", &nginx_proxy_conf(dir)))?;
    let haproxy_conf = dir.join("haproxy.cfg");
    std::fs::write(&haproxy_conf, haproxy_conf_text())?;
    let _haproxy = Proc::start("haproxy", {
        let mut c = Command::new("haproxy");
        c.arg("-db").arg("-f").arg(&haproxy_conf);
        c
    })?;
    let routes = dir.join("routes.json");
    write_routes(&routes, 1)?;
    let interlock = Proc::start("interlock", {
        let mut c = Command::new(agent);
        c.args(["proxy", "--http", &format!("127.0.0.1:{INTERLOCK_PORT}")])
            .args(["--admin", &format!("127.0.0.1:{INTERLOCK_ADMIN}"), "--routes"])
            .arg(&routes)
            .env("RUST_LOG", "warn");
        c
    })?;
    for port in [BACKEND_PORT, NGINX_PORT, HAPROXY_PORT, INTERLOCK_PORT] {
        wait_port(port)?;
    }

    let mut keepalive = Vec::new();
    for (name, port) in [
        ("interlock", INTERLOCK_PORT),
        ("nginx", NGINX_PORT),
        ("haproxy", HAPROXY_PORT),
    ] {
        let sampler = (name == "interlock").then(|| RssSampler::start(interlock.pid()));
        let ka = wrk(port, 64, false, SECONDS)?;
        if let Some(s) = sampler {
            println!("BENCH l7 interlock_rss_mb={:.1}", s.stop_mb());
        }
        let nc = wrk(port, 16, true, SECONDS)?;
        for (case, r) in [("keepalive", &ka), ("newconn", &nc)] {
            println!(
                "BENCH l7 proxy={name} case={case} rps={:.0} p99_ms={:.2} non2xx={} errors={}",
                r.rps, r.p99_ms, r.non2xx, r.errors
            );
        }
        keepalive.push((name, ka, nc));
    }
    let rps = |n: &str, newconn: bool| {
        keepalive
            .iter()
            .find(|(name, _, _)| *name == n)
            .map(|(_, ka, nc)| if newconn { nc.rps } else { ka.rps })
            .unwrap_or(0.0)
    };
    println!(
        "BENCH l7 interlock_vs_nginx={:.2} interlock_vs_haproxy={:.2} newconn_interlock_vs_nginx={:.2}",
        rps("interlock", false) / rps("nginx", false).max(1.0),
        rps("interlock", false) / rps("haproxy", false).max(1.0),
        rps("interlock", true) / rps("nginx", true).max(1.0),
    );

    // Route table swapped 10 times per second under keep-alive load.
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, routes) = (stop.clone(), routes.clone());
        std::thread::spawn(move || {
            let mut version = 2;
            while !stop.load(Ordering::Relaxed) {
                let _ = write_routes(&routes, version);
                version += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            version - 2
        })
    };
    let swapped = wrk(INTERLOCK_PORT, 64, false, 10)?;
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap_or(0);
    println!(
        "BENCH l7 swap_rps={:.0} swaps={swaps} swap_non2xx={} swap_errors={}",
        swapped.rps, swapped.non2xx, swapped.errors
    );
    Ok(())
}

/// One wrk run's figures.
struct WrkResult {
    rps: f64,
    p99_ms: f64,
    non2xx: u64,
    errors: u64,
}

fn wrk(port: u16, connections: u32, new_connection_each: bool, seconds: u32) -> Result<WrkResult> {
    let mut c = Command::new("wrk");
    c.args([
        "-t2",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ])
    .args(["-H", "Host: bench.example"]);
    if new_connection_each {
        c.args(["-H", "Connection: close"]);
    }
    let out = c
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    parse_wrk(&text).with_context(|| format!("unexpected wrk output:\n{text}"))
}

fn parse_wrk(text: &str) -> Option<WrkResult> {
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let p99 = text.lines().find_map(|l| l.trim().strip_prefix("99%"))?.trim();
    let p99_ms = duration_ms(p99)?;
    let non2xx = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    // "Socket errors: connect 0, read 12, write 0, timeout 0"
    let errors = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|v| {
            v.split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Some(WrkResult {
        rps,
        p99_ms,
        non2xx,
        errors,
    })
}

/// wrk prints durations like `812.00us`, `1.23ms`, `2.01s`.
fn duration_ms(s: &str) -> Option<f64> {
    let (num, factor) = if let Some(v) = s.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * factor)
}

fn write_routes(path: &Path, version: u64) -> Result<()> {
    let json = format!(
        r#"{{"version":{version},"http":[{{"service":{{"id":"bench","name":"bench"}},"hosts":["bench.example"],
        "path_prefix":"/","strip_prefix":false,"tls":"None","ssl_only":false,"websocket_endpoints":[],
        "stickiness":"None","redirects":[],"default_backend":false,"health_check":null,
        "backends":[{{"addr":"127.0.0.1:{BACKEND_PORT}","weight":1,"id":"backend"}}]}}],"l4":[],"networks":[]}}"#
    );
    // Atomic replace: the proxy never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn nginx(dir: &Path, name: &str, conf: &str) -> Command {
    let conf_path = dir.join(format!("{name}.conf"));
    let prefix = dir.join(name);
    let _ = std::fs::create_dir_all(&prefix);
    let _ = std::fs::write(&conf_path, conf.replace("PREFIX", &prefix.to_string_lossy()));
    let mut c = Command::new("nginx");
    c.arg("-p").arg(&prefix).arg("-c").arg(&conf_path);
    c
}

const NGINX_COMMON: &str = "daemon off;\nerror_log PREFIX/error.log;\npid PREFIX/nginx.pid;\n";
const NGINX_HTTP_COMMON: &str = "access_log off;\nclient_body_temp_path PREFIX/body;\nproxy_temp_path PREFIX/proxy;\n\
    fastcgi_temp_path PREFIX/fastcgi;\nuwsgi_temp_path PREFIX/uwsgi;\nscgi_temp_path PREFIX/scgi;\n";

fn backend_conf(_dir: &Path) -> String {
    format!(
        "{NGINX_COMMON}worker_processes 1;\nevents {{ worker_connections 4096; }}\nhttp {{\n{NGINX_HTTP_COMMON}\
         keepalive_requests 1000000;\nserver {{ listen 127.0.0.1:{BACKEND_PORT}; location / {{ return 200 \"ok\\n\"; }} }}\n}}\n"
    )
}

fn nginx_proxy_conf(_dir: &Path) -> String {
    format!(
        "{NGINX_COMMON}worker_processes 2;\nevents {{ worker_connections 4096; }}\nhttp {{\n{NGINX_HTTP_COMMON}\
         keepalive_requests 1000000;\nupstream backend {{ server 127.0.0.1:{BACKEND_PORT}; keepalive 128; }}\n\
         server {{ listen 127.0.0.1:{NGINX_PORT}; server_name bench.example;\n\
         location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\";\n\
         proxy_set_header Host $host; proxy_set_header X-Forwarded-For $remote_addr; }} }}\n}}\n"
    )
}

fn haproxy_conf_text() -> String {
    format!(
        "global\n  nbthread 2\n  maxconn 4096\ndefaults\n  mode http\n  timeout connect 3s\n  timeout client 60s\n\
         timeout server 60s\n  option forwardfor\n  http-reuse always\nfrontend fe\n  bind 127.0.0.1:{HAPROXY_PORT}\n\
         acl host_bench hdr(host) -i bench.example\n  use_backend be if host_bench\nbackend be\n\
         server s1 127.0.0.1:{BACKEND_PORT}\n"
    )
}

fn wait_port(port: u16) -> Result<()> {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nothing listens on 127.0.0.1:{port} after 10 s")
}

/// A child process killed when dropped.
struct Proc {
    child: Child,
}

impl Proc {
    fn start(what: &str, mut cmd: Command) -> Result<Proc> {
        let child = cmd
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Proc { child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first (nginx removes its pid file), then make sure.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples a process's VmRSS every 100 ms; reports the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak_kb: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let (stop, peak_kb) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, p) = (stop.clone(), peak_kb.clone());
        let status = PathBuf::from(format!("/proc/{pid}/status"));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kb) = std::fs::read_to_string(&status).ok().and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.split_whitespace().next()?.parse().ok())
                }) {
                    p.fetch_max(kb, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        RssSampler {
            stop,
            peak_kb,
            thread: Some(thread),
        }
    }

    fn stop_mb(mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak_kb.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let text = "Running 8s test\n  Latency Distribution\n     50%  512.00us\n     99%    2.50ms\n\
                    Requests/sec:  41234.56\n  Non-2xx or 3xx responses: 3\n  Socket errors: connect 0, read 2, write 1, timeout 0\n";
        let r = parse_wrk(text).unwrap();
        assert_eq!((r.rps, r.p99_ms, r.non2xx, r.errors), (41234.56, 2.5, 3, 3));
        assert_eq!(duration_ms("812.00us"), Some(0.812));
        assert_eq!(duration_ms("1.5s"), Some(1500.0));
    }
}
