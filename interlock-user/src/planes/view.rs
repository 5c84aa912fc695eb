//! What the HTTP plane serves: the control plane's snapshot combined with this node's view
//! (`model::node::reachable_only`), recomputed when either changes. `interlock status` shows
//! the same value.
//!
//! The first routes wait for their networks' joins (at most `FIRST_JOINS_WAIT`): the HTTP
//! ports open on them (`l7::wait_for_first_routes`), and a route on a network still being
//! joined would answer 503 meanwhile. After that, what is reachable goes out at once.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::model::node::{reachable_only, NodeRx};
use crate::model::{Snapshot, SnapshotRx, SnapshotTx};

/// The first routes wait at most this long for their networks' joins before going out.
const FIRST_JOINS_WAIT: Duration = Duration::from_secs(5);

/// The HTTP plane's snapshots, combined from `snapshots` and `node`.
pub fn http_snapshots(snapshots: SnapshotRx, node: NodeRx) -> SnapshotRx {
    let (tx, out) = watch::channel(Arc::new(Snapshot::default()));
    tokio::spawn(combine(snapshots, node, tx));
    out
}

async fn combine(mut snapshots: SnapshotRx, mut node: NodeRx, tx: SnapshotTx) {
    // Set once the first routes have come and wait for their joins.
    let mut first_deadline: Option<Instant> = None;
    // The watcher ends only with the snapshots, or never starts (nothing to watch): then
    // the view stays as it is.
    let mut node_open = true;
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        let view = node.borrow_and_update().clone();
        let first = tx.borrow().version == 0 && snapshot.version > 0;
        let joins_pending = view.joined.is_some() && view.joins_for < snapshot.version;
        if first && joins_pending {
            let deadline = *first_deadline.get_or_insert_with(|| Instant::now() + FIRST_JOINS_WAIT);
            if Instant::now() >= deadline {
                tracing::warn!(
                    "joining the networks of the first routes takes over {FIRST_JOINS_WAIT:?}: \
                     serving them meanwhile (503 for services on networks not joined yet)"
                );
                publish(&tx, reachable_only(&snapshot, &view));
            }
        } else if snapshot.version > 0 {
            publish(&tx, reachable_only(&snapshot, &view));
        }
        let wait = async {
            match first_deadline {
                Some(d) if tx.borrow().version == 0 => tokio::time::sleep_until(d).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { return },
            changed = node.changed(), if node_open => node_open = changed.is_ok(),
            _ = wait => {}
        }
    }
}

/// Publishes `combined` if it differs from what is out.
fn publish(tx: &SnapshotTx, combined: Snapshot) {
    tx.send_if_modified(|current| {
        if **current == combined {
            return false;
        }
        *current = Arc::new(combined);
        true
    });
}
