//! A lean HTTP/1.1 client for the common case: a request without a body (GET, HEAD, ...)
//! to a backend over plain TCP.
//!
//! hyper's client connection costs a task, channels and a dispatcher per connection and
//! per request (about 13k instructions a request, the largest single cost of the proxy).
//! Here the request head is written straight from the header map into one buffer, the
//! response head is parsed with `httparse` (its header lines kept as bytes with the body,
//! `RawHeaders`: see `raw_headers`), and the response body is read by the
//! [`H1Body`] the proxy streams to its client; when that body ends cleanly the connection
//! goes back to the pool. No task, no channel.
//!
//! Requests with a body and upgrades (websockets) still go through hyper's client
//! (`hyper_client`): streaming a request body while reading the response, and handing an
//! upgraded connection over, are what hyper's dispatcher is for.
//!
//! The pool is `upstream::pool`'s, as for hyper's client: idle connections per backend
//! address, bounded, dropped when a backend is no longer routed; a pooled
//! connection the backend has closed is never used (checked before the request is
//! written), and one found closed only once the request was written (nothing came back)
//! hands the request back for a fresh connection when the method is idempotent.
mod body;
mod head;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use hyper::http::request;
use hyper::{Method, Response, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;

pub use body::H1Body;

use super::attempt;
use super::pool::{ConnState, Pool, Pooled};
use crate::l7::error::ProxyError;
use crate::l7::headers::{self, Forwarded};

/// A body-less request for the lean client: its head (origin form, Host set) and the
/// forwarding headers to add. Hop-by-hop headers a Connection header names must already
/// be gone; the fixed hop-by-hop set and the client's forwarding headers are left out as
/// the head is written.
pub struct LeanRequest {
    pub parts: request::Parts,
    pub forwarded: Forwarded,
}

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// One connection to a backend with its read buffer (bytes read past the response head
/// are the start of the body).
pub(crate) struct Conn {
    stream: TcpStream,
    read: BytesMut,
    /// The request head is written from here; never shared, so reused without allocating.
    write: Vec<u8>,
    /// The response timeout, kept with the connection (see `exchange`).
    timer: Option<Pin<Box<Sleep>>>,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            read: BytesMut::new(),
            write: Vec::new(),
            timer: None,
        }
    }

    /// False when the backend closed the idle connection (or sent something unasked).
    /// Tokio knows the socket's readiness: an idle socket with nothing to read costs no
    /// system call here.
    fn still_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Reads more bytes into the buffer; 0 means the backend closed its side.
    async fn fill(&mut self) -> io::Result<usize> {
        self.read.reserve(READ_CHUNK);
        self.stream.read_buf(&mut self.read).await
    }
}

impl Pooled for Conn {
    const CHEAP_STATE: bool = false;
    fn state(&self) -> ConnState {
        if self.still_open() {
            ConnState::Ready
        } else {
            ConnState::Closed
        }
    }
}

