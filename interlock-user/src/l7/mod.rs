//! The HTTP plane: a hyper reverse proxy fed by control-plane snapshots.
//!
//! - `routes`: snapshot -> immutable route table (host, wildcard, longest prefix). Pure.
//! - `balance`: backend choice (P2C, sticky, ejection) and per-backend live state.
//! - `proxy`: the request path, answering with an `answer::Answer`; `upstream`: pooled backend connections; `h1_client`: the
//!   lean HTTP/1.1 client most requests take to backends; `h1_server`: the lean loop most
//!   plain HTTP/1.1 requests come in by (hyper's server takes the rest).
//! - `headers`: hop-by-hop, forwarding headers, request checks. `error`: typed failures.
//!   `raw_headers`: a backend's header lines kept as bytes between the lean client and server.
//! - `server`: listeners, limits, graceful drain. `tls`, `sni`, `rewind`: HTTPS front,
//!   SNI passthrough. `health`: active checks. `metrics`, `admin`: observability.
pub mod admin;
pub mod answer;
pub mod balance;
pub mod error;
pub mod h1_client;
pub mod h1_server;
pub mod headers;
pub mod health;
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

/// Keeps the proxy's route table and certificates in step with the snapshots.
pub async fn follow_snapshots(
    mut rx: SnapshotRx,
    proxy: Arc<proxy::Proxy>,
    tls: Option<Arc<tls::TlsFront>>,
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
