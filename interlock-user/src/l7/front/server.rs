//! Client-facing listeners: accept with a connection limit, serve HTTP/1.1 and HTTP/2 (h2c
//! prior knowledge on plain listeners, ALPN on TLS ones) with hyper-util's auto builder
//! (body-less HTTP/1.1 requests on plain listeners with the lean loop in `h1_server`), and
//! drain gracefully on shutdown.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION};
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::h1_server;
use super::linger::ClientStream;
use super::tls::TlsFront;
use crate::l7::limits::{Limits, MAX_HEADERS};
use crate::l7::proxy::{Peer, Proxy, Scheme};

/// On shutdown, how long an idle HTTP/1 connection still waits for a request (answered
/// with `Connection: close`) before it is closed. Closing an idle keep-alive connection at
/// once races a client that is sending its next request on it, and that request fails; a
/// client using its connection within the window gets its answer and the close instead.
/// The lean loop (`h1_server`) and hyper's connections (here) both keep it.
pub(super) const IDLE_DRAIN: Duration = Duration::from_secs(1);

/// A listener and what it speaks.
pub struct Listener {
    pub tcp: TcpListener,
    /// `Some` for the HTTPS listener (TLS termination and SNI passthrough).
    pub tls: Option<Arc<TlsFront>>,
}

/// Serves `listeners` until `shutdown` turns true, then drains for `limits.drain_grace`.
pub async fn serve(listeners: Vec<Listener>, proxy: Arc<Proxy>, limits: Limits, mut shutdown: watch::Receiver<bool>) {
    // Accept loops share it; connections hold only a `Watcher` each, from accept to close,
    // so once the accept loops are gone `shutdown()` waits for every connection, whether
    // hyper or the lean loop serves it.
    let graceful = Arc::new(GracefulShutdown::new());
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        let (proxy, limits, graceful, permits, mut stop) = (
            proxy.clone(),
            limits.clone(),
            graceful.clone(),
            permits.clone(),
            shutdown.clone(),
        );
        accept_tasks.push(tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.tcp.accept() => a,
                    _ = stop.wait_for(|s| *s) => break,
                };
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    proxy.metrics.limit_reached("max_connections");
                    drop(stream);
                    continue;
                };
                let (proxy, limits, watcher, tls, mut stop) = (
                    proxy.clone(),
                    limits.clone(),
                    graceful.watcher(),
                    listener.tls.clone(),
                    stop.clone(),
                );
                let stream = ClientStream::new(stream);
                tokio::spawn(async move {
                    proxy.metrics.connections.inc();
                    // The connection futures are boxed: the spawned task stays small, so
                    // spawning and finishing it copy a few bytes instead of hyper's whole
                    // connection state (several KiB per accepted connection).
                    match tls {
                        None => {
                            // Body-less HTTP/1.1 requests take the lean loop; the first
                            // other request hands the connection to hyper.
                            let lean = Box::pin(h1_server::serve(stream, peer, &proxy, &limits, &mut stop)).await;
                            if let h1_server::Outcome::Handover(stream) = lean {
                                let conn = serve_connection(stream, peer, Scheme::Http, &proxy, &limits, watcher, stop);
                                Box::pin(conn).await
                            }
                        }
                        Some(tls) => {
                            let _ = stream.set_nodelay(true);
                            if let Some(stream) = Box::pin(tls.accept(stream, peer, &proxy)).await {
                                let conn =
                                    serve_connection(stream, peer, Scheme::Https, &proxy, &limits, watcher, stop);
                                Box::pin(conn).await;
                            }
                        }
                    }
                    proxy.metrics.connections.dec();
                    drop(permit);
                });
            }
        }));
    }
    let _ = shutdown.wait_for(|s| *s).await;
    for task in accept_tasks {
        let _ = task.await;
    }
    // The accept loops held the other references; should one have panicked, a new
    // (empty) handle only skips the wait.
    let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
    tracing::info!("draining client connections (up to {:?})", limits.drain_grace);
    let deadline = tokio::time::Instant::now() + limits.drain_grace;
    // hyper closes an idle HTTP/1 connection as soon as it is told to shut down, so it is
    // told only after the idle window; until then its HTTP/1 answers say `Connection:
    // close` (`serve_connection`). Connections that end sooner end the wait sooner.
    let window = tokio::time::Instant::now() + limits.drain_grace.min(IDLE_DRAIN);
    while graceful.count() > 0 && tokio::time::Instant::now() < window {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if tokio::time::timeout_at(deadline, graceful.shutdown()).await.is_err() {
        tracing::warn!("drain grace period over; closing the remaining connections");
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one connection, with the limits applied. Once `stop`
/// turns true, HTTP/1 answers end their connection (`Connection: close`).
pub async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    scheme: Scheme,
    proxy: &Arc<Proxy>,
    limits: &Limits,
    watcher: Watcher,
    stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    if limits.max_headers != MAX_HEADERS {
        // Only when it differs from hyper's default (which `MAX_HEADERS` is): an explicit limit makes hyper fill two header arrays on
        // the heap for every request (about 1,700 instructions); its default is on the stack.
        builder.http1().max_headers(limits.max_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(256);
    let proxy_metrics = proxy.metrics.clone();
    let proxy = proxy.clone();
    let peer_addr = peer;
    let peer = Peer::new(peer);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (proxy, peer) = (proxy.clone(), peer.clone());
        // Only HTTP/1 answers can end their connection this way (h2 has GOAWAY).
        let stop = (req.version() < Version::HTTP_2).then(|| stop.clone());
        async move {
            // hyper writes headers from the map only.
            let mut response = proxy.handle(req, peer, scheme).await.into_response();
            if stop.is_some_and(|stop| *stop.borrow()) {
                // hyper sees the header and closes the connection after this answer.
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        // Header size, header count and the header read timeout are enforced by hyper,
        // which ends the connection with an error saying which.
        match e.downcast_ref::<hyper::Error>() {
            Some(h) if h.is_parse_too_large() => proxy_metrics.limit_reached("request_head_size"),
            Some(h) if h.is_timeout() => proxy_metrics.limit_reached("header_read_timeout"),
            _ => {}
        }
        tracing::debug!(peer = %peer_addr, "client connection ended: {e}");
    }
}
