//! `cargo xtask bench l7`: wrk against interlock, nginx and HAProxy, each proxying the same
//! route to the same backend (nginx answering a fixed body), on loopback, in one run.
//!
//! Like for like: nginx and HAProxy add the headers interlock adds, as NGINX-based
//! Interlock did (`configs::Work::LikeInterlock`), and nginx logs the same fields. nginx
//! with only Host and X-Forwarded-For and its default log line runs too, as `nginx-plain`.
//!
//! Fair and repeatable: every proxy runs one worker on the same CPU of its own, with its
//! access log on (production defaults), while wrk and the backend share the other CPU
//! (`process::Placement`). Cases (`wrk::Case`): keep-alive, a new connection per
//! request, and keep-alive paced to the same load for every proxy, in interleaved rounds,
//! medians reported. Also
//! interlock's peak resident memory under load, a keep-alive run while its route table is
//! swapped 10 times per second, and instructions per request (callgrind) for interlock and
//! nginx, which the machine's other load does not change.
pub(super) mod configs;
mod instructions;
pub(super) mod process;
pub(super) mod wrk;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::{cmd, setup};
use configs::{Nginx, Work, BACKEND_PORT};
use process::{wait_port, Placement, Proc, RssSampler, WORKERS};
use wrk::{Case, WrkResult};

const NGINX_PORT: u16 = 18181;
const NGINX_PLAIN_PORT: u16 = 18186;
const HAPROXY_PORT: u16 = 18182;
const INTERLOCK_PORT: u16 = 18183;
const INTERLOCK_ADMIN: u16 = 18193;
const NGINX_PROFILED_PORT: u16 = 18184;
const INTERLOCK_PROFILED_PORT: u16 = 18185;
const INTERLOCK_PROFILED_ADMIN: u16 = 18195;
/// Each case runs `rounds()` times for `SECONDS`.
const SECONDS: u32 = 4;
const ROUNDS: usize = 7;

/// `ILB_BENCH_ROUNDS` when set (3 or more): more rounds narrow the medians on a noisy host.
fn rounds() -> Result<usize> {
    match std::env::var("ILB_BENCH_ROUNDS") {
        Err(_) => Ok(ROUNDS),
        Ok(v) => match v.parse::<usize>() {
            Ok(n) if n >= 3 => Ok(n),
            _ => bail!("ILB_BENCH_ROUNDS={v:?}: expected a number of rounds, 3 or more"),
        },
    }
}

