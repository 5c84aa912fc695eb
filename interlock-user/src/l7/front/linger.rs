//! Client connections that end without a reset (nginx's "lingering close").
//!
//! Closing a socket that still holds unread bytes makes the kernel send a reset instead of
//! a FIN. That happens when the proxy answers a request without reading all of its body:
//! a 404 for an upload, a backend's early 401 or 413. A client that writes its whole
//! request before reading (most client libraries do) then sees its upload fail with
//! "connection reset" and never reads the answer, and an answer still in flight is
//! dropped. So when a [`ClientStream`] is dropped with bytes unread, its socket is kept
//! open a little longer: the write side is shut (the FIN follows the answer) and what the
//! client still sends is read and thrown away, until it stops or the time is up.
use std::io;
use std::mem::MaybeUninit;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The longest a closed connection is kept reading (nginx: `lingering_time` 30 s; shorter
/// here, since these sockets no longer count against the connection limit).
const LINGER_TIME: Duration = Duration::from_secs(5);
/// A client silent this long is done sending (nginx: `lingering_timeout` 5 s).
const LINGER_IDLE: Duration = Duration::from_secs(1);

/// An accepted client connection. Reads and writes go straight to the socket; dropping it
/// with request bytes unread lingers instead of resetting (module docs).
pub struct ClientStream(TcpStream);

impl ClientStream {
    pub fn new(stream: TcpStream) -> ClientStream {
        ClientStream(stream)
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        // One `recv(MSG_PEEK)` per closed connection: usually "would block" or the
        // client's FIN (0), and the socket closes as it would anyway.
        let sock = socket2::SockRef::from(&self.0);
        let mut probe = [MaybeUninit::<u8>::uninit(); 1];
        if !matches!(sock.peek(&mut probe), Ok(n) if n > 0) {
            return;
        }
        // A second descriptor keeps the socket open after this one closes; outside a
        // runtime (nothing to read it with) the close resets as before.
        let (Ok(handle), Ok(dup)) = (tokio::runtime::Handle::try_current(), sock.try_clone()) else {
            return;
        };
        handle.spawn(linger(std::net::TcpStream::from(dup)));
    }
}

async fn linger(stream: std::net::TcpStream) {
    // The duplicate shares the original's non-blocking mode.
    let Ok(mut stream) = TcpStream::from_std(stream) else {
        return;
    };
    let _ = stream.shutdown().await;
    let deadline = Instant::now() + LINGER_TIME;
    let mut sink = vec![0u8; 16 * 1024];
    loop {
        let until = (Instant::now() + LINGER_IDLE).min(deadline);
        match tokio::time::timeout_at(until, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => {}
            // The client's FIN, an error, silence or the time is up: close.
            _ => return,
        }
    }
}

impl Deref for ClientStream {
    type Target = TcpStream;
    fn deref(&self) -> &TcpStream {
        &self.0
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
