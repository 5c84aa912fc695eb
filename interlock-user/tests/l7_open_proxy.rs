//! The proxy is not an open proxy: a request can only reach the task addresses of the
//! snapshot. An absolute-form URI, a Host naming some other address, or a CONNECT to one
//! never makes the proxy connect anywhere else (a canary listener sees no connection).
mod common;

use std::time::Duration;

use common::{raw, route, snapshot, TestBackend, TestProxy};
use tokio::net::TcpListener;

#[tokio::test]
async fn forged_targets_never_reach_other_addresses() {
    let app = TestBackend::start("app").await;
    let proxy = TestProxy::start(&snapshot(1, vec![route("app", &["app.test"], "/", &[&app])])).await;
    let canary = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = canary.local_addr().unwrap();

    let absolute = raw(
        proxy.http,
        format!("GET http://{target}/ HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    let status = absolute.split(' ').nth(1).unwrap_or_default();
    assert!(
        absolute.contains("name=app") || status.starts_with('4'),
        "absolute-form: served by the route or refused: {absolute}"
    );
    let forged_host = raw(
        proxy.http,
        format!("GET / HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(forged_host.starts_with("HTTP/1.1 404"), "unknown host: {forged_host}");
    let connect = raw(
        proxy.http,
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes(),
    )
    .await;
    let status = connect.split(' ').nth(1).unwrap_or_default();
    assert!(
        connect.is_empty() || status.starts_with('4'),
        "CONNECT refused: {connect}"
    );

    let reached = tokio::time::timeout(Duration::from_millis(300), canary.accept()).await;
    assert!(
        reached.is_err(),
        "nothing may connect to an address outside the snapshot"
    );
}
