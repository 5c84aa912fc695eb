//! The interlock stack on a real swarm: labelled services answer through the proxy by host
//! and by path within 2 s of their tasks running, on a network the agent joins by itself;
//! its health check passes; after dockerd restarts, routes serve again and later changes are
//! picked up; requests reach the tasks normalised (`l7::normalize`), as a backend sees them.
//! Its own test binary: it restarts the engine under every other Docker test.
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use interlock_tests::docker::{docker, ensure_backend_image, unique, Network, Service};
use interlock_tests::engine::{start_dockerd, stop_dockerd, wait_engine, EngineGuard};
use interlock_tests::stack::{get, send, Stack};
use interlock_tests::{report, require_root, wait_until};

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Polls `host`+`path` until it answers 200 with `body`; returns when (Unix ns).
fn wait_answer(host: &str, path: &str, body: &str, timeout: Duration) -> Result<i64> {
    let deadline = Instant::now() + timeout;
    loop {
        let answer = get(host, path);
        if let Ok((200, b)) = &answer {
            if b.trim() == body {
                return Ok(now_ns());
            }
        }
        if Instant::now() > deadline {
            bail!("{host}{path} did not answer 200 {body:?} within {timeout:?}; last: {answer:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the page's `/cgi-bin/env` (busybox httpd's CGI) saw of one request, through the
/// stack's proxy: the page's name, then `NAME=value` lines.
fn env_of(request: &str) -> (u16, String) {
    send(request).unwrap_or_else(|e| panic!("{e:#}: {request:?}"))
}

/// The request a task gets is the one that was routed: the absolute-form authority is the
/// Host, dot segments are gone before routing (`/api/../` is not the api service), only
/// websocket upgrades pass, the proxy's own forwarding headers replace the client's, and
/// CONNECT is refused (README, "What the proxy normalises and refuses").
fn backends_get_the_request_as_routed(host: &str) {
    let absolute = format!(
        "GET http://{host}/cgi-bin/env HTTP/1.1\r\nHost: junk.invalid\r\nX-Real-IP: 6.6.6.6\r\n\
         Forwarded: for=6.6.6.6\r\nx-request-id: swarm-routes-1\r\nConnection: close\r\n\r\n"
    );
    let (status, env) = env_of(&absolute);
    assert_eq!(status, 200, "{env}");
    for line in [
        "web".to_string(),
        format!("HTTP_HOST={host}"),
        format!("HTTP_X_FORWARDED_HOST={host}"),
        "HTTP_X_REAL_IP=127.0.0.1".into(),
        "HTTP_X_REQUEST_ID=swarm-routes-1".into(),
    ] {
        assert!(env.lines().any(|l| l == line), "the task saw no {line:?}:\n{env}");
    }
    assert!(
        !env.contains("HTTP_FORWARDED="),
        "the client's Forwarded was passed on:\n{env}"
    );
    let dotted = format!(
        "GET /api/%2e%2e/cgi-bin/env HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade, close\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    );
    let (status, env) = env_of(&dotted);
    assert_eq!(status, 200, "{env}");
    assert_eq!(
        env.lines().next(),
        Some("web"),
        "/api/../ was routed to the api service:\n{env}"
    );
    assert!(env.lines().any(|l| l == "REQUEST_URI=/cgi-bin/env"), "{env}");
    assert!(
        !env.contains("HTTP_UPGRADE=") && !env.contains("HTTP_HTTP2_SETTINGS="),
        "an h2c upgrade was passed on:\n{env}"
    );
    let (status, _) = env_of(&format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n"));
    assert_eq!(status, 405, "CONNECT");
    let (status, _) = env_of(&format!(
        "GET /a%2fb HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(status, 400, "an encoded slash");
}

#[test]
fn labelled_services_answer_by_host_and_path_and_survive_a_dockerd_restart() {
    require_root();
    ensure_backend_image().unwrap();
    // Declared before the stack so it is removed after the agent has left it.
    let net = Network::new().unwrap();
    let stack = Stack::deploy("").unwrap();
    let host = format!("{}.example", unique("h"));
    let (hosts, on_net) = (format!("com.docker.lb.hosts={host}"), ["--network", net.name.as_str()]);
    let common = [&on_net[..], &["--label", &hosts, "--label", "com.docker.lb.port=80"]].concat();
    let web = Service::page(&common, "web").unwrap();
    let api_labels = [
        &common[..],
        &[
            "--label",
            "com.docker.lb.context_root=/api",
            "--label",
            "com.docker.lb.context_root_rewrite=true",
        ],
    ]
    .concat();
    let api = Service::page(&api_labels, "api").unwrap();

    let web_at = wait_answer(&host, "/", "web", Duration::from_secs(60)).unwrap();
    let api_at = wait_answer(&host, "/api/", "api", Duration::from_secs(60)).unwrap();
    let web_running = web.running_since().unwrap()[0];
    let api_running = api.running_since().unwrap()[0];
    let (web_live_ms, api_live_ms) = ((web_at - web_running) / 1_000_000, (api_at - api_running) / 1_000_000);
    assert!(
        web_live_ms < 2000 && api_live_ms < 2000,
        "routes live {web_live_ms} ms / {api_live_ms} ms after the tasks ran (limit 2 s); agent log:\n{}",
        stack.logs()
    );
    let (status, _) = get("nobody.invalid", "/").unwrap();
    assert_eq!(status, 404, "a host no service claims is not forwarded");
    backends_get_the_request_as_routed(&host);
    let table = stack.status().unwrap();
    assert!(
        table.contains(&host) && table.contains("/api"),
        "status shows the routes:\n{table}"
    );
    // The stack's health check (`interlock ready` in the image) passes on a serving agent.
    let healthy = wait_until("the agent container healthy", Duration::from_secs(30), || {
        Ok(stack.health()? == "healthy")
    });
    let healthy_s = healthy.unwrap_or_else(|e| panic!("{e:#}: {:?}\nagent log:\n{}", stack.health(), stack.logs()));

    // The agent's task killed: swarm replaces it; clients reconnect and are served again.
    let old_agent = stack.agent_container().unwrap();
    docker(&["kill", &old_agent]).unwrap();
    let killed = Instant::now();
    if let Err(e) = wait_answer(&host, "/api/", "api", Duration::from_secs(60)) {
        panic!("{e:#}\nagent tasks:\n{}", stack.tasks());
    }
    let reconnect_s = killed.elapsed().as_secs_f64();

    // dockerd restarted: every container goes (swarm has no live-restore) and comes back.
    let _engine = EngineGuard;
    stop_dockerd();
    wait_engine(false);
    start_dockerd();
    wait_engine(true);
    let back = Instant::now();
    if let Err(e) = wait_answer(&host, "/", "web", Duration::from_secs(120)) {
        panic!("{e:#}\nagent tasks:\n{}\nagent log:\n{}", stack.tasks(), stack.logs());
    }
    let serving_again_s = back.elapsed().as_secs_f64();
    let later_host = format!("{}.example", unique("h"));
    let later = Service::page(
        &[
            "--network",
            &net.name,
            "--label",
            &format!("com.docker.lb.hosts={later_host}"),
            "--label",
            "com.docker.lb.port=80",
        ],
        "later",
    )
    .unwrap();
    wait_answer(&later_host, "/", "later", Duration::from_secs(60)).unwrap();
    report(&format!(
        "swarm_routes: live after running: web {web_live_ms} ms, api {api_live_ms} ms; health check passed \
         {healthy_s:.1} s later; agent killed: served \
         again in {reconnect_s:.1} s; after a dockerd restart serving again in {serving_again_s:.1} s, and a new \
         service routed"
    ));
    drop((later, api, web));
}
