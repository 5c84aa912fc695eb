//! The `interlock proxy` binary as operators run it:
//! - with one worker thread, where it runs tokio's current-thread scheduler
//!   (`interlock::runtime`): it serves a routes file, follows a rewritten one, and exits
//!   cleanly on SIGTERM; a bad worker count is refused, naming the variable;
//! - at start, following a leader: its HTTP port opens only once the first routes are in
//!   place (refused before, never a 404 for a host about to be routed), or after
//!   `--first-routes-wait-s` without routes; SIGTERM while it waits ends it cleanly;
//! - readiness: `/readyz` and `interlock ready` (the stack's health check) say not ready
//!   while it waits for routes and while it drains, ready in between;
//! - restarts: a proxy started on the address another serves takes its listening socket
//!   over, and the old one drains: under load, no connection is refused or cut, twice in a
//!   row; without the handover the second proxy cannot start there.
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use interlock::control::{snapshot_channel, stream::serve_snapshots};
use interlock::model::{Backend, HttpRoute, ServiceRef, Snapshot};
use interlock_tests::agent::{interlock_bin, AgentProcess};
use interlock_tests::{report, wait_until};

/// A keep-alive HTTP/1.1 backend answering every request with `200` and its name.
fn backend(name: &'static str) -> SocketAddr {
    slow_backend(name, Duration::ZERO).0
}

/// `backend`, answering each request `delay` after its head came; the receiver hears of
/// each head as it comes.
fn slow_backend(name: &'static str, delay: Duration) -> (SocketAddr, std::sync::mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (came, came_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let came = came.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    // A request head ends with an empty line (the proxy sends no body here).
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let _ = came.send(());
                    std::thread::sleep(delay);
                    let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}", name.len());
                    if writer.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, came_rx)
}

/// A snapshot routing `bench.example` to `backend`.
fn routes(version: u64, backend: SocketAddr) -> Snapshot {
    let service = ServiceRef {
        id: "one".into(),
        name: "one".into(),
    };
    let id = format!("b{version}");
    let backends = vec![Backend {
        addr: backend,
        weight: 1,
        id,
    }];
    Snapshot {
        version,
        http: vec![HttpRoute::plain(service, vec!["bench.example".into()], "/", backends)],
        ..Snapshot::default()
    }
}

