//! Requests to backends: one `send` over the two HTTP/1.1 clients, one connection pool type
//! (`pool`), one connect and one retry rule (`attempt`).
//!
//! Body-less, non-upgrade requests (most of them) take the lean client in `h1_client`;
//! requests with a body and upgrades (websockets) take hyper's (`hyper_client`), which
//! streams a request body while the response comes and hands upgraded connections over.
//! Callers build an [`Outgoing`] for one or the other and get an [`UpstreamBody`] back;
//! which client served stays in here.
//!
//! Requests to `ssl_backend` routes always take hyper's client, over TLS (`tls`): the lean
//! client speaks plain HTTP only, the cost of TLS dwarfs what it saves.
pub mod attempt;
pub mod h1_client;
mod hyper_client;
pub(crate) mod pool;
pub mod tls;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};

use crate::l7::error::ProxyError;
use crate::l7::raw_headers::RawHeaders;
use crate::l7::{BoxError, ProxyBody};
use crate::model::BackendTls;
use h1_client::{H1Body, H1Client, LeanRequest};
use hyper_client::HyperClient;
use tls::{TlsTarget, TlsTargets};

/// A request on its way to a backend, in the form its client takes, and over TLS when
/// its route says so (hyper's requests only).
pub struct Outgoing(Client<LeanRequest, Request<ProxyBody>>, Option<Arc<TlsTarget>>);

/// Which client: the lean one or hyper's.
enum Client<L, H> {
    Lean(L),
    Hyper(H),
}

impl Outgoing {
    /// No body, no upgrade: the lean client.
    pub fn lean(req: LeanRequest) -> Outgoing {
        Outgoing(Client::Lean(req), None)
    }

    /// A body to stream, or an upgrade: hyper's client.
    pub fn streamed(req: Request<ProxyBody>) -> Outgoing {
        Outgoing(Client::Hyper(req), None)
    }

    /// Hyper's client, over TLS to `target` (`ssl_backend` routes).
    pub fn streamed_tls(req: Request<ProxyBody>, target: Arc<TlsTarget>) -> Outgoing {
        Outgoing(Client::Hyper(req), Some(target))
    }

    /// The client side of an upgrade this request asks for (hyper's requests only).
    pub fn on_upgrade(&mut self) -> Option<hyper::upgrade::OnUpgrade> {
        match &mut self.0 {
            Client::Hyper(req) => Some(hyper::upgrade::on(req)),
            Client::Lean(_) => None,
        }
    }
}

/// A backend's response body, from whichever client fetched it.
pub struct UpstreamBody(Client<H1Body, Incoming>);

impl UpstreamBody {
    /// The backend's header lines, when the lean client kept them raw (the response's map
    /// then holds none of them, and no hop-by-hop ones were kept).
    pub fn take_raw_headers(&mut self) -> Option<RawHeaders> {
        match &mut self.0 {
            Client::Lean(body) => body.take_raw_headers(),
            Client::Hyper(_) => None,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Client::Lean(b) => Pin::new(b).poll_frame(cx),
            Client::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Client::Lean(b) => b.is_end_stream(),
            Client::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Client::Lean(b) => b.size_hint(),
            Client::Hyper(b) => b.size_hint(),
        }
    }
}

pub struct Upstream {
    lean: H1Client,
    hyper: HyperClient,
    tls: TlsTargets,
    connect_timeout: Duration,
}

impl Upstream {
    pub fn new(connect_timeout: Duration, response_timeout: Duration) -> Upstream {
        Upstream {
            lean: H1Client::new(connect_timeout, response_timeout),
            hyper: HyperClient::new(connect_timeout, response_timeout),
            tls: TlsTargets::default(),
            connect_timeout,
        }
    }

    /// How long a connect to a backend may take (also for passthrough connections).
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Sends `req` to `addr` and waits for the response head. On a retry-safe error the
    /// request comes back (`Err((error, Some(req)))`) so it can go to another backend.
    pub async fn send(
        &self,
        addr: SocketAddr,
        req: Outgoing,
    ) -> Result<Response<UpstreamBody>, (ProxyError, Option<Outgoing>)> {
        let tls = req.1;
        match req.0 {
            Client::Lean(req) => match self.lean.send(addr, req).await {
                Ok(resp) => Ok(resp.map(|b| UpstreamBody(Client::Lean(b)))),
                Err((e, unsent)) => Err((e, unsent.map(Outgoing::lean))),
            },
            Client::Hyper(req) => match self.hyper.send(addr, tls.as_deref(), req).await {
                Ok(resp) => Ok(resp.map(|b| UpstreamBody(Client::Hyper(b)))),
                Err((e, unsent)) => Err((e, unsent.map(|r| Outgoing(Client::Hyper(r), tls)))),
            },
        }
    }

    /// What connecting over TLS with `spec` takes, built once per setting (its session
    /// cache lives on across snapshots); the error says why it cannot be (a CA file).
    pub fn tls_target(&self, spec: &BackendTls) -> Result<Arc<TlsTarget>, String> {
        self.tls.get(spec)
    }

    /// Drops idle connections to backends that are no longer routed.
    pub fn retain(&self, live: impl Fn(&SocketAddr) -> bool) {
        self.lean.retain(&live);
        self.hyper.retain(&live);
    }

    /// Forgets the TLS settings no route has any more, and their idle connections.
    pub fn retain_tls(&self, live: impl Fn(&BackendTls) -> bool) {
        let kept = self.tls.retain(live);
        self.hyper.retain_tls(|id| kept.contains(&id));
    }
}