pub fn run() -> Result<()> {
    if !cmd::is_root() {
        bail!("bench l7 starts nginx and HAProxy: run it as root");
    }
    let rounds = rounds()?;
    setup::ensure_packages(&["wrk", "nginx-light", "haproxy", "valgrind"])?;
    let agent = cmd::build_release_agent()?;
    let dir = std::env::temp_dir().join(format!("ilb-bench-l7-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&agent, &dir, rounds);
    // For profiling: ILB_BENCH_KEEP=1 keeps the logs and callgrind files.
    if std::env::var_os("ILB_BENCH_KEEP").is_some() {
        println!("BENCH l7 files kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn measure(agent: &Path, dir: &Path, rounds: usize) -> Result<()> {
    let backend = Nginx {
        dir,
        name: "backend",
        single_process: false,
        worker_connections: 4096,
    };
    let _backend = Proc::start(
        "backend nginx",
        backend.command(Placement::Load, &configs::backend_http()),
    )?;
    let mut _nginxes = Vec::new();
    for (name, port, work) in [
        ("nginx", NGINX_PORT, Work::LikeInterlock),
        ("nginx-plain", NGINX_PLAIN_PORT, Work::Plain),
    ] {
        let nginx = Nginx {
            dir,
            name,
            single_process: false,
            worker_connections: 4096,
        };
        let http = configs::nginx_proxy_http(dir, port, work);
        _nginxes.push(Proc::start(name, nginx.command(Placement::Proxy, &http))?);
    }
    let mut haproxy = configs::haproxy(dir, HAPROXY_PORT)?;
    haproxy
        .stdout(std::fs::File::create(dir.join("haproxy-access.log"))?)
        .stderr(std::fs::File::create(dir.join("haproxy-stderr.log"))?);
    let _haproxy = Proc::start("haproxy", haproxy)?;
    let routes = dir.join("routes.json");
    configs::write_routes(&routes, 1)?;
    let mut interlock = configs::interlock(Placement::Proxy, agent, &routes, INTERLOCK_PORT, INTERLOCK_ADMIN);
    interlock.stderr(std::fs::File::create(dir.join("interlock.log"))?);
    let interlock = Proc::start("interlock", interlock)?;
    for port in [BACKEND_PORT, NGINX_PORT, NGINX_PLAIN_PORT, HAPROXY_PORT, INTERLOCK_PORT] {
        wait_port(port, Duration::from_secs(10))?;
    }
    println!("BENCH l7 setup workers={WORKERS} proxy_cpu=1 load_cpu=0 nice=-10 access_log=on wrk_threads=1");
    if std::env::var_os("ILB_BENCH_INSTRUCTIONS_ONLY").is_some() {
        // For profiling: only the callgrind count (a minute instead of four).
        drop(interlock);
        return instructions_per_request(agent, dir, &routes);
    }

    // Rounds interleave the proxies, so a burst of other work on the machine hits all of
    // them alike; each figure is the median of its rounds.
    let proxies = [
        ("interlock", INTERLOCK_PORT),
        ("nginx", NGINX_PORT),
        ("nginx-plain", NGINX_PLAIN_PORT),
        ("haproxy", HAPROXY_PORT),
    ];
    let mut runs: Vec<(&str, Case, WrkResult)> = Vec::new();
    let sampler = RssSampler::start(interlock.pid());
    for round in 0..rounds {
        for case in Case::ALL {
            // Each round starts with the next proxy, so none is always the one that runs
            // right after another case.
            for i in 0..proxies.len() {
                let (name, port) = proxies[(round + i) % proxies.len()];
                runs.push((name, case, wrk::timed(dir, port, case, SECONDS)?));
            }
        }
    }
    println!("BENCH l7 interlock_rss_mb={:.1}", sampler.stop_mb());
    let median = |name: &str, case: Case| WrkResult::median(results(&runs, name, case));
    for (name, _) in proxies {
        for case in Case::ALL {
            let r = median(name, case);
            println!(
                "BENCH l7 proxy={name} case={} rps={:.0} p99_ms={:.2} non2xx={} errors={}",
                case.name(),
                r.rps,
                r.p99_ms,
                r.non2xx,
                r.errors
            );
        }
    }
    let (i_ka, n_ka, h_ka) = (
        median("interlock", Case::KeepAlive),
        median("nginx", Case::KeepAlive),
        median("haproxy", Case::KeepAlive),
    );
    let (i_nc, n_nc) = (
        median("interlock", Case::NewConnection),
        median("nginx", Case::NewConnection),
    );
    let (i_pc, n_pc) = (median("interlock", Case::Paced), median("nginx", Case::Paced));
    let (p_ka, p_nc, p_pc) = (
        median("nginx-plain", Case::KeepAlive),
        median("nginx-plain", Case::NewConnection),
        median("nginx-plain", Case::Paced),
    );
    println!(
        "BENCH l7 interlock_vs_nginx={:.2} interlock_vs_haproxy={:.2} newconn_interlock_vs_nginx={:.2} \
         p99_interlock_vs_nginx={:.2} newconn_p99_interlock_vs_nginx={:.2} paced_p99_interlock_vs_nginx={:.2}",
        i_ka.rps / n_ka.rps.max(1.0),
        i_ka.rps / h_ka.rps.max(1.0),
        i_nc.rps / n_nc.rps.max(1.0),
        i_ka.p99_ms / n_ka.p99_ms.max(0.001),
        i_nc.p99_ms / n_nc.p99_ms.max(0.001),
        i_pc.p99_ms / n_pc.p99_ms.max(0.001),
    );
    println!(
        "BENCH l7 interlock_vs_nginx_plain={:.2} newconn_interlock_vs_nginx_plain={:.2} \
         p99_interlock_vs_nginx_plain={:.2} paced_p99_interlock_vs_nginx_plain={:.2}",
        i_ka.rps / p_ka.rps.max(1.0),
        i_nc.rps / p_nc.rps.max(1.0),
        i_ka.p99_ms / p_ka.p99_ms.max(0.001),
        i_pc.p99_ms / p_pc.p99_ms.max(0.001),
    );

    paired("nginx", &runs);
    paired("nginx-plain", &runs);

    let swapped = under_swaps(dir, &routes)?;
    println!(
        "BENCH l7 swap_rps={:.0} swaps={} swap_non2xx={} swap_errors={}",
        swapped.0.rps, swapped.1, swapped.0.non2xx, swapped.0.errors
    );
    drop(interlock);
    instructions_per_request(agent, dir, &routes)
}

/// `name`'s results for `case`, round by round.
fn results<'a>(runs: &'a [(&str, Case, WrkResult)], name: &'a str, case: Case) -> impl Iterator<Item = &'a WrkResult> {
    runs.iter()
        .filter(move |(n, c, _)| *n == name && *c == case)
        .map(|(_, _, r)| r)
}

/// Interlock against `reference` round by round (the two ran seconds apart, so a slow spell
/// of the host hits both alike): the median of the per-round ratios, the middle half of the
/// p99 ratios (how far the rounds scatter), and the rounds in which interlock had both the
/// higher rate and the lower p99.
fn paired(reference: &str, runs: &[(&str, Case, WrkResult)]) {
    let rounds = results(runs, "interlock", Case::KeepAlive).count();
    let mut line = format!("BENCH l7 paired reference={reference} rounds={rounds}");
    for case in Case::ALL {
        let pairs: Vec<(&WrkResult, &WrkResult)> = results(runs, "interlock", case)
            .zip(results(runs, reference, case))
            .collect();
        let rps = wrk::middle(pairs.iter().map(|(i, r)| i.rps / r.rps.max(1.0)).collect());
        let [low, p99, high] = wrk::quartiles(pairs.iter().map(|(i, r)| i.p99_ms / r.p99_ms.max(0.001)).collect());
        let won = pairs
            .iter()
            .filter(|(i, r)| i.rps >= r.rps && i.p99_ms <= r.p99_ms)
            .count();
        let case = case.name();
        line += &format!(
            " {case}_rps_ratio={rps:.2} {case}_p99_ratio={p99:.2} {case}_p99_ratio_iqr={low:.2}-{high:.2} \
             {case}_rounds_won={won}"
        );
    }
    println!("{line}");
}

/// Instructions per keep-alive request of interlock and nginx, under callgrind.
fn instructions_per_request(agent: &Path, dir: &Path, routes: &Path) -> Result<()> {
    let interlock_ipr = instructions::per_request(dir, "interlock", INTERLOCK_PROFILED_PORT, &|out| {
        let mut c = configs::interlock(
            Placement::Profiled(out),
            agent,
            routes,
            INTERLOCK_PROFILED_PORT,
            INTERLOCK_PROFILED_ADMIN,
        );
        c.stderr(std::fs::File::create(dir.join("interlock-profiled.log"))?);
        Ok((c, libc::SIGTERM))
    })?;
    let profiled_nginx = Nginx {
        dir,
        name: "profiled",
        single_process: true,
        worker_connections: 4096,
    };
    let mut nginx_ipr = [0.0; 2];
    for (ipr, (name, work)) in nginx_ipr
        .iter_mut()
        .zip([("nginx", Work::LikeInterlock), ("nginx-plain", Work::Plain)])
    {
        *ipr = instructions::per_request(dir, name, NGINX_PROFILED_PORT, &|out| {
            let http = configs::nginx_proxy_http(dir, NGINX_PROFILED_PORT, work);
            Ok((profiled_nginx.command(Placement::Profiled(out), &http), libc::SIGQUIT))
        })?;
    }
    let [nginx_ipr, plain_ipr] = nginx_ipr;
    println!(
        "BENCH l7 instructions_per_request interlock={interlock_ipr:.0} nginx={nginx_ipr:.0} \
         nginx_plain={plain_ipr:.0} interlock_vs_nginx={:.2} interlock_vs_nginx_plain={:.2}",
        interlock_ipr / nginx_ipr.max(1.0),
        interlock_ipr / plain_ipr.max(1.0),
    );
    Ok(())
}

/// Keep-alive load on interlock while its route file is rewritten 10 times per second.
fn under_swaps(dir: &Path, routes: &Path) -> Result<(WrkResult, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, routes) = (stop.clone(), routes.to_path_buf());
        std::thread::spawn(move || {
            let mut version = 2;
            while !stop.load(Ordering::Relaxed) {
                let _ = configs::write_routes(&routes, version);
                version += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            version - 2
        })
    };
    let result = wrk::timed(dir, INTERLOCK_PORT, Case::KeepAlive, 10);
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap_or(0);
    Ok((result?, swaps))
}
