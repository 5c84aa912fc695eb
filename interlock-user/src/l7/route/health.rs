//! Active health checks: routes with `health_check` have each backend probed with a GET of
//! the path; a failing backend (error or non-2xx/3xx) gets no new requests until it passes.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;

use crate::l7::proxy::Proxy;
use crate::l7::upstream::{Outgoing, Upstream};
use crate::model::{BackendTls, SnapshotRx};

/// Probes every backend of every checked route on its interval, each failing without an
/// answer within the default timeout; runs until the channel closes.
pub async fn run(rx: SnapshotRx, proxy: Arc<Proxy>) {
    run_with_timeout(
        rx,
        proxy,
        Duration::from_millis(crate::config::defaults::HEALTH_TIMEOUT_MS),
    )
    .await
}

/// `run`, a probe failing when it has no answer (status line and headers) within `timeout`.
pub async fn run_with_timeout(mut rx: SnapshotRx, proxy: Arc<Proxy>, timeout: Duration) {
    // Probes have connections of their own: they must not take, or close, the proxy's.
    let upstream = Arc::new(Upstream::new(timeout, timeout));
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
        upstream.retain(|a| states.contains_key(a));
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
                    let (path, upstream) = (check.path.clone(), upstream.clone());
                    let tls = route.backend_tls.clone();
                    tokio::spawn(async move {
                        let ok = probe(&upstream, state.addr, &path, tls.as_ref(), timeout).await;
                        if ok != state.is_healthy() {
                            tracing::info!(backend = %state.addr, healthy = ok, "health check changed");
                        }
                        state.set_healthy(ok);
                    });
                }
            }
        }
        next_due.retain(|k, _| live.contains(k));
        upstream.retain_tls(|spec| snapshot.http.iter().any(|r| r.backend_tls.as_ref() == Some(spec)));
    }
}

/// One GET of `path` through the upstream layer (hyper's client: the probe is not
/// forwarded for anyone, so it carries no forwarding headers), over TLS for `ssl_backend`
/// routes (a task whose certificate fails verification fails its check); 2xx and 3xx pass.
async fn probe(upstream: &Upstream, addr: SocketAddr, path: &str, tls: Option<&BackendTls>, timeout: Duration) -> bool {
    let Ok(req) = Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(crate::l7::empty_body())
    else {
        return false;
    };
    let req = match tls.map(|spec| upstream.tls_target(spec)) {
        None => Outgoing::streamed(req),
        Some(Ok(target)) => Outgoing::streamed_tls(req, target),
        Some(Err(_)) => return false,
    };
    match tokio::time::timeout(timeout, upstream.send(addr, req)).await {
        Ok(Ok(resp)) => resp.status().is_success() || resp.status().is_redirection(),
        Ok(Err(_)) | Err(_) => false,
    }
}
