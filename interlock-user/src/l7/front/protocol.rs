//! Which HTTP a client connection speaks: chosen per connection, before hyper sees a byte.
//!
//! TLS says it by ALPN, and then that is all the connection may speak: an `h2` connection
//! whose first bytes are not the HTTP/2 preface is an HTTP/2 connection error (RFC 9113 3.4),
//! answered with GOAWAY, not an HTTP/1.1 400. Without ALPN (plain listeners, TLS clients
//! offering none) the first bytes decide: the preface is h2c with prior knowledge, anything
//! else HTTP/1.
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::rewind::Rewind;

/// The HTTP/2 client connection preface (RFC 9113 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The server's answer to a bad preface on an h2 connection: its own preface (an empty
/// SETTINGS frame, which must come first), then GOAWAY(last stream 0, PROTOCOL_ERROR).
const BAD_PREFACE_ANSWER: &[u8] = &[
    0, 0, 0, 0x4, 0, 0, 0, 0, 0, // SETTINGS, empty
    0, 0, 8, 0x7, 0, 0, 0, 0, 0, // GOAWAY, 8 bytes, stream 0
    0, 0, 0, 0, // last stream id
    0, 0, 0, 0x1, // PROTOCOL_ERROR
];

/// What a connection is served as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 only (TLS with ALPN `http/1.1`).
    Http1,
    /// HTTP/2 only (TLS with ALPN `h2`).
    Http2,
    /// Either, told apart by the first bytes (no ALPN).
    Sniff,
}

impl Protocol {
    /// The protocol a TLS handshake negotiated.
    pub fn of_alpn(alpn: Option<&[u8]>) -> Protocol {
        match alpn {
            Some(b"h2") => Protocol::Http2,
            Some(b"http/1.1") => Protocol::Http1,
            _ => Protocol::Sniff,
        }
    }
}

/// How a connection opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// With the HTTP/2 preface.
    Preface,
    /// With anything else.
    Other,
    /// It closed (or failed) before telling.
    Closed,
    /// It sent too little within the time allowed; `partial`: some bytes came.
    TimedOut { partial: bool },
}

/// Reads a connection's first bytes until they tell whether they are the HTTP/2 preface
/// (all 24 match, or one differs), at most `timeout`; what was read is replayed first.
pub async fn opening<S: AsyncRead + Unpin>(mut stream: S, timeout: Duration) -> (Opening, Rewind<S>) {
    let mut read = [0u8; PREFACE.len()];
    let mut len = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    let opening = loop {
        if read[..len] != PREFACE[..len] {
            break Opening::Other;
        }
        if len == PREFACE.len() {
            break Opening::Preface;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut read[len..])).await {
            Ok(Ok(0)) | Ok(Err(_)) => break Opening::Closed,
            Ok(Ok(n)) => len += n,
            Err(_) => break Opening::TimedOut { partial: len > 0 },
        }
    };
    (opening, Rewind::new(read[..len].to_vec(), stream))
}

/// Ends an h2 connection that did not open with the preface: GOAWAY, then close.
pub async fn refuse_bad_preface<S: AsyncWrite + Unpin>(stream: &mut S) {
    if stream.write_all(BAD_PREFACE_ANSWER).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn open(bytes: &[u8]) -> (Opening, Vec<u8>) {
        let (opening, mut replay) = super::opening(bytes, Duration::from_secs(1)).await;
        let mut all = Vec::new();
        replay.read_to_end(&mut all).await.unwrap();
        (opening, all)
    }

    #[tokio::test]
    async fn the_first_bytes_tell_h2_from_http1_and_are_all_replayed() {
        let mut h2 = PREFACE.to_vec();
        h2.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0");
        assert_eq!(open(&h2).await, (Opening::Preface, h2.clone()));
        let h1 = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(open(h1).await, (Opening::Other, h1.to_vec()));
        // One differing byte is enough, wherever it is.
        assert_eq!(open(b"PRI * HTTP/1.1\r\n").await.0, Opening::Other);
        assert_eq!(open(b"PRI * HTTP/2").await, (Opening::Closed, b"PRI * HTTP/2".to_vec()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_sending_too_little_times_out() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"PRI").await.unwrap();
        let (opening, _) = super::opening(server, Duration::from_secs(10)).await;
        assert_eq!(opening, Opening::TimedOut { partial: true });
    }

    #[test]
    fn alpn_picks_the_protocol() {
        assert_eq!(Protocol::of_alpn(Some(b"h2")), Protocol::Http2);
        assert_eq!(Protocol::of_alpn(Some(b"http/1.1")), Protocol::Http1);
        assert_eq!(Protocol::of_alpn(None), Protocol::Sniff);
    }
}
