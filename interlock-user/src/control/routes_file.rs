//! `interlock proxy --routes FILE`: snapshots from a JSON file instead of Docker, re-read
//! when its modification time changes (a bad file keeps the current routes).
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;

use crate::model::{Snapshot, SnapshotRx};

/// A snapshot channel fed from a JSON file, re-read when its modification time changes.
pub fn watch(path: PathBuf) -> Result<SnapshotRx> {
    let first = read_snapshot(&path)?;
    let (tx, rx) = watch::channel(Arc::new(first));
    tokio::spawn(async move {
        let mut last = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            if now == last {
                continue;
            }
            last = now;
            match read_snapshot(&path) {
                Ok(s) => {
                    tx.send_replace(Arc::new(s));
                }
                Err(e) => tracing::error!("keeping the current routes: {e:#}"),
            }
        }
    });
    Ok(rx)
}

fn read_snapshot(path: &PathBuf) -> Result<Snapshot> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading routes file {}", path.display()))?;
    let mut s: Snapshot =
        serde_json::from_str(&text).with_context(|| format!("parsing routes file {}", path.display()))?;
    s.version = s.version.max(1);
    Ok(s)
}
