//! The response body of the lean client, read from the backend connection as the proxy's
//! client takes it (never buffered whole): Content-Length, chunked (decoded, trailers
//! dropped) or until the backend closes. When it ends cleanly the connection goes back
//! to the pool; a body dropped early, or broken, takes its connection with it.
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, SizeHint};

use std::future::Future;

use tokio::io::AsyncReadExt;

use super::head::Head;
use super::{Conn, Pool, READ_CHUNK};
use crate::l7::limits::MAX_HEAD_BYTES;
use crate::l7::raw_headers::RawHeaders;
use crate::l7::BoxError;

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Length(u64),
    /// Waiting for a chunk-size line.
    ChunkSize,
    /// Inside a chunk: bytes left.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// After the last chunk: trailer bytes seen so far (dropped, bounded).
    Trailers(usize),
    UntilClose,
    Done,
}

/// A chunk-size line (with extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;

pub struct H1Body {
    conn: Option<Conn>,
    /// Body bytes read with the head, handed out before reading more.
    pending: Bytes,
    state: State,
    reusable: bool,
    pool: Arc<Pool<Conn>>,
    addr: SocketAddr,
    /// The response's header lines, until the proxy takes them.
    raw_headers: Option<RawHeaders>,
}

impl H1Body {
    pub(super) fn new(mut conn: Conn, head: Head, pool: Arc<Pool<Conn>>, addr: SocketAddr) -> H1Body {
        let mut pending = head.rest;
        if head.framing == Framing::Chunked {
            // The decoder works in the connection's buffer.
            conn.read.extend_from_slice(&pending);
            pending = Bytes::new();
        }
        let state = match head.framing {
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        let mut body = H1Body {
            conn: Some(conn),
            pending,
            state,
            reusable: head.reusable,
            pool,
            addr,
            raw_headers: Some(head.headers),
        };
        if let State::Length(0) = body.state {
            body.finish();
        }
        body
    }

    /// The response's header lines (once; the response's map holds none of them).
    pub fn take_raw_headers(&mut self) -> Option<RawHeaders> {
        self.raw_headers.take()
    }

    /// The body ended cleanly: the connection serves the next request, unless the backend
    /// said it would close or sent bytes past the response.
    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(conn) = self.conn.take() {
            if self.reusable && conn.read.is_empty() && self.pending.is_empty() {
                self.pool.put(self.addr, conn);
            }
        }
    }

    fn fail(&mut self, error: io::Error) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state = State::Done;
        self.conn = None;
        Poll::Ready(Some(Err(error.into())))
    }

    /// Bytes of data (at most `left`) from the buffer, reading when it is empty.
    /// `Ok(None)`: the backend closed.
    fn poll_data(&mut self, cx: &mut Context<'_>, left: u64) -> Poll<io::Result<Option<Bytes>>> {
        let left = usize::try_from(left).unwrap_or(usize::MAX);
        if !self.pending.is_empty() {
            let n = self.pending.len().min(left);
            return Poll::Ready(Ok(Some(self.pending.split_to(n))));
        }
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(None));
        };
        if conn.read.is_empty() && ready!(poll_fill(conn, cx))? == 0 {
            return Poll::Ready(Ok(None));
        }
        let n = conn.read.len().min(left);
        Poll::Ready(Ok(Some(conn.read.split_to(n).freeze())))
    }

    /// A complete CRLF-terminated line at the start of the buffer: its length without the
    /// CRLF, reading until one is there (`max`: longest acceptable line).
    fn poll_line(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<io::Result<usize>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Err(cut_short()));
        };
        loop {
            if let Some(lf) = conn.read.iter().position(|b| *b == b'\n') {
                if lf == 0 || conn.read[lf - 1] != b'\r' {
                    return Poll::Ready(Err(invalid("chunked body: bare LF")));
                }
                return Poll::Ready(Ok(lf - 1));
            }
            if conn.read.len() > max {
                return Poll::Ready(Err(invalid("chunked body: line too long")));
            }
            if ready!(poll_fill(conn, cx))? == 0 {
                return Poll::Ready(Err(cut_short()));
            }
        }
    }

    fn consume(&mut self, n: usize) {
        if let Some(conn) = self.conn.as_mut() {
            conn.read.advance(n);
        }
    }

    fn line(&self, len: usize) -> &[u8] {
        self.conn.as_ref().map_or(&[], |c| &c.read[..len])
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            match this.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) | State::ChunkData(left) => {
                    let data = match ready!(this.poll_data(cx, left)) {
                        Ok(Some(data)) => data,
                        Ok(None) => return this.fail(cut_short()),
                        Err(e) => return this.fail(e),
                    };
                    let left = left - data.len() as u64;
                    match (this.state, left) {
                        (State::Length(_), 0) => this.finish(),
                        (State::Length(_), _) => this.state = State::Length(left),
                        (_, 0) => this.state = State::ChunkEnd,
                        _ => this.state = State::ChunkData(left),
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::UntilClose => match ready!(this.poll_data(cx, u64::MAX)) {
                    Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(None) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Err(e) => return this.fail(e),
                },
                State::ChunkSize => {
                    let len = match ready!(this.poll_line(cx, MAX_CHUNK_LINE)) {
                        Ok(len) => len,
                        Err(e) => return this.fail(e),
                    };
                    let Some(size) = chunk_size(this.line(len)) else {
                        return this.fail(invalid("chunked body: invalid chunk size"));
                    };
                    this.consume(len + 2);
                    this.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkEnd => {
                    let len = match ready!(this.poll_line(cx, 2)) {
                        Ok(len) => len,
                        Err(e) => return this.fail(e),
                    };
                    if len != 0 {
                        return this.fail(invalid("chunked body: chunk longer than its size"));
                    }
                    this.consume(2);
                    this.state = State::ChunkSize;
                }
                State::Trailers(seen) => {
                    let len = match ready!(this.poll_line(cx, MAX_HEAD_BYTES - seen)) {
                        Ok(len) => len,
                        Err(e) => return this.fail(e),
                    };
                    this.consume(len + 2);
                    if len == 0 {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    this.state = State::Trailers(seen + len + 2);
                    if seen + len + 2 > MAX_HEAD_BYTES {
                        return this.fail(invalid("chunked body: trailers too large"));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// Reads what the socket has into the connection's buffer; 0 when the backend closed.
/// Through `AsyncRead`: a short read clears the socket's readiness, so the pool's check
/// of an idle connection costs no system call.
fn poll_fill(conn: &mut Conn, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    conn.read.reserve(READ_CHUNK);
    std::pin::pin!(conn.stream.read_buf(&mut conn.read)).poll(cx)
}

/// The size in a chunk-size line: hex digits, then optional whitespace and extensions.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let end = line.iter().position(|b| *b == b';').unwrap_or(line.len());
    let digits = line[..end].trim_ascii_end();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    digits
        .iter()
        .try_fold(0u64, |n, d| Some(n << 4 | u64::from((*d as char).to_digit(16)?)))
}

fn cut_short() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "backend closed before the body ended")
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
mod tests {
    use super::chunk_size;

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"5"), Some(5));
        assert_eq!(chunk_size(b"1aF"), Some(0x1af));
        assert_eq!(chunk_size(b"10 ;ext=1"), Some(16));
        assert_eq!(chunk_size(b"0"), Some(0));
        assert_eq!(chunk_size(b""), None);
        assert_eq!(chunk_size(b"x"), None);
        assert_eq!(chunk_size(b"-1"), None);
        assert_eq!(chunk_size(b"ffffffffffffffff"), None);
    }
}
