//! Client-facing listeners: accept with a connection limit, serve HTTP/1.1 and HTTP/2 (the
//! protocol chosen per connection: ALPN on TLS, the first bytes otherwise, `protocol`) with
//! hyper's servers (body-less HTTP/1.1 requests on plain listeners with the lean loop in
//! `h1_server`), and drain gracefully on shutdown.
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION};
use hyper::server::conn::{http1, http2};
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::body_limit::BodyLimit;
use super::body_timeout::BodyTimeout;
use super::h1_server;
use super::linger::ClientStream;
use super::protocol::{self, Opening, Protocol};
use super::proxy_protocol::{self, Front};
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

/// The shutdown as a connection sees it. Each connection holds one from accept to close:
/// the drain waits until none is left, whether hyper or the lean loop serves it.
struct Shutdown {
    /// True from the start of the shutdown: HTTP/1 answers end their connection.
    stop: watch::Receiver<bool>,
    /// True once the idle window is over: hyper's connections finish (`drive`).
    closing: watch::Receiver<bool>,
}

/// Serves `listeners` until `shutdown` turns true, then drains for `limits.drain_grace`.
pub async fn serve(listeners: Vec<Listener>, proxy: Arc<Proxy>, limits: Limits, mut shutdown: watch::Receiver<bool>) {
    // Not hyper-util's `GracefulShutdown`: its watcher takes only the connection types its
    // sealed trait lists, and HTTP/1 with upgrades is not one of them (hyper-util 0.1.21).
    // The same thing by hand: a receiver per connection, counted and waited for.
    let (closing, closing_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        let (proxy, limits, permits, mut stop) = (proxy.clone(), limits.clone(), permits.clone(), shutdown.clone());
        let closing = closing_rx.clone();
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
                let (proxy, limits, tls) = (proxy.clone(), limits.clone(), listener.tls.clone());
                let mut shutdown = Shutdown {
                    stop: stop.clone(),
                    closing: closing.clone(),
                };
                let local_port = stream.local_addr().map_or(0, |a| a.port());
                let mut stream = ClientStream::new(stream);
                tokio::spawn(async move {
                    proxy.metrics.connections.inc();
                    let peer = match peer_of(&mut stream, peer, local_port, &limits).await {
                        Some(peer) => peer,
                        None => {
                            proxy.metrics.connections.dec();
                            return;
                        }
                    };
                    // The connection futures are boxed: the spawned task stays small, so
                    // spawning and finishing it copy a few bytes instead of hyper's whole
                    // connection state (several KiB per accepted connection).
                    match tls {
                        None => {
                            // Body-less HTTP/1.1 requests take the lean loop; the first
                            // other request hands the connection to hyper.
                            let lean = h1_server::serve(stream, peer.clone(), &proxy, &limits, &mut shutdown.stop);
                            let lean = Box::pin(lean).await;
                            if let h1_server::Outcome::Handover(stream) = lean {
                                // h2c with prior knowledge, or HTTP/1 from here on.
                                let conn = serve_connection(
                                    stream,
                                    Client::new(peer.clone(), Scheme::Http, Protocol::Sniff),
                                    &proxy,
                                    &limits,
                                    shutdown,
                                );
                                Box::pin(conn).await
                            }
                        }
                        Some(tls) => {
                            let _ = stream.set_nodelay(true);
                            if let Some(stream) = Box::pin(tls.accept(stream, peer.addr, &proxy)).await {
                                let protocol = Protocol::of_alpn(stream.get_ref().1.alpn_protocol());
                                let client = Client::new(peer, Scheme::Https, protocol);
                                let conn = serve_connection(stream, client, &proxy, &limits, shutdown);
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
    // The accept loops' receivers are gone with them: only connections hold one now.
    drop(closing_rx);
    tracing::info!("draining client connections (up to {:?})", limits.drain_grace);
    let deadline = tokio::time::Instant::now() + limits.drain_grace;
    // hyper closes an idle HTTP/1 connection as soon as it is told to shut down, so it is
    // told only after the idle window; until then its HTTP/1 answers say `Connection:
    // close` (`serve_connection`). Connections that end sooner end the wait sooner.
    let window = tokio::time::Instant::now() + limits.drain_grace.min(IDLE_DRAIN);
    while closing.receiver_count() > 0 && tokio::time::Instant::now() < window {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    closing.send_replace(true);
    if tokio::time::timeout_at(deadline, closing.closed()).await.is_err() {
        tracing::warn!("drain grace period over; closing the remaining connections");
    }
}

/// The client of a new connection: its peer, or whom a trusted balancer's PROXY header names
/// (`proxy_protocol`). `None`: the connection is to be closed (a bad or late header).
async fn peer_of(stream: &mut ClientStream, addr: SocketAddr, local_port: u16, limits: &Limits) -> Option<Peer> {
    if limits.trusted_proxies.is_empty() || !limits.trusted_proxies.contains(addr.ip()) {
        return Some(Peer::new(addr, local_port));
    }
    match proxy_protocol::read(stream, limits.header_read_timeout).await {
        Ok(Front::Plain) => Some(Peer::new(addr, local_port).trusted()),
        // The balancer's client is not trusted itself: its headers are replaced.
        Ok(Front::Header {
            client,
            local_port: port,
        }) => match client {
            Some(client) => Some(Peer::new(client, port.unwrap_or(local_port))),
            None => Some(Peer::new(addr, local_port).trusted()),
        },
        Err(why) => {
            tracing::debug!(peer = %addr, "closing a trusted proxy's connection: {why}");
            None
        }
    }
}

/// Who a connection serves and how.
struct Client {
    peer: Peer,
    scheme: Scheme,
    protocol: Protocol,
}

impl Client {
    fn new(peer: Peer, scheme: Scheme, protocol: Protocol) -> Client {
        Client { peer, scheme, protocol }
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one connection, as `client.protocol` says, with the limits
/// applied. Once `shutdown.stop` turns true, HTTP/1 answers end their connection
/// (`Connection: close`); once `shutdown.closing` does, hyper finishes the connection.
async fn serve_connection<S>(stream: S, client: Client, proxy: &Arc<Proxy>, limits: &Limits, shutdown: Shutdown)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Shutdown { stop, mut closing } = shutdown;
    let peer_addr = client.peer.addr;
    // Every arm serves a `Rewind` (empty when nothing was read): one instance of each of
    // hyper's connections per stream type.
    let (http2, stream) = match client.protocol {
        Protocol::Http1 => (false, super::rewind::Rewind::new(Vec::new(), stream)),
        Protocol::Http2 | Protocol::Sniff => {
            let read = protocol::opening(stream, limits.header_read_timeout);
            let (opening, mut stream) = tokio::select! {
                read = read => read,
                // Nothing asked yet: nothing to finish.
                _ = closing.wait_for(|c| *c) => return,
            };
            match opening {
                Opening::Preface => (true, stream),
                Opening::Other if client.protocol == Protocol::Sniff => (false, stream),
                Opening::Other => {
                    tracing::debug!(peer = %peer_addr, "h2 connection without the preface");
                    protocol::refuse_bad_preface(&mut stream).await;
                    return;
                }
                Opening::TimedOut { partial } => {
                    if partial {
                        proxy.metrics.limit_reached("header_read_timeout");
                    }
                    return;
                }
                Opening::Closed => return,
            }
        }
    };
    let proxy_metrics = proxy.metrics.clone();
    let proxy = proxy.clone();
    let (peer, scheme) = (client.peer, client.scheme);
    let body_timeout = limits.client_body_timeout;
    let max_body = proxy.max_request_body();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (proxy, peer) = (proxy.clone(), peer.clone());
        let req = req.map(|body| {
            let timed = BodyTimeout::new(body, body_timeout, proxy.metrics.clone());
            BodyLimit::new(timed, max_body, &proxy.metrics)
        });
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
    let io = TokioIo::new(stream);
    let served = if http2 {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes as u32)
            .max_concurrent_streams(256);
        let conn = builder.serve_connection(io, service);
        drive(conn, http2::Connection::graceful_shutdown, &mut closing).await
    } else {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // The whole head, request line included: a long URI is 431 like a long
            // header (as on the lean path), not 414.
            .max_header_size(limits.max_header_bytes)
            .max_buf_size(limits.max_header_bytes.max(8192));
        if limits.max_headers != MAX_HEADERS {
            // Only when it differs from hyper's default (which `MAX_HEADERS` is): an explicit limit makes hyper fill two header arrays on
            // the heap for every request (about 1,700 instructions); its default is on the stack.
            builder.max_headers(limits.max_headers);
        }
        let conn = builder.serve_connection(io, service).with_upgrades();
        drive(conn, http1::UpgradeableConnection::graceful_shutdown, &mut closing).await
    };
    if let Err(e) = served {
        // Header size, header count and the header read timeout are enforced by hyper,
        // which ends the connection with an error saying which.
        if e.is_parse_too_large() {
            proxy_metrics.limit_reached("request_head_size");
        } else if e.is_timeout() {
            proxy_metrics.limit_reached("header_read_timeout");
        }
        tracing::debug!(peer = %peer_addr, "client connection ended: {e}");
    }
}

/// Runs one of hyper's connections to its end; once `closing` turns true, tells it to
/// finish (`graceful_shutdown`: GOAWAY on h2; on HTTP/1 the response in progress, then close).
async fn drive<C>(conn: C, graceful_shutdown: fn(Pin<&mut C>), closing: &mut watch::Receiver<bool>) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
{
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        done = conn.as_mut() => return done,
        // `Err`: the drain is over and gone; the connection just runs on.
        Ok(_) = closing.wait_for(|c| *c) => {}
    }
    graceful_shutdown(conn.as_mut());
    conn.await
}
