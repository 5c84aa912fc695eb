//! Active health checks: routes with `health_check` have each backend probed with a GET of
//! the path; a failing backend (error or non-2xx/3xx) gets no new requests until it passes.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::proxy::Proxy;
use crate::model::SnapshotRx;

/// Probes every backend of every checked route on its interval; runs until the channel closes.
pub async fn run(mut rx: SnapshotRx, proxy: Arc<Proxy>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut next_due: HashMap<(SocketAddr, String), tokio::time::Instant> = HashMap::new();
    loop {
        tick.tick().await;
        if rx.has_changed().is_err() {
            return;
        }
        let snapshot = rx.borrow_and_update().clone();
        if snapshot.http.iter().all(|r| r.health_check.is_none()) {
            next_due.clear();
            continue;
        }
        let states: HashMap<SocketAddr, _> = proxy.backend_states().into_iter().map(|b| (b.addr, b)).collect();
        let now = tokio::time::Instant::now();
        let mut live = Vec::new();
        for route in &snapshot.http {
            let Some(check) = &route.health_check else {
                continue;
            };
            for b in &route.backends {
                let key = (b.addr, check.path.clone());
                live.push(key.clone());
                let due = next_due.entry(key).or_insert(now);
                if *due > now {
                    continue;
                }
                *due = now + Duration::from_millis(check.interval_ms);
                if let Some(state) = states.get(&b.addr).cloned() {
                    let path = check.path.clone();
                    tokio::spawn(async move {
                        let ok = probe(state.addr, &path).await;
                        if ok != state.is_healthy() {
                            tracing::info!(backend = %state.addr, healthy = ok, "health check changed");
                        }
                        state.set_healthy(ok);
                    });
                }
            }
        }
        next_due.retain(|k, _| live.contains(k));
    }
}

async fn probe(addr: SocketAddr, path: &str) -> bool {
    let attempt = async {
        let stream = TcpStream::connect(addr).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .ok()?;
        let resp = sender.send_request(req).await.ok()?;
        Some(resp.status().is_success() || resp.status().is_redirection())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
