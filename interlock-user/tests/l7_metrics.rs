//! Metrics hygiene on loopback: the series of a route or backend a snapshot removes leave
//! `/metrics` (admin address), and a request that finishes on the old table after the swap
//! does not bring them back.
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn metrics(c: &TestClient, admin: std::net::SocketAddr) -> String {
    let req = hyper::Request::get(format!("http://{admin}/metrics"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = c.request(req).await.expect("the admin address answers");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// A backend that answers 503 half a second after a request's head came: a request still in
/// flight when its route is removed.
async fn slow_backend() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = s
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    addr
}

/// The lines of `text` naming `needle` (series, not HELP/TYPE lines).
fn series<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(needle))
        .collect()
}

#[tokio::test]
async fn series_of_removed_routes_and_backends_leave_metrics() {
    let kept = TestBackend::start("kept").await;
    let gone = TestBackend::start("gone").await;
    // `sick*` backends answer /health with 503: a status made on first use.
    let sick = TestBackend::start("sick-gone").await;
    // A port nothing listens on: connect failures, retried on the other backend.
    let dead = TestBackend::start("dead").await;
    dead.kill();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let both = snapshot(
        1,
        vec![
            route("kept", &["k.example"], "/", &[&kept]),
            route("gone", &["g.example"], "/", &[&gone, &dead]),
            route("sickly", &["s.example"], "/", &[&sick]),
        ],
    );
    let proxy = TestProxy::start(&both).await;
    let admin = proxy.admin().await;
    let c = client();
    get(&c, proxy.http, "k.example", "/").await;
    for _ in 0..12 {
        let (status, _, _) = get(&c, proxy.http, "g.example", "/").await;
        assert_eq!(status, 200, "a connect failure is retried on the live backend");
    }
    get(&c, proxy.http, "s.example", "/health").await;

    let before = metrics(&c, admin).await;
    let (gone_addr, dead_addr, sick_addr) = (gone.addr.to_string(), dead.addr.to_string(), sick.addr.to_string());
    for expected in [
        "interlock_http_requests_total{route=\"gone\",status=\"200\"} 12".to_string(),
        "interlock_http_requests_total{route=\"sickly\",status=\"503\"} 1".to_string(),
        "interlock_http_request_duration_seconds_count{route=\"gone\"} 12".to_string(),
        format!("interlock_backend_up{{backend=\"{gone_addr}\"}} 1"),
        format!("interlock_backend_up{{backend=\"{sick_addr}\"}} 1"),
        format!("interlock_http_retries_total{{backend=\"{dead_addr}\"}}"),
    ] {
        assert!(before.contains(&expected), "{expected} missing in\n{before}");
    }

    // The same services without `gone` and `sickly`.
    proxy.apply(&snapshot(2, vec![route("kept", &["k.example"], "/", &[&kept])]));
    let after = metrics(&c, admin).await;
    for removed in ["route=\"gone\"", "route=\"sickly\"", &gone_addr, &dead_addr, &sick_addr] {
        let left = series(&after, removed);
        assert!(left.is_empty(), "series of {removed} left after its removal: {left:?}");
    }
    for expected in [
        "interlock_http_requests_total{route=\"kept\",status=\"200\"} 1".to_string(),
        format!("interlock_backend_up{{backend=\"{}\"}} 1", kept.addr),
    ] {
        assert!(after.contains(&expected), "{expected} missing in\n{after}");
    }

    // A route back under the same name starts its series again, from zero.
    proxy.apply(&snapshot(
        3,
        vec![
            route("kept", &["k.example"], "/", &[&kept]),
            route("gone", &["g.example"], "/", &[&gone]),
        ],
    ));
    let again = metrics(&c, admin).await;
    assert!(
        again.contains("interlock_http_requests_total{route=\"gone\",status=\"200\"} 0"),
        "{again}"
    );
    assert!(again.contains(&format!("interlock_backend_up{{backend=\"{gone_addr}\"}} 1")));
}

#[tokio::test]
async fn a_request_finishing_after_its_route_was_removed_brings_no_series_back() {
    let kept = TestBackend::start("kept").await;
    let slow = slow_backend().await;
    let mut late = route("late", &["late.example"], "/", &[]);
    late.backends.push(interlock::model::Backend {
        addr: slow,
        weight: 1,
        id: "slow".into(),
    });
    let proxy = TestProxy::start(&snapshot(1, vec![route("kept", &["k.example"], "/", &[&kept]), late])).await;
    let admin = proxy.admin().await;
    let c = client();
    let (c2, http) = (c.clone(), proxy.http);
    let in_flight = tokio::spawn(async move { get(&c2, http, "late.example", "/").await.0 });
    // The request is at the backend (which answers after 500 ms) when its route goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.apply(&snapshot(2, vec![route("kept", &["k.example"], "/", &[&kept])]));
    assert_eq!(
        in_flight.await.unwrap(),
        503,
        "the request in flight finishes on its old table"
    );
    let text = metrics(&c, admin).await;
    let left = series(&text, "route=\"late\"");
    assert!(left.is_empty(), "the late record made series again: {left:?}");
    let left = series(&text, &slow.to_string());
    assert!(left.is_empty(), "the removed backend's series came back: {left:?}");
}
