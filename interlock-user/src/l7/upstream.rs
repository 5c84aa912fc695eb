//! Connections to backends: a small pool of idle HTTP/1.1 connections per address.
//!
//! Body-less, non-upgrade requests (most of them) take the lean client in `h1_client`;
//! requests with a body and upgrades (websockets) take hyper's client connection here,
//! which streams a request body while the response comes and hands upgraded connections
//! over.
//!
//! Written by hand rather than hyper-util's pooled client on purpose: the proxy must know
//! whether a failed attempt sent anything. Connecting is a separate step (a refused or
//! timed-out connect is safe to retry elsewhere), and a pooled connection found closed hands
//! the unsent request back (`try_send_request`), so a just-died task never costs a 502.
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::error::ProxyError;
use super::h1_client::{H1Body, H1Client, LeanRequest};
use super::{BoxError, ProxyBody};

/// A request on its way to a backend, in the form its client takes.
pub enum Outgoing {
    /// No body, no upgrade: the lean client.
    Lean(LeanRequest),
    /// hyper's client: a body to stream, or an upgrade.
    Full(Request<ProxyBody>),
}

/// A backend's response body, from whichever client fetched it.
pub enum UpstreamBody {
    Lean(H1Body),
    Hyper(Incoming),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Lean(b) => Pin::new(b).poll_frame(cx),
            UpstreamBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Lean(b) => b.is_end_stream(),
            UpstreamBody::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Lean(b) => b.size_hint(),
            UpstreamBody::Hyper(b) => b.size_hint(),
        }
    }
}

/// Pooled connections kept per backend (idle or finishing a response).
const MAX_IDLE_PER_BACKEND: usize = 256;

pub struct Upstream {
    /// foldhash: the map is read twice per request, SipHash's DoS resistance buys nothing
    /// for keys that come from the snapshot, not from clients.
    idle: Mutex<foldhash::HashMap<SocketAddr, Vec<SendRequest<ProxyBody>>>>,
    lean: H1Client,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl Upstream {
    pub fn new(connect_timeout: Duration, response_timeout: Duration) -> Upstream {
        Upstream {
            idle: Mutex::new(foldhash::HashMap::default()),
            lean: H1Client::new(connect_timeout, response_timeout),
            connect_timeout,
            response_timeout,
        }
    }

    /// Sends `req` to `addr` and waits for the response head. On a retry-safe error the
    /// request comes back (`Err((error, Some(req)))`) so it can go to another backend.
    pub async fn send(
        &self,
        addr: SocketAddr,
        req: Outgoing,
    ) -> Result<Response<UpstreamBody>, (ProxyError, Option<Outgoing>)> {
        match req {
            Outgoing::Lean(req) => match self.lean.send(addr, req).await {
                Ok(resp) => Ok(resp.map(UpstreamBody::Lean)),
                Err((e, unsent)) => Err((e, unsent.map(Outgoing::Lean))),
            },
            Outgoing::Full(req) => match self.send_hyper(addr, req).await {
                Ok(resp) => Ok(resp.map(UpstreamBody::Hyper)),
                Err((e, unsent)) => Err((e, unsent.map(Outgoing::Full))),
            },
        }
    }

    async fn send_hyper(
        &self,
        addr: SocketAddr,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, (ProxyError, Option<Request<ProxyBody>>)> {
        // Pooled connections first; one found closed hands the request back untouched.
        while let Some(mut sender) = self.checkout(addr) {
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

    /// An idle connection ready for a request. Connections still streaming a response stay
    /// pooled (they become ready when it ends); closed ones are dropped.
    fn checkout(&self, addr: SocketAddr) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let conns = idle.get_mut(&addr)?;
        conns.retain(|s| !s.is_closed());
        let ready = conns.iter().position(|s| s.is_ready())?;
        Some(conns.swap_remove(ready))
    }

    async fn connect(&self, addr: SocketAddr) -> Result<SendRequest<ProxyBody>, ProxyError> {
        let stream = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(ProxyError::Connect { addr, source }),
            Err(_) => return Err(ProxyError::ConnectTimeout { addr }),
        };
        let _ = stream.set_nodelay(true);
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
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let conns = idle.entry(addr).or_default();
            if conns.len() < MAX_IDLE_PER_BACKEND {
                conns.push(sender);
            }
        }
        resp
    }

    /// Drops idle connections to backends that are no longer routed.
    pub fn retain(&self, live: impl Fn(&SocketAddr) -> bool) {
        self.lean.retain(&live);
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|a, _| live(a));
    }
}
