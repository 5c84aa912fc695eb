//! `cargo xtask bench e2e`: the deployed stack on the local swarm.
//! - Route-live latency: a service scaled 0 -> 1, twenty times; from the task's running
//!   timestamp to the first 200 through the proxy. (No reference: Docker's routing mesh, the
//!   natural one, refuses connections on this single-node swarm advertised on 127.0.0.1.)
//! - Errors during rolling updates (start-first, then stop-first) at 200 requests/s.
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use interlock_tests::docker::{ensure_backend_image, unique, Network, Service};
use interlock_tests::load::Load;
use interlock_tests::stack::{get_at, Stack, HTTP_PORT};

const ROUNDS: usize = 20;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            bail!("{what} within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Scale-ups of `svc` 0 -> 1; ms from the task running to the first 200 on `port`.
fn live_latencies(svc: &Service, port: u16, host: &str) -> Result<Vec<f64>> {
    let mut out = vec![];
    for _ in 0..ROUNDS {
        svc.update(&["--replicas", "0"])?;
        until("no answer at 0 replicas", Duration::from_secs(60), || {
            !get_at(port, host, "/").is_ok_and(|(s, _)| s == 200)
        })?;
        std::thread::sleep(Duration::from_millis(500));
        svc.update(&["--replicas", "1"])?;
        until("a first answer after the scale-up", Duration::from_secs(60), || {
            get_at(port, host, "/").is_ok_and(|(s, _)| s == 200)
        })?;
        let answered = now_ns();
        let running = svc.running_since()?.into_iter().max().unwrap_or(answered);
        out.push((answered - running) as f64 / 1e6);
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() -> Result<()> {
    ensure_backend_image()?;
    let net = Network::new()?;
    let _stack = Stack::deploy("")?;
    let host = format!("{}.bench", unique("e"));
    let labels = [
        "--network",
        net.name.as_str(),
        "--stop-grace-period",
        "2s",
        "--label",
        &format!("com.docker.lb.hosts={host}"),
        "--label",
        "com.docker.lb.port=80",
    ];
    let svc = Service::page(&[&labels[..], &["--replicas", "0"]].concat(), "e2e")?;
    let live = live_latencies(&svc, HTTP_PORT, &host)?;

    svc.update_and_wait(&["--replicas", "3"])?;
    let load = Load::start(&host, "/", 200);
    std::thread::sleep(Duration::from_secs(2));
    for order in ["start-first", "stop-first"] {
        svc.update_and_wait(&["--force", "--update-order", order, "--update-delay", "0s"])?;
        std::thread::sleep(Duration::from_secs(2));
    }
    let r = load.stop();
    println!(
        "BENCH e2e live_p50_ms={:.0} live_p99_ms={:.0} rolling_errors={} rolling_requests={}",
        pct(&live, 0.5),
        pct(&live, 0.99),
        r.non2xx + r.errors,
        r.ok + r.non2xx + r.errors,
    );
    Ok(())
}
