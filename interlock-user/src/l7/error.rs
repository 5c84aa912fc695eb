//! Proxy errors that say where the failure came from and whether a retry on another backend
//! is safe (nothing reached the backend).
use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::StatusCode;

/// Which side failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// A method a reverse proxy does not serve (`CONNECT`: it would make an open tunnel).
    #[error("method {0} is not allowed")]
    MethodNotAllowed(&'static str),
    /// Something the request needs that the proxy does not do (a transfer coding it cannot
    /// undo: forwarding the body re-chunked would lose the coding).
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
    #[error("no route for host {host:?}")]
    NoRoute { host: String },
    #[error("route {route} has no backend")]
    NoBackend { route: String },
    #[error("connecting to {addr} failed: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("connecting to {addr} timed out")]
    ConnectTimeout { addr: SocketAddr },
    /// The TLS handshake with an `ssl_backend` task failed (its certificate did not verify,
    /// or it does not speak TLS): part of connecting, so nothing was sent and another task
    /// may take the request.
    #[error("TLS handshake with {addr} failed: {source}")]
    BackendTls { addr: SocketAddr, source: std::io::Error },
    /// The route's TLS to its backends cannot be set up (its CA file cannot be read, or
    /// there are no roots to verify against): no task of the route can be reached.
    #[error("TLS to the backends of {route}: {reason}")]
    BackendTlsConfig { route: String, reason: String },
    /// The backend was serving its limit of requests for the whole queue wait.
    #[error("backend {addr} stayed at its limit of concurrent requests")]
    BackendBusy { addr: SocketAddr },
    #[error("a pooled connection to {addr} closed before the request was sent")]
    StaleConnection { addr: SocketAddr },
    #[error("upstream {addr} failed: {source}")]
    Upstream { addr: SocketAddr, source: hyper::Error },
    /// Reading from or writing to a backend failed once the request had (maybe) reached it
    /// (the lean HTTP/1.1 client's connections).
    #[error("upstream {addr} failed: {source}")]
    UpstreamIo { addr: SocketAddr, source: std::io::Error },
    /// The backend's response head is malformed, too large, or frames its body ambiguously.
    #[error("upstream {addr} sent a bad response: {reason}")]
    BadResponse { addr: SocketAddr, reason: &'static str },
    /// The request body the client was sending broke off (or was malformed) while it was
    /// being forwarded: the client's fault, not the backend's.
    #[error("the client's request body failed while going to {addr}: {source}")]
    ClientBody { addr: SocketAddr, source: hyper::Error },
    /// The client paused its request body longer than the body timeout allows.
    #[error("the client's request body to {addr} stalled for {after:?}")]
    ClientBodyTimeout { addr: SocketAddr, after: Duration },
    /// The client's request body is larger than `--max-request-body-bytes`: by its
    /// Content-Length (`addr` none: nothing was sent), or as it streamed.
    #[error("the client's request body is over the limit of {limit} bytes")]
    BodyTooLarge { addr: Option<SocketAddr>, limit: u64 },
    #[error("upstream {addr} did not answer in time")]
    UpstreamTimeout { addr: SocketAddr },
    #[error("internal error: {0}")]
    Internal(String),
}

/// A client's request body paused longer than allowed (`front::body_timeout`).
#[derive(Debug, thiserror::Error)]
#[error("no request body bytes from the client for {0:?}")]
pub struct BodyTimedOut(pub Duration);

/// A client's request body streamed past the size limit (`front::body_limit`).
#[derive(Debug, thiserror::Error)]
#[error("the request body is over the limit of {0} bytes")]
pub struct BodyOverLimit(pub u64);

impl ProxyError {
    /// A failed exchange with `addr`: hyper calls errors of the body we were streaming to
    /// it "user" errors, and that body is the client's.
    pub fn exchange(addr: SocketAddr, source: hyper::Error) -> ProxyError {
        if source.is_user() {
            // hyper keeps the body's error as its source.
            for cause in std::iter::successors(source.source(), |&e| e.source()) {
                if let Some(t) = cause.downcast_ref::<BodyTimedOut>() {
                    return ProxyError::ClientBodyTimeout { addr, after: t.0 };
                }
                if let Some(over) = cause.downcast_ref::<BodyOverLimit>() {
                    return ProxyError::BodyTooLarge {
                        addr: Some(addr),
                        limit: over.0,
                    };
                }
            }
            ProxyError::ClientBody { addr, source }
        } else {
            ProxyError::Upstream { addr, source }
        }
    }

    pub fn side(&self) -> Side {
        match self {
            ProxyError::BadRequest(_)
            | ProxyError::MethodNotAllowed(_)
            | ProxyError::NotImplemented(_)
            | ProxyError::NoRoute { .. }
            | ProxyError::ClientBody { .. }
            | ProxyError::ClientBodyTimeout { .. }
            | ProxyError::BodyTooLarge { .. } => Side::Client,
            ProxyError::Internal(_) => Side::Internal,
            _ => Side::Upstream,
        }
    }

    /// True when the request never reached the backend, so another backend may take it.
    pub fn retry_safe(&self) -> bool {
        matches!(
            self,
            ProxyError::Connect { .. }
                | ProxyError::ConnectTimeout { .. }
                | ProxyError::BackendTls { .. }
                | ProxyError::StaleConnection { .. }
                | ProxyError::BackendBusy { .. }
        )
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) | ProxyError::ClientBody { .. } => StatusCode::BAD_REQUEST,
            ProxyError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ProxyError::ClientBodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::NoBackend { .. } | ProxyError::BackendBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect { .. }
            | ProxyError::BackendTls { .. }
            | ProxyError::BackendTlsConfig { .. }
            | ProxyError::StaleConnection { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::UpstreamIo { .. }
            | ProxyError::BadResponse { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout { .. } | ProxyError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}
