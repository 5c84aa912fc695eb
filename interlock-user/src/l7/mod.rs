//! The HTTP plane: a hyper reverse proxy fed by control-plane snapshots.
//!
//! - `routes`: snapshot -> immutable route table (host, wildcard, longest prefix). Pure.
//! - `balance`: backend choice (P2C, sticky, ejection) and per-backend live state.
//! - `proxy`: the request path, answering with an `answer::Answer`; `upstream`: pooled backend connections; `h1_client`: the
//!   lean HTTP/1.1 client most requests take to backends; `h1_server`: the lean loop most
//!   plain HTTP/1.1 requests come in by (hyper's server takes the rest).
//! - `headers`: hop-by-hop, forwarding headers, request checks. `error`: typed failures.
//!   `raw_headers`: a backend's header lines kept as bytes between the lean client and server.
//! - `listeners`: where the listening sockets come from (bound, or handed over by the proxy
//!   this one replaces: `handover`).
//! - `server`: accepting, limits, graceful drain. `linger`: client connections that close
//!   without a reset when request bytes are left unread. `tls`, `sni`, `rewind`: HTTPS front,
//!   SNI passthrough. `health`: active checks. `metrics`, `admin`: observability.
pub mod admin;
pub mod answer;
pub mod balance;
pub mod error;
pub mod h1_client;
pub mod h1_server;
pub mod handover;
pub mod headers;
pub mod health;
pub mod linger;
pub mod listeners;
pub mod metrics;
pub mod proxy;
pub mod raw_headers;
pub mod rewind;
pub mod routes;
pub mod server;
pub mod sni;
pub mod tls;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use tokio::sync::watch;

use crate::model::SnapshotRx;

/// Errors of bodies flowing through the proxy (hyper's, the lean client's).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bodies flowing through the proxy: streamed, never buffered whole.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Keeps the proxy's route table and certificates in step with the snapshots, and tells
/// `applied` each version once both are in place (`wait_for_first_routes` waits on it).
pub async fn follow_snapshots(
    mut rx: SnapshotRx,
    proxy: Arc<proxy::Proxy>,
    tls: Option<Arc<tls::TlsFront>>,
    applied: watch::Sender<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut cert_check = tokio::time::interval(Duration::from_secs(2));
    loop {
        let snapshot = rx.borrow_and_update().clone();
        if snapshot.version > 0 {
            proxy.apply(&snapshot);
            if let Some(tls) = &tls {
                tls.apply(&snapshot);
            }
            applied.send_replace(snapshot.version);
            tracing::debug!(
                version = snapshot.version,
                routes = snapshot.http.len(),
                "route table swapped"
            );
        }
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() { return; }
                    break;
                }
                _ = cert_check.tick() => {
                    if let Some(tls) = &tls { tls.reload_if_changed(); }
                }
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

/// How the wait for the first routes ended.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstRoutes {
    /// This snapshot version is in place: the listeners can open.
    Applied(u64),
    /// None came within the wait; the listeners open anyway (every host gets 404 until routes
    /// arrive) so that a broken control plane shows as answers, not as a closed port forever.
    TimedOut,
}

/// Waits until `follow_snapshots` has applied a real snapshot (version 1 or later), at most
/// `wait`. The HTTP listeners open only then: a starting proxy that accepted at once would
/// answer 404 for every host, and fail TLS handshakes, until its routes came (Envoy waits for
/// its first configuration the same way).
pub async fn wait_for_first_routes(mut applied: watch::Receiver<u64>, wait: Duration) -> FirstRoutes {
    match tokio::time::timeout(wait, applied.wait_for(|v| *v > 0)).await {
        Ok(Ok(version)) => FirstRoutes::Applied(*version),
        // The sender is gone only when `follow_snapshots` ended: nothing more will come.
        Ok(Err(_)) | Err(_) => FirstRoutes::TimedOut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_routes_are_awaited_then_the_wait_ends() {
        let (tx, rx) = watch::channel(0);
        let waiting = tokio::spawn(wait_for_first_routes(rx.clone(), Duration::from_secs(15)));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            !waiting.is_finished(),
            "version 0 (no snapshot yet) does not end the wait"
        );
        tx.send_replace(3);
        assert_eq!(waiting.await.unwrap(), FirstRoutes::Applied(3));

        let (_tx, rx) = watch::channel(0);
        assert_eq!(
            wait_for_first_routes(rx, Duration::from_secs(15)).await,
            FirstRoutes::TimedOut
        );
    }
}
