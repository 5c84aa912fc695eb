//! A lean HTTP/1.1 client for the common case: a request without a body (GET, HEAD, ...)
//! to a backend over plain TCP.
//!
//! hyper's client connection costs a task, channels and a dispatcher per connection and
//! per request (about 13k instructions a request, the largest single cost of the proxy).
//! Here the request head is written straight from the header map into one buffer, the
//! response head is parsed with `httparse`, and the response body is read by the
//! [`H1Body`] the proxy streams to its client; when that body ends cleanly the connection
//! goes back to the pool. No task, no channel.
//!
//! Requests with a body and upgrades (websockets) still go through hyper's client
//! (`upstream.rs`): streaming a request body while reading the response, and handing an
//! upgraded connection over, are what hyper's dispatcher is for.
//!
//! Pool semantics are those of `upstream.rs`: idle connections per backend address, at
//! most `MAX_IDLE_PER_BACKEND`, dropped when a backend is no longer routed; a pooled
//! connection the backend has closed is never used (checked before the request is
//! written), and one found closed only once the request was written (nothing came back)
//! hands the request back for a fresh connection when the method is idempotent.
mod body;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use hyper::http::request;
use hyper::{Method, Response, StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use body::Framing;
pub use body::H1Body;

use super::error::ProxyError;

/// Idle connections kept per backend.
const MAX_IDLE_PER_BACKEND: usize = 256;
/// A response head larger than this is refused (502): hyper's client allowed about as much.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Header lines in a response head (hyper's default).
const MAX_HEADERS: usize = 100;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// One connection to a backend with its read buffer (bytes read past the response head
/// are the start of the body).
pub(crate) struct Conn {
    stream: TcpStream,
    read: BytesMut,
    /// The request head is written from here; never shared, so reused without allocating.
    write: Vec<u8>,
    /// Came from the pool: a close found before any response byte may be the backend's
    /// idle timeout racing the request.
    reused: bool,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            read: BytesMut::new(),
            write: Vec::new(),
            reused: false,
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

/// Idle connections per backend address.
#[derive(Default)]
pub(crate) struct Pool {
    /// foldhash: keys come from the snapshot, not from clients.
    idle: Mutex<foldhash::HashMap<SocketAddr, Vec<Conn>>>,
}

impl Pool {
    fn checkout(&self, addr: SocketAddr) -> Option<Conn> {
        loop {
            let conn = self
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&addr)?
                .pop()?;
            if conn.still_open() {
                return Some(conn);
            }
        }
    }

    /// Takes back a connection whose response ended cleanly.
    fn put(&self, addr: SocketAddr, mut conn: Conn) {
        conn.reused = true;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let conns = idle.entry(addr).or_default();
        if conns.len() < MAX_IDLE_PER_BACKEND {
            conns.push(conn);
        }
    }

    fn retain(&self, live: &impl Fn(&SocketAddr) -> bool) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|a, _| live(a));
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
    pool: Arc<Pool>,
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
        parts: request::Parts,
    ) -> Result<Response<H1Body>, (ProxyError, Option<request::Parts>)> {
        let idempotent = parts.method.is_idempotent();
        while let Some(conn) = self.pool.checkout(addr) {
            match self.exchange(addr, conn, &parts).await {
                Ok(resp) => return Ok(resp),
                // The backend closed the pooled connection as the request went out: RFC 9110
                // 9.2.2 lets an idempotent request be sent again; the next connection is tried.
                Err(ProxyError::StaleConnection { .. }) if idempotent => continue,
                Err(e) => return Err((not_repeatable(e), None)),
            }
        }
        let stream = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err((ProxyError::Connect { addr, source }, Some(parts))),
            Err(_) => return Err((ProxyError::ConnectTimeout { addr }, Some(parts))),
        };
        let _ = stream.set_nodelay(true);
        match self.exchange(addr, Conn::new(stream), &parts).await {
            Ok(resp) => Ok(resp),
            // A fresh connection closed before answering: hand the request back only when
            // repeating it (on another backend) is harmless.
            Err(e @ ProxyError::StaleConnection { .. }) if idempotent => Err((e, Some(parts))),
            Err(e) => Err((not_repeatable(e), None)),
        }
    }

    /// Writes the request and reads the response head, within the response timeout.
    async fn exchange(
        &self,
        addr: SocketAddr,
        mut conn: Conn,
        parts: &request::Parts,
    ) -> Result<Response<H1Body>, ProxyError> {
        let head_request = parts.method == Method::HEAD;
        let outcome = tokio::time::timeout(self.response_timeout, async {
            write_head(&mut conn, parts).await?;
            read_head(&mut conn, head_request).await
        })
        .await;
        match outcome {
            Ok(Ok((head, framing, reusable))) => {
                let body = H1Body::new(conn, framing, reusable, self.pool.clone(), addr);
                let mut resp = Response::new(body);
                *resp.status_mut() = head.0;
                *resp.version_mut() = Version::HTTP_11;
                *resp.headers_mut() = head.1;
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

/// `GET /path HTTP/1.1`, the headers as they are, one write.
async fn write_head(conn: &mut Conn, parts: &request::Parts) -> Result<(), Failure> {
    let buf = &mut conn.write;
    buf.clear();
    buf.extend_from_slice(parts.method.as_str().as_bytes());
    buf.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    buf.extend_from_slice(if target.is_empty() { b"/" } else { target.as_bytes() });
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        buf.extend_from_slice(name.as_str().as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(value.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    buf.extend_from_slice(b"\r\n");
    conn.stream.write_all(&conn.write).await.map_err(|_| Failure::Closed)
}

type Head = (StatusCode, HeaderMap);

/// Reads and parses the response head; interim (1xx) responses are skipped. Returns the
/// head, how the body is framed and whether the connection can serve another request.
async fn read_head(conn: &mut Conn, head_request: bool) -> Result<(Head, Framing, bool), Failure> {
    let mut answered = false;
    loop {
        if !conn.read.is_empty() {
            answered = true;
            if let Some((len, head, close)) = parse_head(&conn.read)? {
                conn.read.advance(len);
                if head.0.is_informational() {
                    if head.0 == StatusCode::SWITCHING_PROTOCOLS {
                        return Err(Failure::Bad("switched protocols unasked"));
                    }
                    continue;
                }
                let framing = framing(head.0, &head.1, head_request)?;
                let reusable = !close && framing != Framing::UntilClose;
                return Ok((head, framing, reusable));
            }
            if conn.read.len() >= MAX_HEAD_BYTES {
                return Err(Failure::Bad("response head too large"));
            }
        }
        match conn.fill().await {
            Ok(0) if answered => return Err(Failure::Bad("response head cut short")),
            Ok(0) => return Err(Failure::Closed),
            Ok(_) => {}
            Err(_) if !answered => return Err(Failure::Closed),
            Err(e) => return Err(Failure::Io(e)),
        }
    }
}

/// Parses a complete head at the start of `buf` (`None`: not all of it has arrived).
/// Returns its length, status and headers, and whether the backend will close the
/// connection after this response.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head, bool)>, Failure> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Failure::Bad("too many response headers")),
        Err(_) => return Err(Failure::Bad("malformed response head")),
    };
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(Failure::Bad("invalid status"))?;
    // HTTP/1.0 backends close unless they say otherwise; not worth keeping.
    let mut close = resp.version != Some(1);
    let mut headers = HeaderMap::with_capacity(resp.headers.len() + 2);
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| Failure::Bad("invalid header name"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| Failure::Bad("invalid header value"))?;
        if name == CONNECTION && has_token(&value, "close") {
            close = true;
        }
        headers.append(name, value);
    }
    Ok(Some((len, (status, headers), close)))
}

/// How the response body is delimited (RFC 9112 6.3). Framing a proxy could read
/// differently from its client is refused: Content-Length with Transfer-Encoding,
/// differing lengths, a transfer coding other than chunked.
fn framing(status: StatusCode, headers: &HeaderMap, head_request: bool) -> Result<Framing, Failure> {
    let te = headers.contains_key(TRANSFER_ENCODING);
    let cl = headers.contains_key(CONTENT_LENGTH);
    if te && cl {
        return Err(Failure::Bad("both Content-Length and Transfer-Encoding"));
    }
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Length(0));
    }
    if te {
        let mut values = headers.get_all(TRANSFER_ENCODING).iter();
        let only_chunked = values
            .next()
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
        if !only_chunked || values.next().is_some() {
            return Err(Failure::Bad("unsupported Transfer-Encoding"));
        }
        return Ok(Framing::Chunked);
    }
    if cl {
        let mut length = None;
        for value in headers.get_all(CONTENT_LENGTH) {
            for part in value.as_bytes().split(|b| *b == b',') {
                let n = parse_length(part.trim_ascii()).ok_or(Failure::Bad("invalid Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(Failure::Bad("conflicting Content-Length"));
                }
                length = Some(n);
            }
        }
        return Ok(Framing::Length(length.unwrap_or(0)));
    }
    Ok(Framing::UntilClose)
}

fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits
        .iter()
        .try_fold(0u64, |n, d| d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0')))
}

fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing_of(head: &[u8]) -> Result<Framing, &'static str> {
        let Ok(Some((_, (status, headers), _))) = parse_head(head) else {
            return Err("unparsed");
        };
        framing(status, &headers, false).map_err(|f| match f {
            Failure::Bad(why) => why,
            _ => "io",
        })
    }

    #[test]
    fn framing_follows_rfc_9112_and_refuses_ambiguity() {
        assert_eq!(
            framing_of(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"),
            Ok(Framing::Length(3))
        );
        assert_eq!(
            framing_of(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"),
            Ok(Framing::Length(3))
        );
        assert_eq!(
            framing_of(b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(framing_of(b"HTTP/1.1 200 OK\r\n\r\n"), Ok(Framing::UntilClose));
        assert_eq!(framing_of(b"HTTP/1.1 204 No Content\r\n\r\n"), Ok(Framing::Length(0)));
        assert!(framing_of(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n").is_err());
        assert!(framing_of(b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n").is_err());
        assert!(framing_of(b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n").is_err());
        assert!(framing_of(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(framing_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").is_err());
        assert_eq!(framing_of(b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n"), Err("unparsed"));
        assert_eq!(framing_of(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"), Err("unparsed"));
    }

    #[test]
    fn connection_close_and_http_1_0_are_not_reused() {
        let close = |head: &[u8]| parse_head(head).ok().flatten().map(|(_, _, close)| close);
        assert_eq!(close(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), Some(false));
        assert_eq!(close(b"HTTP/1.1 200 OK\r\nConnection: Close\r\n\r\n"), Some(true));
        assert_eq!(close(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"), Some(true));
    }
}
