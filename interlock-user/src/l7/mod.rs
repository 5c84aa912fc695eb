//! The HTTP plane: a reverse proxy fed by control-plane snapshots, grouped by job.
//!
//! - `front`: the client side. `listeners` + `handover` (listening sockets, bound or handed
//!   over by the proxy this one replaces), `server` (accepting, limits, drain), `h1_server`
//!   (the lean loop most plain HTTP/1.1 requests come in by; hyper's server takes the rest),
//!   `linger` (closing without a reset), `tls` + `sni` + `rewind` (HTTPS front, passthrough).
//! - `route`: where a request goes. `table` (snapshot -> route table: host, wildcard,
//!   longest prefix; pure), `balance` (backend choice, per-backend live state), `health`.
//! - `normalize`: the one step every request takes before routing (framing, authority,
//!   path, upgrade policy, the client's copies of proxy-set headers); pure.
//! - `proxy`: the request path (`Proxy::handle`), with the live table, request and response
//!   forwarding, splices, and the proxy's own answers.
//! - `upstream`: backends. One `send` over the lean HTTP/1.1 client (`h1_client`) and
//!   hyper's, one pool type, one connect and retry rule (`attempt`).
//! - Shared: `headers` (hop-by-hop, forwarding, request ids), `raw_headers` (a backend's
//!   header lines kept as bytes between the lean client and server), `limits`, `error`
//!   (typed failures), `metrics`, `admin` (observability).
pub mod admin;
pub mod error;
pub mod front;
pub mod headers;
pub mod limits;
pub mod metrics;
pub mod normalize;
pub mod proxy;
pub mod raw_headers;
pub mod route;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use tokio::sync::watch;

use crate::model::SnapshotRx;

/// Errors of bodies flowing through the proxy (hyper's, the lean client's).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bodies flowing through the proxy: streamed, never buffered whole.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// An empty body (the proxy's own answers, health probes).
pub fn empty_body() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Keeps the proxy's route table and certificates in step with the snapshots, and tells
/// `applied` each version once both are in place (`wait_for_first_routes` waits on it).
pub async fn follow_snapshots(
    mut rx: SnapshotRx,
    proxy: Arc<proxy::Proxy>,
    tls: Option<Arc<front::tls::TlsFront>>,
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
