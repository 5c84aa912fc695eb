//! The HTTP plane under bad input, dying backends and route swaps during load.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn malformed_requests_get_4xx_or_a_closed_connection_and_are_never_forwarded() {
    let b = TestBackend::start("b").await;
    let proxy = TestProxy::start(&snapshot(1, vec![route("b", &["b.example"], "/", &[&b])])).await;
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: b.example\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("malformed request line", b"GARBAGE\r\n\r\n".to_vec()),
        ("bad version", b"GET / HTTP/9.9\r\nHost: b.example\r\n\r\n".to_vec()),
        ("oversized headers", huge.into_bytes()),
        (
            "too many headers",
            format!("GET / HTTP/1.1\r\nHost: b.example\r\n{many}\r\n").into_bytes(),
        ),
        ("missing Host", b"GET /nohost HTTP/1.1\r\n\r\n".to_vec()),
        (
            "invalid Host",
            b"GET /badhost HTTP/1.1\r\nHost: b.example/../x\r\n\r\n".to_vec(),
        ),
        (
            "two Hosts",
            b"GET /twohosts HTTP/1.1\r\nHost: b.example\r\nHost: other.example\r\n\r\n".to_vec(),
        ),
    ];
    for (what, bytes) in cases {
        let answer = raw(proxy.http, &bytes).await;
        let status = answer.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok());
        assert!(
            answer.is_empty() || status.is_some_and(|s| (400..500).contains(&s)),
            "{what}: expected a 4xx or a closed connection, got {answer:?}"
        );
    }
    let seen = b.seen.lock().unwrap().clone();
    assert!(seen.is_empty(), "nothing malformed reached the backend: {seen:?}");

    // Content-Length with Transfer-Encoding: hyper's parser lets Transfer-Encoding win, drops
    // the Content-Length and closes the connection after answering (RFC 9112 6.3), so a request
    // smuggled behind the body is never read, let alone forwarded.
    let smuggle = b"POST /smuggle HTTP/1.1\r\nHost: b.example\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: b.example\r\n\r\n";
    let answer = raw(proxy.http, smuggle).await.to_lowercase();
    assert!(answer.contains("connection: close"), "{answer}");
    assert_eq!(answer.matches("http/1.1 ").count(), 1, "one answer only: {answer}");
    let seen = b.seen.lock().unwrap().clone();
    assert!(
        !seen.iter().any(|p| p == "/admin"),
        "the smuggled request never reaches the backend: {seen:?}"
    );
    // The proxy still serves.
    assert_eq!(get(&client(), proxy.http, "b.example", "/").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_dying_backend_costs_no_5xx() {
    let (alive, dying) = (TestBackend::start("alive").await, TestBackend::start("dying").await);
    let proxy = TestProxy::start(&snapshot(
        1,
        vec![route("svc", &["svc.example"], "/", &[&alive, &dying])],
    ))
    .await;
    let c = client();
    for _ in 0..20 {
        assert_eq!(get(&c, proxy.http, "svc.example", "/").await.0, StatusCode::OK);
    }
    // The task dies; the route still names it (the next poll has not happened yet).
    dying.kill();
    let mut statuses = Vec::new();
    for _ in 0..200 {
        // Fresh connections and pooled ones alike.
        let c = if statuses.len() % 2 == 0 { client() } else { c.clone() };
        let (status, headers, _) = get(&c, proxy.http, "svc.example", "/").await;
        statuses.push(status);
        if status == StatusCode::OK {
            assert_eq!(headers["x-upstream-addr"], alive.addr.to_string());
        }
    }
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{:?}",
        statuses.iter().filter(|s| **s != StatusCode::OK).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_table_swapped_100_times_under_10000_requests_all_2xx() {
    let backends = [
        TestBackend::start("s0").await,
        TestBackend::start("s1").await,
        TestBackend::start("s2").await,
    ];
    let proxy = TestProxy::start(&snapshot(
        1,
        vec![route("swap", &["swap.example"], "/", &[&backends[0]])],
    ))
    .await;
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..20 {
        let (done, failures, addr) = (done.clone(), failures.clone(), proxy.http);
        workers.push(tokio::spawn(async move {
            let c = client();
            for _ in 0..500 {
                let (status, _, _) = get(&c, addr, "swap.example", "/").await;
                if !status.is_success() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for version in 2..102u64 {
        // Rotate through backend sets; the removed ones keep serving in-flight requests.
        let i = version as usize % 3;
        let set: Vec<&TestBackend> = vec![&backends[i], &backends[(i + 1) % 3]];
        proxy.apply(&snapshot(version, vec![route("swap", &["swap.example"], "/", &set)]));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(done.load(Ordering::Relaxed), 10_000);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "every request answered 2xx across 100 swaps"
    );
    assert_eq!(proxy.proxy.table().table.version, 101);
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let b = TestBackend::start("g").await;
    let mut proxy = TestProxy::start(&snapshot(1, vec![route("g", &["g.example"], "/", &[&b])])).await;
    let c = client();
    assert_eq!(get(&c, proxy.http, "g.example", "/").await.0, StatusCode::OK);
    proxy.shutdown();
    tokio::time::timeout(Duration::from_secs(15), proxy.serving.take().unwrap())
        .await
        .expect("drained in time")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(proxy.http).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn active_health_checks_take_failing_backends_out() {
    let (healthy, sick) = (TestBackend::start("healthy").await, TestBackend::start("sick").await);
    let mut r = route("checked", &["hc.example"], "/", &[&healthy, &sick]);
    r.health_check = Some(interlock::model::HealthCheck {
        path: "/health".into(),
        interval_ms: 100,
    });
    let snap = snapshot(1, vec![r]);
    let proxy = TestProxy::start(&snap).await;
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(snap));
    let checker = tokio::spawn(interlock::l7::route::health::run(rx, proxy.proxy.clone()));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let c = client();
    for _ in 0..50 {
        let (status, _, body) = get(&c, proxy.http, "hc.example", "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            field(&body, "name"),
            "healthy",
            "the backend failing its check gets no requests"
        );
    }
    checker.abort();
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_the_connection_limit_holds() {
    let b = TestBackend::start("b").await;
    let limits = interlock::l7::limits::Limits {
        max_connections: 2,
        header_read_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let proxy = TestProxy::start_with(&snapshot(1, vec![route("b", &["b.example"], "/", &[&b])]), limits).await;

    // Slowloris: a head trickling in is cut off after the header read timeout.
    let mut slow = tokio::net::TcpStream::connect(proxy.http).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: b.exa").await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "the proxy closes a connection whose head does not arrive in time"
    );

    // An idle keep-alive connection is closed too: the timeout runs while waiting for the next head.
    let mut idle = tokio::net::TcpStream::connect(proxy.http).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: b.example\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "an idle keep-alive connection is closed");
    assert!(
        String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
        "after its answer"
    );

    // Two connections held open: a third is closed at once, and counted.
    let _a = tokio::net::TcpStream::connect(proxy.http).await.unwrap();
    let _b = tokio::net::TcpStream::connect(proxy.http).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(proxy.http).await.unwrap();
    let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: b.example\r\n\r\n").await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), third.read_to_end(&mut out)).await;
    assert!(out.is_empty(), "over the limit: closed without an answer");
    let refused = proxy
        .proxy
        .metrics
        .limits
        .get_or_create(&interlock::l7::metrics::LimitLabels {
            limit: "max_connections",
        })
        .get();
    assert!(refused >= 1);
}
