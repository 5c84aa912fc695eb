//! The control plane: keeps a `Snapshot` true to the swarm and publishes it on a watch channel.
//!
//! - `watcher`: the leader's loop (events + task polls + periodic full reconcile, reconnects).
//! - `publisher`: cluster state -> versioned snapshot, published only on change.
//! - `stream`: the leader's snapshot stream and the follower that consumes it; `stream_tls`:
//!   its mutual TLS.
mod publisher;
pub mod routes_file;
pub mod stream;
pub mod stream_tls;
mod watcher;

pub use publisher::Publisher;
pub use watcher::{run_leader, WatchConfig};

use std::sync::Arc;

use crate::model::{Snapshot, SnapshotRx, SnapshotTx};

/// A watch channel holding the empty snapshot (version 0) until the first real one.
pub fn snapshot_channel() -> (SnapshotTx, SnapshotRx) {
    tokio::sync::watch::channel(Arc::new(Snapshot::default()))
}
