//! hyper's HTTP/1.1 client, for the requests the lean client does not take: those with a
//! body (streamed while the response comes) and upgrades (websockets: hyper hands the
//! upgraded connection over).
//!
//! Written by hand rather than hyper-util's pooled client on purpose: the proxy must know
//! whether a failed attempt sent anything. Connecting is a separate step (a refused or
//! timed-out connect is safe to retry elsewhere), and a pooled connection found closed hands
//! the unsent request back (`try_send_request`), so a just-died task never costs a 502.
//!
//! It is also the client of `ssl_backend` routes: their connections are TLS (`tls`),
//! pooled apart by backend and TLS target, and their handshake is part of connecting.
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::attempt;
use super::pool::{ConnState, Pool, PoolKey, Pooled};
use super::tls::TlsTarget;
use crate::l7::error::ProxyError;
use crate::l7::ProxyBody;

/// hyper's client sends a GET, HEAD or CONNECT whose body has no known length (a chunked
/// request body, its Transfer-Encoding removed as hop-by-hop) as if it had none: the body
/// would be dropped. Saying `chunked` explicitly makes hyper send it (other methods get
/// chunked from hyper itself).
fn say_chunked(req: &mut Request<ProxyBody>) {
    use hyper::body::Body;
    use hyper::header::{HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING};
    use hyper::Method;
    let unknown_length = !req.body().is_end_stream() && req.body().size_hint().exact().is_none();
    if unknown_length
        && matches!(*req.method(), Method::GET | Method::HEAD | Method::CONNECT)
        && !req.headers().contains_key(CONTENT_LENGTH)
    {
        req.headers_mut()
            .insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    }
}

impl Pooled for SendRequest<ProxyBody> {
    fn state(&self) -> ConnState {
        if self.is_closed() {
            ConnState::Closed
        } else if self.is_ready() {
            ConnState::Ready
        } else {
            ConnState::Busy
        }
    }
}

pub(super) struct HyperClient {
    pool: Pool<SendRequest<ProxyBody>>,
    /// TLS connections, by backend and the TLS target they were made for: a connection
    /// made for one server name or verification never serves another.
    tls_pool: Pool<SendRequest<ProxyBody>, (SocketAddr, u64)>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl HyperClient {
    pub(super) fn new(connect_timeout: Duration, response_timeout: Duration) -> HyperClient {
        HyperClient {
            pool: Pool::default(),
            tls_pool: Pool::default(),
            connect_timeout,
            response_timeout,
        }
    }

    /// Sends `req` to `addr` (over TLS with `tls`) and waits for the response head. On a
    /// retry-safe error the request comes back.
    pub(super) async fn send(
        &self,
        addr: SocketAddr,
        tls: Option<&TlsTarget>,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, (ProxyError, Option<Request<ProxyBody>>)> {
        say_chunked(&mut req);
        match tls {
            None => self.send_on(&self.pool, addr, addr, req, self.connect(addr)).await,
            Some(t) => {
                self.send_on(&self.tls_pool, (addr, t.id), addr, req, self.connect_tls(addr, t))
                    .await
            }
        }
    }

    /// `send` through `pool` under `key`; `connect` makes a new connection when no pooled
    /// one takes the request.
    async fn send_on<K: PoolKey>(
        &self,
        pool: &Pool<SendRequest<ProxyBody>, K>,
        key: K,
        addr: SocketAddr,
        mut req: Request<ProxyBody>,
        connect: impl Future<Output = Result<SendRequest<ProxyBody>, ProxyError>>,
    ) -> Result<Response<Incoming>, (ProxyError, Option<Request<ProxyBody>>)> {
        // Pooled connections first; one found closed hands the request back untouched.
        while let Some(mut sender) = pool.checkout(key) {
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(keep(pool, key, sender, resp)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err((ProxyError::exchange(addr, e.into_error()), None)),
                },
            }
        }
        let mut sender = match connect.await {
            Ok(s) => s,
            Err(e) => return Err((e, Some(req))),
        };
        let response = tokio::time::timeout(self.response_timeout, sender.try_send_request(req)).await;
        match response {
            Ok(Ok(resp)) => Ok(keep(pool, key, sender, resp)),
            Ok(Err(mut e)) => {
                let unsent = e.take_message();
                let error = match unsent {
                    Some(_) => ProxyError::StaleConnection { addr },
                    None => ProxyError::exchange(addr, e.into_error()),
                };
                Err((error, unsent))
            }
            Err(_) => Err((ProxyError::UpstreamTimeout { addr }, None)),
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<SendRequest<ProxyBody>, ProxyError> {
        let stream = attempt::connect(addr, self.connect_timeout).await?;
        handshake(addr, stream).await
    }

    /// TCP, then TLS within what is left of the connect timeout. A failed handshake is
    /// logged with rustls' reason (an unknown issuer, a name mismatch, not TLS at all).
    async fn connect_tls(&self, addr: SocketAddr, t: &TlsTarget) -> Result<SendRequest<ProxyBody>, ProxyError> {
        let started = Instant::now();
        let tcp = attempt::connect(addr, self.connect_timeout).await?;
        let left = self.connect_timeout.saturating_sub(started.elapsed());
        let stream = match tokio::time::timeout(left, t.connector.connect(t.server_name.clone(), tcp)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => {
                tracing::warn!(backend = %addr, server_name = %t.server_name(), "TLS handshake with the backend failed: {source}");
                return Err(ProxyError::BackendTls { addr, source });
            }
            Err(_) => return Err(ProxyError::ConnectTimeout { addr }),
        };
        handshake(addr, stream).await
    }

    pub(super) fn retain(&self, live: &impl Fn(&SocketAddr) -> bool) {
        self.pool.retain(live);
        self.tls_pool.retain(live);
    }

    /// Drops the TLS connections made for targets no route has any more (a setting
    /// changed: they are never taken again).
    pub(super) fn retain_tls(&self, live: impl Fn(u64) -> bool) {
        self.tls_pool.retain_keys(|(_, id)| live(*id));
    }
}

/// HTTP/1.1 over a connected stream (TCP, or TLS to an `ssl_backend` task).
async fn handshake<S>(addr: SocketAddr, stream: S) -> Result<SendRequest<ProxyBody>, ProxyError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ProxyError::Internal(format!("HTTP handshake with {addr}: {e}")))?;
    tokio::spawn(async move {
        // Ends when the connection closes; upgraded (websocket) connections live on.
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

/// Puts the connection back in the pool at once; `checkout` takes it again when the
/// response body has been read. No task per request.
fn keep<K: PoolKey>(
    pool: &Pool<SendRequest<ProxyBody>, K>,
    key: K,
    sender: SendRequest<ProxyBody>,
    resp: Response<Incoming>,
) -> Response<Incoming> {
    if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        pool.put(key, sender);
    }
    resp
}
