//! A follower proxy whose leader dies: it keeps serving the routes of its last snapshot over
//! the mutual-TLS stream, and follows the leader again when one comes back on the same address.
//! The leader runs on its own runtime, so shutting that runtime down closes every socket it
//! had, as a killed process would.
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{client, field, get, route, snapshot, stream_material, TestBackend, TestProxy};
use interlock::control::snapshot_channel;
use interlock::control::stream::{run_follower, serve_snapshots};
use interlock::control::stream_tls::StreamTls;
use interlock::model::Snapshot;

/// A leader on its own runtime serving `snap` on `addr` (port 0: any).
fn leader(
    addr: std::net::SocketAddr,
    tls: &StreamTls,
    snap: Snapshot,
) -> (tokio::runtime::Runtime, std::net::SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = tls.server.clone();
    let bound = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let bound = listener.local_addr().unwrap();
        let (tx, rx) = snapshot_channel();
        tx.send_replace(Arc::new(snap));
        tokio::spawn(async move {
            let _keep = tx;
            let _ = serve_snapshots(listener, rx, Some(server)).await;
        });
        bound
    });
    (rt, bound)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_keeps_serving_when_its_leader_dies_and_follows_the_next_one() {
    let tls = stream_material();
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let first = snapshot(1, vec![route("app", &["app.test"], "/", &[&a])]);
    let (leader_rt, addr) = tokio::task::block_in_place(|| leader("127.0.0.1:0".parse().unwrap(), &tls, first));

    let proxy = TestProxy::start(&snapshot(0, vec![])).await;
    let (ftx, frx) = snapshot_channel();
    tokio::spawn(run_follower(addr.to_string(), ftx, Some(tls.client.clone())));
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(interlock::l7::follow_snapshots(
        frx.clone(),
        proxy.proxy.clone(),
        None,
        tokio::sync::watch::channel(0).0,
        stop_rx,
    ));
    let c = client();
    let mut answered_by_a = false;
    for _ in 0..100 {
        let (status, _, body) = get(&c, proxy.http, "app.test", "/").await;
        if status == 200 && field(&body, "name") == "a" {
            answered_by_a = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered_by_a, "the follower routes what its leader sent");

    // The leader dies: every socket it had closes.
    tokio::task::block_in_place(|| leader_rt.shutdown_timeout(Duration::from_secs(1)));
    for _ in 0..20 {
        let (status, _, body) = get(&c, proxy.http, "app.test", "/").await;
        assert_eq!(
            (status.as_u16(), field(&body, "name")),
            (200, "a"),
            "served from the last snapshot"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(frx.borrow().version, 1, "the follower kept its snapshot");

    // A new leader on the same address, with the route moved to b: the follower follows it.
    let second = snapshot(2, vec![route("app", &["app.test"], "/", &[&b])]);
    let (_leader2, _) = tokio::task::block_in_place(|| leader(addr, &tls, second));
    let mut moved = false;
    for _ in 0..100 {
        let (status, _, body) = get(&c, proxy.http, "app.test", "/").await;
        if status == 200 && field(&body, "name") == "b" {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(moved, "the follower follows the new leader");
    tokio::task::block_in_place(move || drop(_leader2));
}
