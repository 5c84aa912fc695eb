//! The admin listener: `/metrics` (Prometheus), `/healthz` (liveness: the process answers),
//! `/readyz` (readiness: the HTTP ports accept, see [`Readiness`]), `/routes` (the current
//! snapshot's route table version), `/status` (JSON for `interlock status`). Read-only; bind
//! it to loopback or a management address.
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::proxy::Proxy;

/// Whether the proxy takes traffic, as `/readyz` reports it: 200 only while `Serving`, so a
/// health check (the stack's `interlock ready`) or an external balancer sends clients only
/// to a proxy that has its routes and is not draining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Ports bound, not accepting: the first routes have not come yet.
    WaitingForRoutes,
    /// Accepting on the HTTP(S) ports.
    Serving,
    /// SIGTERM came: no new connections, open ones finishing.
    Draining,
}

impl Readiness {
    fn answer(self) -> (StatusCode, &'static str) {
        match self {
            Readiness::Serving => (StatusCode::OK, "ready\n"),
            Readiness::WaitingForRoutes => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: waiting for the first routes\n",
            ),
            Readiness::Draining => (StatusCode::SERVICE_UNAVAILABLE, "not ready: draining\n"),
        }
    }
}

/// Produces the JSON body of `/status` (the agent's routes, backends and L4 counters).
pub type StatusFn = Arc<dyn Fn(&Proxy) -> String + Send + Sync>;

/// What the admin address answers from.
#[derive(Clone)]
pub struct Admin {
    pub registry: Arc<Mutex<Registry>>,
    pub proxy: Arc<Proxy>,
    pub status: Option<StatusFn>,
    pub readiness: watch::Receiver<Readiness>,
}

pub async fn serve(listener: TcpListener, admin: Admin) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            // Every answer is ready at once: made here, nothing cloned per request.
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                std::future::ready(Ok::<_, Infallible>(answer(req.uri().path(), &admin)))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(path: &str, admin: &Admin) -> Response<Full<Bytes>> {
    let Admin {
        registry,
        proxy,
        status: status_fn,
        readiness,
    } = admin;
    let (status, body) = match path {
        "/healthz" => (StatusCode::OK, "ok\n".to_string()),
        "/readyz" => {
            let (code, text) = readiness.borrow().answer();
            (code, text.to_string())
        }
        "/metrics" => {
            proxy.refresh_backend_up();
            let mut out = String::new();
            let registry = registry.lock().unwrap_or_else(|e| e.into_inner());
            match prometheus_client::encoding::text::encode(&mut out, &registry) {
                Ok(()) => (StatusCode::OK, out),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}\n")),
            }
        }
        "/routes" => (StatusCode::OK, format!("{}\n", proxy.table().table.version)),
        "/status" => match status_fn {
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
