//! `cargo xtask bench hardening`: first the fuzzers at depth (`cargo xtask fuzz --cases
//! 20000`), then the proxy under 10,000 concurrent keep-alive clients (wrk)
//! and a slowloris attack (1,000 connections each sending one header byte every 3 s) at once,
//! while a legitimate client sends one request every 50 ms on a new connection. Reports how
//! many legitimate requests were answered 2xx (and their p99), wrk's rate and errors, how many
//! slowloris connections the proxy cut (its header read timeout), and interlock's peak RSS.
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::l7::configs::{self, Nginx, BACKEND_PORT};
use super::l7::process::{wait_port, Placement, Proc, RssSampler};
use crate::{cmd, setup};

const PORT: u16 = 18280;
const ADMIN: u16 = 18290;
const CLIENTS: u32 = 10_000;
const SLOWLORIS: usize = 1_000;
const SECONDS: u32 = 20;
/// Cases per fuzzed property (plus as many HTTP requests and ten times as many XDP frames).
const FUZZ_CASES: u32 = 20_000;

pub fn run() -> Result<()> {
    if !cmd::is_root() {
        bail!("bench hardening raises file limits and starts nginx: run it as root");
    }
    setup::ensure_packages(&["wrk", "nginx-light"])?;
    let fuzz_execs = crate::fuzz::run(false, FUZZ_CASES)?;
    raise_nofile();
    let agent = cmd::build_release_agent()?;
    let dir = std::env::temp_dir().join(format!("ilb-bench-hardening-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&agent, &dir, fuzz_execs);
    if std::env::var_os("KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// Children inherit it: wrk and the proxy each need more than 10,000 descriptors.
fn raise_nofile() {
    let limit = libc::rlimit {
        rlim_cur: 65_536,
        rlim_max: 65_536,
    };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
}

fn measure(agent: &std::path::Path, dir: &std::path::Path, fuzz_execs: u64) -> Result<()> {
    let backend = Nginx {
        dir,
        name: "backend",
        single_process: false,
        // Fewer than the 10,000 clients: the proxy's per-backend limit (1,024 requests at
        // once, the rest in line) must keep it from being flooded into refusing (502s).
        worker_connections: 4_096,
    };
    let _backend = Proc::start(
        "backend nginx",
        backend.command(Placement::Load, &configs::backend_http()),
    )?;
    let routes = dir.join("routes.json");
    configs::write_routes(&routes, 1)?;
    let mut interlock = configs::interlock(Placement::Proxy, agent, &routes, PORT, ADMIN);
    interlock.stderr(std::fs::File::create(dir.join("interlock.log"))?);
    let interlock = Proc::start("interlock", interlock)?;
    for port in [BACKEND_PORT, PORT] {
        wait_port(port, Duration::from_secs(10))?;
    }
    let rss = RssSampler::start(interlock.pid());
    let stop = Arc::new(AtomicBool::new(false));
    let cut = Arc::new(AtomicU64::new(0));
    let slowloris = {
        let (stop, cut) = (stop.clone(), cut.clone());
        std::thread::spawn(move || slowloris(&stop, &cut))
    };
    let legit = {
        let stop = stop.clone();
        std::thread::spawn(move || legitimate(&stop))
    };
    std::thread::sleep(Duration::from_secs(2)); // the slow connections are open first
    let wrk = Placement::Load
        .command("wrk")
        .args([
            "-t1",
            &format!("-c{CLIENTS}"),
            &format!("-d{SECONDS}s"),
            "--timeout",
            "10s",
            "--latency",
        ])
        .args(["-H", "Host: bench.example"])
        .arg(format!("http://127.0.0.1:{PORT}/"))
        .output()?;
    stop.store(true, Ordering::Relaxed);
    let wrk_text = String::from_utf8_lossy(&wrk.stdout).into_owned();
    let w = super::l7::wrk::parse(&wrk_text).unwrap_or_default();
    let (ok, total, p99_ms) = legit.join().map_err(|_| anyhow::anyhow!("legit client panicked"))?;
    let _ = slowloris.join();
    let peak = rss.stop_mb();
    println!(
        "BENCH hardening fuzz_execs={fuzz_execs} crashes=0 clients={CLIENTS} slowloris={SLOWLORIS} \
         legit_ok={ok}/{total} legit_p99_ms={p99_ms:.1} slowloris_ok={} wrk_rps={:.0} wrk_non2xx={} wrk_errors={} \
         slowloris_cut={} peak_rss_mb={peak:.1}",
        ok == total && total > 0,
        w.rps,
        w.non2xx,
        w.errors,
        cut.load(Ordering::Relaxed),
    );
    Ok(())
}

/// Keeps `SLOWLORIS` connections sending a request head one byte every 3 s; a connection the
/// proxy closes is counted and replaced.
fn slowloris(stop: &AtomicBool, cut: &AtomicU64) {
    let open = || -> Option<TcpStream> {
        let mut s = TcpStream::connect(("127.0.0.1", PORT)).ok()?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: bench.example\r\n").ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    };
    let mut conns: Vec<Option<TcpStream>> = (0..SLOWLORIS).map(|_| open()).collect();
    while !stop.load(Ordering::Relaxed) {
        for c in conns.iter_mut() {
            let alive = c.as_mut().is_some_and(|s| s.write_all(b"X").is_ok());
            if !alive {
                if c.is_some() {
                    cut.fetch_add(1, Ordering::Relaxed);
                }
                *c = open();
            }
        }
        for _ in 0..30 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One request every 50 ms on a new connection; returns (2xx answers, requests, p99 ms).
fn legitimate(stop: &AtomicBool) -> (u64, u64, f64) {
    let (mut ok, mut total, mut latencies) = (0, 0, vec![]);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        total += 1;
        if get().is_ok_and(|status| status.starts_with("HTTP/1.1 2")) {
            ok += 1;
        }
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(50));
    }
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies.get(latencies.len() * 99 / 100).copied().unwrap_or(0.0);
    (ok, total, p99)
}

fn get() -> Result<String> {
    use std::io::Read;
    let mut s = TcpStream::connect(("127.0.0.1", PORT))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: bench.example\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
