//! hyper's HTTP/1.1 client, for the requests the lean client does not take: those with a
//! body (streamed while the response comes) and upgrades (websockets: hyper hands the
//! upgraded connection over).
//!
//! Written by hand rather than hyper-util's pooled client on purpose: the proxy must know
//! whether a failed attempt sent anything. Connecting is a separate step (a refused or
//! timed-out connect is safe to retry elsewhere), and a pooled connection found closed hands
//! the unsent request back (`try_send_request`), so a just-died task never costs a 502.
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::attempt;
use super::pool::{ConnState, Pool, Pooled};
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
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl HyperClient {
    pub(super) fn new(connect_timeout: Duration, response_timeout: Duration) -> HyperClient {
        HyperClient {
            pool: Pool::default(),
            connect_timeout,
            response_timeout,
        }
    }

    /// Sends `req` to `addr` and waits for the response head. On a retry-safe error the
    /// request comes back.
    pub(super) async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, (ProxyError, Option<Request<ProxyBody>>)> {
        say_chunked(&mut req);
        // Pooled connections first; one found closed hands the request back untouched.
        while let Some(mut sender) = self.pool.checkout(addr) {
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.keep(addr, sender, resp)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err((ProxyError::exchange(addr, e.into_error()), None)),
                },
            }
        }
        let mut sender = match self.connect(addr).await {
            Ok(s) => s,
            Err(e) => return Err((e, Some(req))),
        };
        let response = tokio::time::timeout(self.response_timeout, sender.try_send_request(req)).await;
        match response {
            Ok(Ok(resp)) => Ok(self.keep(addr, sender, resp)),
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
    fn keep(&self, addr: SocketAddr, sender: SendRequest<ProxyBody>, resp: Response<Incoming>) -> Response<Incoming> {
        if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
            self.pool.put(addr, sender);
        }
        resp
    }

    pub(super) fn retain(&self, live: &impl Fn(&SocketAddr) -> bool) {
        self.pool.retain(live);
    }
}
