//! Real loopback sockets for the L7 tests: hyper backends that say who they are, the proxy
//! served in-process on port 0, and a client.
#![allow(dead_code)]

pub mod recording;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use interlock::l7::front::listeners;
use interlock::l7::front::server::{self, Listener};
use interlock::l7::front::tls::TlsFront;
use interlock::l7::limits::Limits;
use interlock::l7::metrics::Metrics;
use interlock::l7::proxy::Proxy;
use interlock::model::{Backend, HttpRoute, ServiceRef, Snapshot};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A backend answering `name=<name> path=<path> xff=<x-forwarded-for> host=<host>`,
/// echoing POST bodies, and switching `Upgrade` requests to a raw byte echo.
pub struct TestBackend {
    pub addr: SocketAddr,
    pub name: String,
    /// Paths of the requests it received.
    pub seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
    killed: watch::Sender<bool>,
}

impl TestBackend {
    pub async fn start(name: &str) -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (name_c, seen_c) = (name.to_string(), seen.clone());
        let (killed, killed_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (name, seen, mut killed) = (name_c.clone(), seen_c.clone(), killed_rx.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| answer(req, name.clone(), seen.clone()));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    tokio::select! {
                        _ = conn => {},
                        _ = killed.wait_for(|k| *k) => {},
                    }
                });
            }
        });
        TestBackend {
            addr,
            name: name.into(),
            seen,
            task,
            killed,
        }
    }

    /// Dies like a task: the listener and every open connection close.
    pub fn kill(&self) {
        self.task.abort();
        let _ = self.killed.send(true);
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    mut req: Request<Incoming>,
    name: String,
    seen: Arc<Mutex<Vec<String>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    seen.lock().unwrap().push(path.clone());
    if req.headers().contains_key(hyper::header::UPGRADE) {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut()
            .insert(hyper::header::CONNECTION, "upgrade".parse().unwrap());
        resp.headers_mut()
            .insert(hyper::header::UPGRADE, "websocket".parse().unwrap());
        return Ok(resp);
    }
    if path == "/health" && name.starts_with("sick") {
        let mut resp = Response::new(Full::new(Bytes::from_static(b"unhealthy")));
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return Ok(resp);
    }
    let header = |h: &str| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    let text = format!(
        "name={name} path={path} xff={} proto={} host={}",
        header("x-forwarded-for"),
        header("x-forwarded-proto"),
        header("host")
    );
    if req.method() == hyper::Method::POST {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Ok(Response::new(Full::new(body)));
    }
    Ok(Response::new(Full::new(Bytes::from(text))))
}

/// A route for `hosts` (+ prefix) to `backends`.
pub fn route(service: &str, hosts: &[&str], prefix: &str, backends: &[&TestBackend]) -> HttpRoute {
    HttpRoute::plain(
        ServiceRef {
            id: service.into(),
            name: service.into(),
        },
        hosts.iter().map(|h| h.to_string()).collect(),
        prefix,
        backends
            .iter()
            .map(|b| Backend {
                addr: b.addr,
                weight: 1,
                id: b.name.clone(),
            })
            .collect(),
    )
}

pub fn snapshot(version: u64, http: Vec<HttpRoute>) -> Snapshot {
    Snapshot {
        version,
        http,
        ..Snapshot::default()
    }
}

/// The proxy on loopback: plain HTTP and HTTPS listeners on port 0.
pub struct TestProxy {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub proxy: Arc<Proxy>,
    pub tls: Arc<TlsFront>,
    /// The registry the proxy's metrics are in, as the admin address encodes it.
    pub registry: Arc<Mutex<prometheus_client::registry::Registry>>,
    stop: watch::Sender<bool>,
    pub serving: Option<tokio::task::JoinHandle<()>>,
}

impl TestProxy {
    pub async fn start(snapshot: &Snapshot) -> TestProxy {
        Self::start_with(snapshot, Limits::default()).await
    }

    pub async fn start_with(snapshot: &Snapshot, limits: Limits) -> TestProxy {
        Self::start_configured(snapshot, limits, |p| p).await
    }

    /// Like `start_with`, with `configure` applied to the proxy before it serves.
    pub async fn start_configured(
        snapshot: &Snapshot,
        limits: Limits,
        configure: impl FnOnce(Proxy) -> Proxy,
    ) -> TestProxy {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(Metrics::new(&mut registry));
        let proxy = Arc::new(configure(Proxy::new(
            metrics,
            "test-proxy",
            Duration::from_secs(1),
            Duration::from_secs(10),
        )));
        let tls = Arc::new(TlsFront::new().unwrap());
        proxy.apply(snapshot);
        tls.apply(snapshot);
        // Bound and tuned as the `proxy` command's listeners are.
        let any_port = "127.0.0.1:0".parse().unwrap();
        let sockets = listeners::acquire(any_port, Some(any_port), None, false).unwrap();
        let http = sockets.http.listen().unwrap();
        let https = sockets.https.unwrap().listen().unwrap();
        let (http_addr, https_addr) = (http.local_addr().unwrap(), https.local_addr().unwrap());
        let (stop, stop_rx) = watch::channel(false);
        let listeners = vec![
            Listener { tcp: http, tls: None },
            Listener {
                tcp: https,
                tls: Some(tls.clone()),
            },
        ];
        let serving = Some(tokio::spawn(server::serve(listeners, proxy.clone(), limits, stop_rx)));
        TestProxy {
            http: http_addr,
            https: https_addr,
            proxy,
            tls,
            registry: Arc::new(Mutex::new(registry)),
            stop,
            serving,
        }
    }

    /// Serves the admin address (`/metrics`, `/status`, ...) on a loopback port.
    pub async fn admin(&self) -> SocketAddr {
        use interlock::l7::admin::{self, Admin, Readiness};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_ready, readiness) = watch::channel(Readiness::Serving);
        tokio::spawn(admin::serve(
            listener,
            Admin {
                registry: self.registry.clone(),
                proxy: self.proxy.clone(),
                status: None,
                readiness,
            },
        ));
        addr
    }

    pub fn apply(&self, snapshot: &Snapshot) {
        self.proxy.apply(snapshot);
        self.tls.apply(snapshot);
    }

    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }
}

pub type TestClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `http://<proxy>/<path>` with `Host: host`; returns status, headers and body text.
pub async fn get(
    client: &TestClient,
    proxy: SocketAddr,
    host: &str,
    path: &str,
) -> (StatusCode, hyper::HeaderMap, String) {
    let req = Request::get(format!("http://{proxy}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.expect("the proxy answers");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    (parts.status, parts.headers, String::from_utf8_lossy(&body).into_owned())
}

/// The value of `key=` in a backend's answer.
pub fn field<'a>(body: &'a str, key: &str) -> &'a str {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")[..]))
        .unwrap_or("")
}

/// Sends raw bytes and returns what the proxy answered before closing (or within 3 s).
pub async fn raw(proxy: SocketAddr, bytes: &[u8]) -> String {
    raw_within(proxy, bytes, Duration::from_secs(3)).await
}

/// `raw`, waiting at most `wait` for the answer.
pub async fn raw_within(proxy: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Fresh snapshot-stream TLS material (a CA and its `interlock` certificate).
pub fn stream_material() -> interlock::control::stream_tls::StreamTls {
    use interlock::control::stream_tls::{generate, StreamTls};
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ilt-stream-{}-{n}", std::process::id()));
    generate().unwrap().write(&dir).unwrap();
    let tls = StreamTls::load(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    tls
}