/// How one exchange on one connection failed.
enum Failure {
    /// Nothing came back and the request may not have been read: the connection was
    /// already closed or broke while the head was written.
    Closed,
    /// Reading or writing failed once the backend had started answering.
    Io(io::Error),
    /// The backend's answer breaks HTTP/1.1 framing rules.
    Bad(&'static str),
}

pub struct H1Client {
    pool: Arc<Pool<Conn>>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl H1Client {
    pub fn new(connect_timeout: Duration, response_timeout: Duration) -> H1Client {
        H1Client {
            pool: Arc::default(),
            connect_timeout,
            response_timeout,
        }
    }

    /// Sends a body-less request (`parts`, in origin form, headers final) to `addr` and
    /// waits for the response head. On a retry-safe error the request comes back.
    pub async fn send(
        &self,
        addr: SocketAddr,
        req: LeanRequest,
    ) -> Result<Response<H1Body>, (ProxyError, Option<LeanRequest>)> {
        let idempotent = req.parts.method.is_idempotent();
        while let Some(conn) = self.pool.checkout(addr) {
            match self.exchange(addr, conn, &req).await {
                Ok(resp) => return Ok(resp),
                // The backend closed the pooled connection as the request went out: RFC 9110
                // 9.2.2 lets an idempotent request be sent again; the next connection is tried.
                Err(ProxyError::StaleConnection { .. }) if idempotent => continue,
                Err(e) => return Err((not_repeatable(e), None)),
            }
        }
        let stream = match attempt::connect(addr, self.connect_timeout).await {
            Ok(s) => s,
            Err(e) => return Err((e, Some(req))),
        };
        match self.exchange(addr, Conn::new(stream), &req).await {
            Ok(resp) => Ok(resp),
            // A fresh connection closed before answering: hand the request back only when
            // repeating it (on another backend) is harmless.
            Err(e @ ProxyError::StaleConnection { .. }) if idempotent => Err((e, Some(req))),
            Err(e) => Err((not_repeatable(e), None)),
        }
    }

    /// Writes the request and reads the response head, within the response timeout.
    async fn exchange(
        &self,
        addr: SocketAddr,
        mut conn: Conn,
        req: &LeanRequest,
    ) -> Result<Response<H1Body>, ProxyError> {
        let head_request = req.parts.method == Method::HEAD;
        // One timer per connection, pushed back per request: moving a registered deadline
        // later is one atomic store (tokio re-files it only when the old one comes due),
        // where a `timeout` per request would enter and leave the timer wheel each time.
        let deadline = tokio::time::Instant::now() + self.response_timeout;
        let mut timer = match conn.timer.take() {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        let outcome = {
            let mut work = std::pin::pin!(async {
                write_head(&mut conn, req).await?;
                head::read_head(&mut conn, head_request).await
            });
            std::future::poll_fn(|cx| match work.as_mut().poll(cx) {
                Poll::Ready(result) => Poll::Ready(Ok(result)),
                Poll::Pending => timer.as_mut().poll(cx).map(Err),
            })
            .await
        };
        conn.timer = Some(timer);
        match outcome {
            Ok(Ok(head)) => {
                let status = head.status;
                // The backend's headers stay raw, with the body (`H1Body::take_raw_headers`).
                let mut resp = Response::new(H1Body::new(conn, head, self.pool.clone(), addr));
                *resp.status_mut() = status;
                *resp.version_mut() = Version::HTTP_11;
                Ok(resp)
            }
            Ok(Err(Failure::Closed)) => Err(ProxyError::StaleConnection { addr }),
            Ok(Err(Failure::Io(source))) => Err(ProxyError::UpstreamIo { addr, source }),
            Ok(Err(Failure::Bad(reason))) => Err(ProxyError::BadResponse { addr, reason }),
            Err(_) => Err(ProxyError::UpstreamTimeout { addr }),
        }
    }

    /// Drops idle connections to backends that are no longer routed.
    pub fn retain(&self, live: &impl Fn(&SocketAddr) -> bool) {
        self.pool.retain(live);
    }
}

/// A connection that closed on a request which must not be sent twice is a plain
/// upstream failure (502), not a retry-safe stale connection.
fn not_repeatable(e: ProxyError) -> ProxyError {
    match e {
        ProxyError::StaleConnection { addr } => ProxyError::UpstreamIo {
            addr,
            source: io::ErrorKind::ConnectionAborted.into(),
        },
        e => e,
    }
}

/// `GET /path HTTP/1.1`, the headers, the forwarding headers, one write.
async fn write_head(conn: &mut Conn, req: &LeanRequest) -> Result<(), Failure> {
    let (parts, forwarded) = (&req.parts, &req.forwarded);
    let buf = &mut conn.write;
    buf.clear();
    buf.extend_from_slice(parts.method.as_str().as_bytes());
    buf.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    buf.extend_from_slice(if target.is_empty() { b"/" } else { target.as_bytes() });
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        // The client's forwarding headers were removed by `normalize`.
        if headers::is_hop_by_hop(name) {
            continue;
        }
        buf.extend_from_slice(name.as_str().as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(value.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    forwarded.write(buf);
    buf.extend_from_slice(b"\r\n");
    conn.stream.write_all(&conn.write).await.map_err(|_| Failure::Closed)
}
