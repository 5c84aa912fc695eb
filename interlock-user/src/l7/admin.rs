//! The admin listener: `/metrics` (Prometheus), `/healthz`, `/routes` (the current snapshot's
//! route table version), `/status` (JSON for `interlock status`). Read-only; bind it to loopback or a management address.
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use super::metrics::BackendLabels;
use super::proxy::Proxy;

/// Produces the JSON body of `/status` (the agent's routes, backends and L4 counters).
pub type StatusFn = Arc<dyn Fn(&Proxy) -> String + Send + Sync>;

pub async fn serve(listener: TcpListener, registry: Arc<Mutex<Registry>>, proxy: Arc<Proxy>, status: Option<StatusFn>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (registry, proxy, status) = (registry.clone(), proxy.clone(), status.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (registry, proxy, status) = (registry.clone(), proxy.clone(), status.clone());
                async move { Ok::<_, Infallible>(answer(req.uri().path(), &registry, &proxy, status.as_ref())) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(path: &str, registry: &Mutex<Registry>, proxy: &Proxy, status: Option<&StatusFn>) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/healthz" => (StatusCode::OK, "ok\n".to_string()),
        "/metrics" => {
            for b in proxy.backend_states() {
                let up = i64::from(b.available());
                proxy
                    .metrics
                    .backend_up
                    .get_or_create(&BackendLabels {
                        backend: b.addr.to_string(),
                    })
                    .set(up);
            }
            let mut out = String::new();
            let registry = registry.lock().unwrap_or_else(|e| e.into_inner());
            match prometheus_client::encoding::text::encode(&mut out, &registry) {
                Ok(()) => (StatusCode::OK, out),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}\n")),
            }
        }
        "/routes" => (StatusCode::OK, format!("{}\n", proxy.table().table.version)),
        "/status" => match status {
            Some(f) => (StatusCode::OK, f(proxy)),
            None => (
                StatusCode::NOT_FOUND,
                "no status here (interlock run serves it)\n".to_string(),
            ),
        },
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}
