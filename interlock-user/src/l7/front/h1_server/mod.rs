//! A lean HTTP/1.1 server loop for the common case: body-less requests on plain HTTP
//! connections.
//!
//! hyper's server costs about 11k instructions a request (its dispatcher, the service
//! future, the encoder), as much as everything the proxy itself does. Most requests a
//! balancer sees are GETs without a body; for those this loop reads the head into one
//! buffer, parses it with `httparse`, hands the request to [`Proxy::handle`] (the same
//! routing, balancing, headers, access log and metrics as hyper's requests) and writes the
//! response straight from the head and body frames it gets back.
//!
//! The first request that is anything else (a body, an upgrade, h2c, HTTP/1.0, a
//! malformed or oversized head) ends the loop: hyper serves the rest of the connection,
//! starting with the bytes already read (`Rewind`). So every rule hyper enforces on such
//! requests (400, 431, `Expect`, upgrades, pipelining) is unchanged.
mod request;
mod response;

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::body::Body;
use hyper::{Method, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::linger::ClientStream;
use super::rewind::Rewind;
use super::server::IDLE_DRAIN;
use crate::l7::limits::Limits;
use crate::l7::proxy::{Peer, Proxy, Scheme};
use request::Parsed;
use response::Framing;

/// Bytes asked of the socket per read of a request head.
const READ_CHUNK: usize = 8 * 1024;
/// Response bytes gathered before they are written (a body arriving faster than this is
/// written in pieces of about this size).
const WRITE_HIGH_WATER: usize = 64 * 1024;

/// How a connection left the lean loop.
pub enum Outcome {
    /// Closed (by the client, an error, a timeout, `Connection: close` or shutdown).
    Closed,
    /// A request the lean loop does not serve: hyper takes the connection over, reading
    /// the bytes already read first.
    Handover(Rewind<ClientStream>),
}

/// Serves body-less HTTP/1.1 requests on `stream` until the connection ends or a request
/// needs hyper. `stop` turning true ends the connection after the response in progress.
pub async fn serve(
    mut stream: ClientStream,
    peer: Peer,
    proxy: &Arc<Proxy>,
    limits: &Limits,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let mut input = BytesMut::new();
    // A typical response head fits: no regrowth on the first response.
    let mut out = Vec::with_capacity(1024);
    // One timer per connection, moved for each head (see `h1_client::exchange`).
    let mut timer = Box::pin(tokio::time::sleep(limits.header_read_timeout));
    let mut nodelay = false;
    let mut draining = false;
    loop {
        timer
            .as_mut()
            .reset(tokio::time::Instant::now() + limits.header_read_timeout);
        let (parts, close) = loop {
            if !input.is_empty() {
                // Frozen so header values share its bytes; a head not all there yet, or
                // pipelined bytes after it, are copied back (rare).
                let data = input.split().freeze();
                match request::parse(&data, limits.max_headers) {
                    Parsed::Simple { parts, len, close } => {
                        input.extend_from_slice(&data[len..]);
                        break (parts, close);
                    }
                    Parsed::Other => return handover(data, stream),
                    // hyper answers 431 and counts it.
                    Parsed::Partial if data.len() >= limits.max_header_bytes => return handover(data, stream),
                    Parsed::Partial => input.extend_from_slice(&data),
                }
            }
            input.reserve(READ_CHUNK);
            let read = tokio::select! {
                biased;
                read = stream.read_buf(&mut input) => read,
                _ = timer.as_mut() => {
                    if !input.is_empty() {
                        proxy.metrics.limit_reached("header_read_timeout");
                    }
                    return Outcome::Closed;
                }
                _ = stop.wait_for(|s| *s), if !draining => {
                    draining = true;
                    let window = tokio::time::Instant::now() + limits.drain_grace.min(IDLE_DRAIN);
                    if window < timer.deadline() {
                        timer.as_mut().reset(window);
                    }
                    continue;
                }
            };
            match read {
                Ok(0) | Err(_) => return Outcome::Closed,
                Ok(_) => {}
            }
        };
        let head_request = parts.method == Method::HEAD;
        let req = Request::from_parts(parts, Empty::<Bytes>::new());
        let answer = proxy.clone().handle(req, peer.clone(), Scheme::Http).await;
        out.clear();
        let (framing, close) = response::write_head(&mut out, &answer, head_request, close || *stop.borrow());
        let body = answer.response.into_body();
        if !write_body(&mut stream, &mut out, body, framing, close).await || close {
            // A closing answer went out with its FIN (`write_end`); dropping the socket
            // releases it.
            return Outcome::Closed;
        }
        if !nodelay {
            // Only a connection kept alive needs Nagle off (as nginx's `tcp_nodelay`): a
            // response is one write, and the first write on a connection is never held.
            nodelay = stream.set_nodelay(true).is_ok();
        }
    }
}

fn handover(read: Bytes, stream: ClientStream) -> Outcome {
    // hyper may write a response in pieces: Nagle must not hold them back.
    let _ = stream.set_nodelay(true);
    Outcome::Handover(Rewind::new(read.to_vec(), stream))
}

/// Writes the head in `out` and the body after it, gathering what is ready into one
/// write. False when the connection cannot go on (the client or the body failed).
/// `last`: the connection closes after this response.
async fn write_body(
    stream: &mut ClientStream,
    out: &mut Vec<u8>,
    mut body: crate::l7::ProxyBody,
    framing: Framing,
    last: bool,
) -> bool {
    if framing == Framing::None {
        return write_end(stream, out, last).await;
    }
    loop {
        // What the body has ready now joins the buffer; the buffer is written when the
        // body has to wait (so a head is never held back) or has grown large.
        let frame = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
        let frame = match frame {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if !out.is_empty() && stream.write_all(out).await.is_err() {
                    return false;
                }
                out.clear();
                body.frame().await
            }
        };
        match frame {
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers: not sent
                };
                if data.is_empty() {
                    continue;
                }
                if framing == Framing::Chunked {
                    response::chunk_start(out, data.len());
                }
                out.extend_from_slice(&data);
                if framing == Framing::Chunked {
                    out.extend_from_slice(b"\r\n");
                }
                if out.len() >= WRITE_HIGH_WATER {
                    if stream.write_all(out).await.is_err() {
                        return false;
                    }
                    out.clear();
                }
            }
            Some(Err(e)) => {
                // The backend broke off mid-body: the client must see a cut, not an end.
                tracing::debug!("response body failed: {e}");
                let _ = stream.write_all(out).await;
                return false;
            }
            None => {
                if framing == Framing::Chunked {
                    out.extend_from_slice(response::LAST_CHUNK);
                }
                return write_end(stream, out, last).await;
            }
        }
    }
}

/// Writes the end of a response. Before a close (`last`) the bytes are sent with
/// `MSG_MORE`: the kernel holds the last partial segment until the shutdown, whose FIN
/// then rides on it, so the client gets answer and end in one segment and acknowledges
/// both with its own FIN (two segments fewer per closed connection). The shutdown, not
/// the close, sends them, so they are on their way before anything else happens to the
/// socket (a close with unread bytes lingers: `linger`).
async fn write_end(stream: &mut ClientStream, mut out: &[u8], last: bool) -> bool {
    if !last {
        return stream.write_all(out).await.is_ok();
    }
    while !out.is_empty() {
        let sent = stream
            .async_io(tokio::io::Interest::WRITABLE, || {
                socket2::SockRef::from(&**stream).send_with_flags(out, libc::MSG_MORE)
            })
            .await;
        match sent {
            Ok(0) | Err(_) => return false,
            Ok(n) => out = &out[n..],
        }
    }
    stream.shutdown().await.is_ok()
}
