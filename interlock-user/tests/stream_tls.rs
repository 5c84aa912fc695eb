//! The leader -> follower snapshot stream with mutual TLS, over real sockets: a follower
//! holding the stream's CA gets every snapshot; a follower from another CA, a plain-TCP
//! follower, and a TLS follower facing an unauthenticated leader get nothing (they keep the
//! snapshot they had).
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::stream_material;
use interlock::control::snapshot_channel;
use interlock::control::stream::{run_follower, serve_snapshots};
use interlock::control::stream_tls::StreamTls;
use interlock::model::{Snapshot, SnapshotRx};
use tokio::net::TcpListener;

async fn leader(tls: Option<&StreamTls>) -> (String, tokio::sync::watch::Sender<Arc<Snapshot>>) {
    let (tx, rx) = snapshot_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(serve_snapshots(listener, rx, tls.map(|t| t.server.clone())));
    (addr, tx)
}

fn follower(addr: &str, tls: Option<&StreamTls>) -> SnapshotRx {
    let (tx, rx) = snapshot_channel();
    tokio::spawn(run_follower(addr.to_string(), tx, tls.map(|t| t.client.clone())));
    rx
}

async fn version_within(rx: &mut SnapshotRx, wanted: u64, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, rx.wait_for(|s| s.version == wanted))
        .await
        .is_ok_and(|r| r.is_ok())
}

fn snapshot(version: u64) -> Arc<Snapshot> {
    Arc::new(Snapshot {
        version,
        networks: vec![format!("net-{version}")],
        ..Snapshot::default()
    })
}

#[tokio::test]
async fn only_peers_of_the_same_ca_exchange_snapshots() {
    let ours = stream_material();
    let theirs = stream_material();
    let (addr, publish) = leader(Some(&ours)).await;
    publish.send_replace(snapshot(1));

    let mut trusted = follower(&addr, Some(&ours));
    assert!(
        version_within(&mut trusted, 1, Duration::from_secs(5)).await,
        "the trusted follower follows"
    );
    publish.send_replace(snapshot(2));
    assert!(version_within(&mut trusted, 2, Duration::from_secs(5)).await);
    assert_eq!(trusted.borrow().networks, vec!["net-2".to_string()]);

    let mut foreign = follower(&addr, Some(&theirs));
    let mut plain = follower(&addr, None);
    assert!(
        !version_within(&mut foreign, 2, Duration::from_secs(2)).await,
        "another CA gets nothing"
    );
    assert!(
        !version_within(&mut plain, 2, Duration::from_millis(500)).await,
        "plain TCP gets nothing"
    );
    assert_eq!(foreign.borrow().version, 0);

    // A follower with TLS refuses a leader that cannot prove itself (here: no TLS at all).
    let (open_addr, open_publish) = leader(None).await;
    open_publish.send_replace(snapshot(7));
    let mut careful = follower(&open_addr, Some(&ours));
    assert!(!version_within(&mut careful, 7, Duration::from_secs(2)).await);
    assert_eq!(careful.borrow().version, 0, "keeps what it had");
}
