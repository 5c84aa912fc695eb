//! Limits reached are counted in `interlock_limit_reached{limit}`: an oversized request head,
//! too many headers, a client too slow to send its head, and connections over the maximum.
mod common;

use std::time::Duration;

use common::{raw_within, route, snapshot, TestBackend, TestProxy};
use interlock::l7::metrics::LimitLabels;
use interlock::l7::server::Limits;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_reached_is_counted() {
    let app = TestBackend::start("app").await;
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        max_connections: 3,
        ..Limits::default()
    };
    let proxy = TestProxy::start_with(&snapshot(1, vec![route("app", &["app.test"], "/", &[&app])]), limits).await;
    let count = |limit: &'static str| proxy.proxy.metrics.limits.get_or_create(&LimitLabels { limit }).get();

    let huge = format!(
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let a = raw_within(proxy.http, huge.as_bytes(), Duration::from_secs(3)).await;
    assert!(a.starts_with("HTTP/1.1 431"), "{a:.60}");
    assert_eq!(count("request_head_size"), 1);

    let slow = raw_within(proxy.http, b"GET / HTTP/1.1\r\nHost: app", Duration::from_secs(3)).await;
    assert!(!slow.contains("200 OK"), "{slow:.60}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(count("header_read_timeout"), 1);

    let held: Vec<TcpStream> = open_connections(proxy.http, 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = raw_within(
        proxy.http,
        b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n",
        Duration::from_secs(1),
    )
    .await;
    assert!(
        refused.is_empty(),
        "a fourth connection is closed at once: {refused:.60}"
    );
    assert!(count("max_connections") >= 1);
    drop(held);
}

async fn open_connections(at: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = vec![];
    for _ in 0..n {
        out.push(TcpStream::connect(at).await.unwrap());
    }
    out
}
