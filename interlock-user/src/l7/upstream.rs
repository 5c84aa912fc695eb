//! Connections to backends: a small pool of idle HTTP/1.1 connections per address.
//!
//! Written by hand rather than hyper-util's pooled client on purpose: the proxy must know
//! whether a failed attempt sent anything. Connecting is a separate step (a refused or
//! timed-out connect is safe to retry elsewhere), and a pooled connection found closed hands
//! the unsent request back (`try_send_request`), so a just-died task never costs a 502.
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::error::ProxyError;
use super::ProxyBody;

/// Pooled connections kept per backend (idle or finishing a response).
const MAX_IDLE_PER_BACKEND: usize = 256;

pub struct Upstream {
    /// foldhash: the map is read twice per request, SipHash's DoS resistance buys nothing
    /// for keys that come from the snapshot, not from clients.
    idle: Mutex<foldhash::HashMap<SocketAddr, Vec<SendRequest<ProxyBody>>>>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl Upstream {
    pub fn new(connect_timeout: Duration, response_timeout: Duration) -> Upstream {
        Upstream {
            idle: Mutex::new(foldhash::HashMap::default()),
            connect_timeout,
            response_timeout,
        }
    }

    /// Sends `req` to `addr` and waits for the response head. On a retry-safe error the
    /// request comes back (`Err((error, Some(req)))`) so it can go to another backend.
    pub async fn send(
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
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|a, _| live(a));
    }
}
