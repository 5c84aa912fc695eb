//! The PROXY protocol (HAProxy's, v1 text and v2 binary) from a trusted balancer in front:
//! the header it sends first names the real client, which then stands for the connection's
//! peer everywhere (access log, `ip_hash`, X-Forwarded-For, X-Real-IP).
//!
//! The header is optional from a trusted peer and taken only from one (`trust`): from
//! anybody else its bytes are the start of a request, which HTTP parsers refuse. The socket
//! is peeked, not read, until the header is whole, then exactly its bytes are consumed, so
//! whatever follows (a request, a TLS ClientHello) is read by its server as if first.
use std::net::SocketAddr;
use std::time::Duration;

use ppp::v1::Addresses as V1;
use ppp::v2::{Addresses as V2, Command};
use ppp::{HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;

use super::linger::ClientStream;

const V1_SIGNATURE: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longer headers are refused: a v1 line is at most 107 bytes; v2 addresses take 216 at
/// most, and balancers' TLVs (an id, a TLS summary) fit in the rest.
const MAX_HEADER: usize = 1024;
/// How often a partial header is peeked again.
const REPEEK: Duration = Duration::from_millis(2);

/// What the front of a trusted connection held.
#[derive(Debug, PartialEq, Eq)]
pub enum Front {
    /// No PROXY header: the peer is the client.
    Plain,
    /// A header naming the client (`LOCAL` and `UNKNOWN` headers name none: the peer stays).
    Header {
        client: Option<SocketAddr>,
        local_port: Option<u16>,
    },
}

/// Reads the PROXY header off the front of `stream` when there is one, within `timeout`.
pub async fn read(stream: &mut ClientStream, timeout: Duration) -> Result<Front, &'static str> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; MAX_HEADER];
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .map_err(|_| "no PROXY header or request in time")?
            .map_err(|_| "the connection failed")?;
        if n == 0 {
            return Err("the connection closed");
        }
        match classify(&buf[..n]) {
            Peeked::NotProxy => return Ok(Front::Plain),
            Peeked::Incomplete if n == buf.len() => return Err("a PROXY header over 1 KiB"),
            Peeked::Incomplete => tokio::time::sleep(REPEEK).await,
            Peeked::Bad => return Err("a malformed PROXY header"),
            Peeked::Header { len, front } => {
                // Exactly the header's bytes: the rest is the client's.
                let mut header = vec![0u8; len];
                stream
                    .read_exact(&mut header)
                    .await
                    .map_err(|_| "the connection failed")?;
                return Ok(front);
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Peeked {
    NotProxy,
    Incomplete,
    Bad,
    Header { len: usize, front: Front },
}

fn classify(bytes: &[u8]) -> Peeked {
    let starts = |sig: &[u8]| bytes[..bytes.len().min(sig.len())] == sig[..bytes.len().min(sig.len())];
    if !starts(V1_SIGNATURE) && !starts(V2_SIGNATURE) {
        return Peeked::NotProxy;
    }
    let header = HeaderResult::parse(bytes);
    if header.is_incomplete() {
        return Peeked::Incomplete;
    }
    match header {
        HeaderResult::V1(Ok(h)) => {
            let (client, local_port) = match h.addresses {
                V1::Tcp4(a) => (
                    Some(SocketAddr::from((a.source_address, a.source_port))),
                    Some(a.destination_port),
                ),
                V1::Tcp6(a) => (
                    Some(SocketAddr::from((a.source_address, a.source_port))),
                    Some(a.destination_port),
                ),
                V1::Unknown => (None, None),
            };
            Peeked::Header {
                len: h.header.len(),
                front: Front::Header { client, local_port },
            }
        }
        HeaderResult::V2(Ok(h)) => {
            let (client, local_port) = match (h.command, h.addresses) {
                (Command::Proxy, V2::IPv4(a)) => (
                    Some(SocketAddr::from((a.source_address, a.source_port))),
                    Some(a.destination_port),
                ),
                (Command::Proxy, V2::IPv6(a)) => (
                    Some(SocketAddr::from((a.source_address, a.source_port))),
                    Some(a.destination_port),
                ),
                _ => (None, None),
            };
            Peeked::Header {
                len: h.len(),
                front: Front::Header { client, local_port },
            }
        }
        _ => Peeked::Bad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_headers() {
        let line = b"PROXY TCP4 203.0.113.9 10.0.0.2 51000 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            classify(line),
            Peeked::Header {
                len: 43,
                front: Front::Header {
                    client: Some("203.0.113.9:51000".parse().unwrap()),
                    local_port: Some(443)
                }
            }
        );
        assert_eq!(classify(b"PROXY TCP4 203.0.113.9"), Peeked::Incomplete);
        assert_eq!(classify(b"PRO"), Peeked::Incomplete);
        assert_eq!(
            classify(b"PROXY UNKNOWN\r\nGET"),
            Peeked::Header {
                len: 15,
                front: Front::Header {
                    client: None,
                    local_port: None
                }
            }
        );
        assert_eq!(classify(b"PROXY TCP4 x y 1 2\r\n"), Peeked::Bad);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Peeked::NotProxy);
        assert_eq!(classify(b"\x16\x03\x01"), Peeked::NotProxy);
    }

    #[test]
    fn v2_headers() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12]); // v2 PROXY, TCP over IPv4, 12 bytes
        h.extend_from_slice(&[198, 51, 100, 7, 10, 0, 0, 2]);
        h.extend_from_slice(&40000u16.to_be_bytes());
        h.extend_from_slice(&80u16.to_be_bytes());
        let whole = h.len();
        h.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            classify(&h),
            Peeked::Header {
                len: whole,
                front: Front::Header {
                    client: Some("198.51.100.7:40000".parse().unwrap()),
                    local_port: Some(80)
                }
            }
        );
        assert_eq!(classify(&h[..20]), Peeked::Incomplete);
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]); // LOCAL: a health check of the balancer's own
        assert!(matches!(
            classify(&local),
            Peeked::Header {
                front: Front::Header { client: None, .. },
                ..
            }
        ));
    }
}