/// The proxy's routes file: `routes(version, backend)`.
fn write_routes(path: &Path, version: u64, backend: SocketAddr) {
    let snapshot = routes(version, backend);
    // Replaced in one step, so the proxy never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&snapshot).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `GET /` for `bench.example`: the status code and the body.
fn get(proxy: SocketAddr) -> std::io::Result<(u16, String)> {
    get_path(proxy, "/")
}

/// `GET path` for `bench.example`: the status code and the body.
fn get_path(proxy: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(proxy)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: bench.example\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let status = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Ok((status, body))
}

/// A loopback address nothing listens on (at the moment of asking).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A directory of its own, removed however the test ends.
struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn one_worker_serves_follows_the_routes_file_and_stops_on_sigterm() {
    let scratch = Scratch(std::env::temp_dir().join(format!("ilt-one-worker-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).unwrap();
    let routes = scratch.0.join("routes.json");
    let (first, second) = (backend("first"), backend("second"));
    write_routes(&routes, 1, first);

    let (proxy, admin) = (free_addr(), free_addr());
    let mut cmd = Command::new(interlock_bin());
    cmd.env("TOKIO_WORKER_THREADS", "1")
        .arg("proxy")
        .args(["--http", &proxy.to_string(), "--admin", &admin.to_string(), "--routes"])
        .arg(&routes);
    let mut agent = AgentProcess::spawn(cmd).unwrap();

    let answers = |want: &str| get(proxy).map(|answer| answer == (200, want.to_string()));
    wait_until("200 from the first backend", Duration::from_secs(15), || {
        Ok(answers("first")?)
    })
    .unwrap();
    write_routes(&routes, 2, second);
    wait_until("200 from the second backend", Duration::from_secs(15), || {
        Ok(answers("second")?)
    })
    .unwrap();
    // 200 more, each on a connection of its own, all answered by the one thread.
    for _ in 0..200 {
        assert_eq!(get(proxy).unwrap(), (200, "second".to_string()));
    }
    agent.terminate(Duration::from_secs(15)).unwrap();
}

#[test]
fn a_bad_worker_count_is_refused_by_name() {
    let out = Command::new(interlock_bin())
        .env("TOKIO_WORKER_THREADS", "0")
        .args(["proxy", "--http", "127.0.0.1:0", "--routes", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with TOKIO_WORKER_THREADS=0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TOKIO_WORKER_THREADS=\"0\""),
        "the error does not name the variable: {stderr}"
    );
}

/// `interlock proxy` on free loopback ports following the leader at `leader`, once its
/// admin address answers; its HTTP and admin addresses.
fn follower(leader: SocketAddr, extra: &[&str]) -> (AgentProcess, SocketAddr, SocketAddr) {
    let (proxy, admin) = (free_addr(), free_addr());
    let mut cmd = Command::new(interlock_bin());
    cmd.arg("proxy")
        .args(["--http", &proxy.to_string(), "--admin", &admin.to_string()])
        .args(["--role", "follower", "--leader", &leader.to_string()])
        .args(extra);
    let agent = AgentProcess::spawn(cmd).unwrap();
    wait_until("the admin address answers", Duration::from_secs(15), || {
        Ok(get_path(admin, "/healthz").is_ok_and(|(status, _)| status == 200))
    })
    .unwrap();
    (agent, proxy, admin)
}

/// `interlock ready --admin admin`: whether it said ready (exit 0), and what it printed.
fn ready(admin: SocketAddr) -> (bool, String) {
    let out = Command::new(interlock_bin())
        .args(["ready", "--admin", &admin.to_string()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Asserts that `admin` is not ready, for `reason`: `/readyz` answers 503 naming it, and
/// `interlock ready` fails naming it.
fn assert_not_ready(admin: SocketAddr, reason: &str) {
    let (status, body) = get_path(admin, "/readyz").unwrap();
    assert_eq!((status, body.contains(reason)), (503, true), "/readyz: {status} {body}");
    let (ok, said) = ready(admin);
    assert!(!ok && said.contains(reason), "interlock ready: {ok} {said}");
}

/// Whether a connection to `addr` is refused (nothing accepts there).
fn refused(addr: SocketAddr) -> bool {
    matches!(TcpStream::connect(addr), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

#[test]
fn the_http_port_opens_once_the_first_routes_are_in_place() {
    // A leader (the real snapshot stream) that has no snapshot yet: version 0.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (tx, rx) = snapshot_channel();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let leader = listener.local_addr().unwrap();
    rt.spawn(serve_snapshots(listener, rx, None));
    let backend = backend("first");

    let (mut proxy, http, admin) = follower(leader, &[]);
    proxy
        .wait_for_line("control plane: follower", Duration::from_secs(15))
        .unwrap();
    // Followed, up, and no routes: clients are refused, not told 404.
    assert!(refused(http), "the HTTP port accepted before any routes came");
    assert_not_ready(admin, "waiting for the first routes");
    std::thread::sleep(Duration::from_millis(500));
    assert!(refused(http), "the HTTP port accepted before any routes came");

    tx.send_replace(Arc::new(routes(1, backend)));
    wait_until("200 from the backend", Duration::from_secs(15), || {
        Ok(get(http).is_ok_and(|answer| answer == (200, "first".to_string())))
    })
    .unwrap();
    proxy
        .wait_for_line("first routes in place", Duration::from_secs(5))
        .unwrap();
    assert_eq!(get_path(admin, "/readyz").unwrap(), (200, "ready\n".to_string()));
    assert_eq!(ready(admin), (true, "ready\n".to_string()));
    proxy.terminate(Duration::from_secs(15)).unwrap();
}

#[test]
fn without_routes_the_http_port_opens_after_the_wait_and_sigterm_ends_the_wait() {
    // A leader nobody answers for: the follower keeps retrying and never gets routes.
    let leader = free_addr();

    let (mut waiting, http, _) = follower(leader, &[]);
    assert!(refused(http), "the HTTP port accepted before any routes came");
    waiting.terminate(Duration::from_secs(15)).unwrap();
    waiting
        .wait_for_line("shutting down before the first routes came", Duration::from_secs(1))
        .unwrap();

    let (mut proxy, http, _) = follower(leader, &["--first-routes-wait-s", "1"]);
    wait_until("404 once the wait is over", Duration::from_secs(15), || {
        Ok(get(http).is_ok_and(|(status, _)| status == 404))
    })
    .unwrap();
    proxy
        .wait_for_line("no routes from the control plane within 1s", Duration::from_secs(5))
        .unwrap();
    proxy.terminate(Duration::from_secs(15)).unwrap();
}

#[test]
fn a_draining_proxy_says_it_is_not_ready_while_it_finishes_requests() {
    let scratch = Scratch(std::env::temp_dir().join(format!("ilt-draining-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).unwrap();
    let routes = scratch.0.join("routes.json");
    let (backend, came) = slow_backend("slow", Duration::from_secs(2));
    write_routes(&routes, 1, backend);
    let (proxy, admin) = (free_addr(), free_addr());
    let mut cmd = Command::new(interlock_bin());
    cmd.arg("proxy")
        .args(["--http", &proxy.to_string(), "--admin", &admin.to_string(), "--routes"])
        .arg(&routes)
        .args(["--drain-grace-s", "10"]);
    let mut agent = AgentProcess::spawn(cmd).unwrap();
    wait_until("ready", Duration::from_secs(15), || Ok(ready(admin).0)).unwrap();

    let in_flight = std::thread::spawn(move || get(proxy));
    came.recv_timeout(Duration::from_secs(5))
        .expect("the request reached the backend");
    agent.sigterm();
    wait_until("/readyz says draining", Duration::from_secs(2), || {
        Ok(get_path(admin, "/readyz")?.0 == 503)
    })
    .unwrap();
    assert_not_ready(admin, "draining");
    // The request in flight still finishes, and then the proxy exits.
    assert_eq!(in_flight.join().unwrap().unwrap(), (200, "slow".to_string()));
    agent.wait_exit(Duration::from_secs(15)).unwrap();
}

/// `interlock proxy --proxy-id id` serving `routes` on `http`, with an admin address of its own.
fn named_proxy(id: &str, http: SocketAddr, routes: &Path, extra: &[&str]) -> (AgentProcess, SocketAddr) {
    let admin = free_addr();
    let mut cmd = Command::new(interlock_bin());
    cmd.env("TOKIO_WORKER_THREADS", "1")
        .arg("proxy")
        .args([
            "--http",
            &http.to_string(),
            "--admin",
            &admin.to_string(),
            "--proxy-id",
            id,
        ])
        .arg("--routes")
        .arg(routes)
        .args(["--drain-grace-s", "5"])
        .args(extra);
    (AgentProcess::spawn(cmd).unwrap(), admin)
}

/// `GET /` on a new connection: which proxy answered (`x-proxy-id`), or what went wrong.
fn answered_by(proxy: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect(proxy).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: bench.example\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| format!("read: {e}"))?;
    if !answer.starts_with("HTTP/1.1 200") {
        return Err(format!("answer: {answer:?}"));
    }
    let id = answer.lines().find_map(|l| l.strip_prefix("x-proxy-id: "));
    id.map(str::to_string)
        .ok_or_else(|| format!("no x-proxy-id in {answer:?}"))
}

#[test]
fn a_restarted_proxy_takes_the_listening_socket_over_and_refuses_no_connection() {
    let scratch = Scratch(std::env::temp_dir().join(format!("ilt-handover-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).unwrap();
    let routes = scratch.0.join("routes.json");
    write_routes(&routes, 1, backend("app"));
    let http = free_addr();
    let (mut a, a_admin) = named_proxy("a", http, &routes, &[]);
    wait_until("a ready", Duration::from_secs(15), || Ok(ready(a_admin).0)).unwrap();

    // Without the handover a second proxy cannot listen there.
    let (mut refused_b, _) = named_proxy("b", http, &routes, &["--handover", "false"]);
    refused_b
        .wait_for_line(&format!("cannot listen on {http}"), Duration::from_secs(15))
        .unwrap();
    assert!(refused_b.wait_exit(Duration::from_secs(5)).is_err(), "it failed");

    // A client opening a new connection for every request, all through the restarts.
    let (stop, answers) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
    let load = {
        let (stop, answers) = (stop.clone(), answers.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                answers.lock().unwrap().push(answered_by(http));
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let answered = |id: &str| {
        answers
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.as_deref() == Ok(id))
            .count()
    };

    // b takes a's socket over and serves; a drains and exits; then c does the same to b
    // (which by then offers the socket itself).
    let (mut b, b_admin) = named_proxy("b", http, &routes, &[]);
    b.wait_for_line("took over the listening sockets", Duration::from_secs(15))
        .unwrap();
    wait_until("b ready", Duration::from_secs(15), || Ok(ready(b_admin).0)).unwrap();
    a.wait_for_line("handed the listening sockets over", Duration::from_secs(5))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    a.terminate(Duration::from_secs(15)).unwrap();
    wait_until("b answers", Duration::from_secs(5), || Ok(answered("b") > 0)).unwrap();

    let (mut c, c_admin) = named_proxy("c", http, &routes, &[]);
    c.wait_for_line("took over the listening sockets", Duration::from_secs(15))
        .unwrap();
    wait_until("c ready", Duration::from_secs(15), || Ok(ready(c_admin).0)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    b.terminate(Duration::from_secs(15)).unwrap();
    let before = answered("c");
    wait_until("c answers on its own", Duration::from_secs(5), || {
        Ok(answered("c") > before + 50)
    })
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();

    let (by_a, by_b, by_c) = (answered("a"), answered("b"), answered("c"));
    let answers = answers.lock().unwrap();
    let failed: Vec<_> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        answers.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        by_a > 0 && by_b > 0 && by_c > 0,
        "answers by a, b, c: {by_a}, {by_b}, {by_c}"
    );
    // Once a proxy has exited, nobody sees it again.
    let last_a = answers.iter().rposition(|r| r.as_deref() == Ok("a")).unwrap();
    let first_c = answers.iter().position(|r| r.as_deref() == Ok("c")).unwrap();
    assert!(last_a < first_c, "a answered after c began");
    report(&format!(
        "proxy_binary: handover: {} requests on new connections through two restarts, 0 failed \
         (a {by_a}, b {by_b}, c {by_c})",
        answers.len()
    ));
    c.terminate(Duration::from_secs(15)).unwrap();
}
