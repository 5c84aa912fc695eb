//! Parsing a client's request head, and deciding whether the lean server takes it.
//!
//! The lean server takes only the common, unambiguous shape: HTTP/1.1, an origin-form
//! target, no body (no Content-Length, no Transfer-Encoding), no upgrade, no `Expect`, and
//! a Connection header saying at most `keep-alive` or `close`. Anything else (bodies,
//! websockets, h2c, HTTP/1.0, malformed or oversized heads) goes to hyper with the bytes
//! read so far, so every rule hyper enforces (400, 431, ...) still holds there.
use std::mem::MaybeUninit;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::http::request;
use hyper::{Method, Request, Uri, Version};

use crate::l7::limits::MAX_HEADERS;

/// What the head at the start of a buffer is.
// Returned once per request and taken apart at once: boxing the parts would cost an
// allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Parsed {
    /// Not all of it has arrived.
    Partial,
    /// A request the lean server serves. `len`: bytes of the head; `close`: the client
    /// asked to close the connection after it.
    Simple {
        parts: request::Parts,
        len: usize,
        close: bool,
    },
    /// Anything else: hyper serves the connection from here.
    Other,
}

/// Parses the head at the start of `data`. `max_headers` is the configured header limit
/// (a head with more is left to hyper, which answers 431).
pub(super) fn parse(data: &Bytes, max_headers: usize) -> Parsed {
    // Room for the default limit on the stack; a higher configured limit goes to hyper.
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let slots = &mut slots[..max_headers.min(MAX_HEADERS)];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, data, slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Other;
    };
    if !target.starts_with('/') {
        // Absolute and authority forms (proxy requests, CONNECT) and `*`.
        return Parsed::Other;
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Other;
    };
    let Ok(uri) = Uri::from_maybe_shared(data.slice_ref(target.as_bytes())) else {
        return Parsed::Other;
    };
    let mut close = false;
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return Parsed::Other;
        };
        match classify(&name, h.value) {
            Kind::Plain => {}
            Kind::Close => close = true,
            Kind::NotLean => return Parsed::Other,
        }
        let Ok(value) = HeaderValue::from_maybe_shared(data.slice_ref(h.value)) else {
            return Parsed::Other;
        };
        headers.append(name, value);
    }
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers = headers;
    Parsed::Simple { parts, len, close }
}

enum Kind {
    Plain,
    /// `Connection: close`.
    Close,
    NotLean,
}

/// Headers that take a request off the lean path: they announce a body, an upgrade, an
/// expectation, or name hop-by-hop headers the lean path does not handle.
fn classify(name: &HeaderName, value: &[u8]) -> Kind {
    use hyper::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
    if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == UPGRADE || name == EXPECT {
        return Kind::NotLean;
    }
    if name != CONNECTION {
        return Kind::Plain;
    }
    let mut kind = Kind::Plain;
    for token in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
        if token.eq_ignore_ascii_case(b"close") {
            kind = Kind::Close;
        } else if !token.eq_ignore_ascii_case(b"keep-alive") {
            return Kind::NotLean;
        }
    }
    kind
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(head: &'static [u8]) -> Parsed {
        parse(&Bytes::from_static(head), 100)
    }

    fn is_simple(head: &'static [u8]) -> bool {
        matches!(parsed(head), Parsed::Simple { .. })
    }

    #[test]
    fn plain_requests_are_lean() {
        let Parsed::Simple { parts, len, close } =
            parsed(b"GET /a?b=1 HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\n\r\nGET /next")
        else {
            panic!("not simple");
        };
        assert_eq!(len, 53);
        assert!(!close);
        assert_eq!(parts.uri, "/a?b=1");
        assert_eq!(parts.headers["host"], "a.example");
        assert_eq!(parts.headers.len(), 2);
        assert!(matches!(
            parsed(b"HEAD / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, close\r\n\r\n"),
            Parsed::Simple { close: true, .. }
        ));
        assert!(is_simple(b"GET / HTTP/1.1\r\n\r\n"), "no Host: the proxy answers 400");
        assert!(matches!(parsed(b"GET / HTTP/1.1\r\nHost: a\r\n"), Parsed::Partial));
    }

    #[test]
    fn everything_else_goes_to_hyper() {
        for head in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x-secret\r\n\r\n",
            b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
            b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example\r\n\r\n",
            b"GET / HTTP/1.1\r\nbad header\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(
                matches!(parse(&Bytes::copy_from_slice(head), 100), Parsed::Other),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        let many = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert!(
            matches!(parse(&Bytes::from_static(many), 2), Parsed::Other),
            "over the header limit"
        );
    }
}
