//! Reading and parsing a backend's response head.
//!
//! The head is parsed where it was read, the kept header lines copied into one buffer as
//! they are (`RawHeaders`: no map, no allocation per header), hop-by-hop headers left out
//! as they are met (the proxy would strip them anyway), the headers the proxy sets itself
//! too (`headers::PROXY_SET_RESPONSE`), and the body's framing decided in the same pass.
use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use hyper::StatusCode;

use super::body::Framing;
use super::{Conn, Failure};
use crate::l7::limits::{MAX_HEADERS, MAX_HEAD_BYTES};
use crate::l7::raw_headers::RawHeaders;

/// A parsed response head.
pub(super) struct Head {
    pub status: StatusCode,
    /// Without hop-by-hop headers.
    pub headers: RawHeaders,
    pub framing: Framing,
    /// The backend keeps the connection open after this response.
    pub reusable: bool,
    /// Bytes read past the head: the start of the body.
    pub rest: Bytes,
}

/// Reads until a final (non-1xx) response head has arrived and parses it.
pub(super) async fn read_head(conn: &mut Conn, head_request: bool) -> Result<Head, Failure> {
    let mut answered = false;
    loop {
        if !conn.read.is_empty() {
            answered = true;
            // Frozen so header values can share its bytes; a head not all there yet is
            // copied back (rare: heads are small).
            let data = conn.read.split().freeze();
            match parse_head(&data, head_request)? {
                Some((len, head)) if head.status.is_informational() => {
                    if head.status == StatusCode::SWITCHING_PROTOCOLS {
                        return Err(Failure::Bad("switched protocols unasked"));
                    }
                    conn.read.extend_from_slice(&data[len..]);
                    continue;
                }
                Some((_, head)) => return Ok(head),
                None if data.len() >= MAX_HEAD_BYTES => return Err(Failure::Bad("response head too large")),
                None => conn.read.extend_from_slice(&data),
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

/// Parses the head at the start of `data` (`None`: not all of it has arrived). Framing a
/// proxy could read differently from its client is refused (RFC 9112 6.3): Content-Length
/// with Transfer-Encoding, differing lengths, a transfer coding other than chunked.
fn parse_head(data: &Bytes, head_request: bool) -> Result<Option<(usize, Head)>, Failure> {
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, data, &mut slots) {
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
    let mut reusable = resp.version == Some(1);
    // Names the Connection header lists are hop-by-hop too (rare: usually only
    // `keep-alive` or `close`).
    let mut named: Vec<&[u8]> = Vec::new();
    for h in resp
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
    {
        for token in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
            if token.eq_ignore_ascii_case(b"close") {
                reusable = false;
            } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                named.push(token);
            }
        }
    }
    // Kept lines are copied as they came, runs of them at once (one buffer, no map; see
    // `raw_headers`).
    let mut lines = BytesMut::with_capacity(len);
    let mut run: Option<(usize, usize)> = None;
    let (mut length, mut chunked, mut other_coding, mut date) = (None, false, false, false);
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        let (start, end) = line_span(data, name, h.value);
        let keep = match special(name) {
            Special::ContentLength => {
                let first = length.is_none();
                let mut parts = 0;
                for part in h.value.split(|b| *b == b',') {
                    let n = parse_length(part.trim_ascii()).ok_or(Failure::Bad("invalid Content-Length"))?;
                    if length.is_some_and(|l| l != n) {
                        return Err(Failure::Bad("conflicting Content-Length"));
                    }
                    length = Some(n);
                    parts += 1;
                }
                if first && parts > 1 {
                    // "3, 3": the client gets one number.
                    flush(&mut lines, data, run.take());
                    lines.extend_from_slice(b"Content-Length: ");
                    lines.extend_from_slice(itoa::Buffer::new().format(length.unwrap_or(0)).as_bytes());
                    lines.extend_from_slice(b"\r\n");
                }
                // Repeated, equal: one is enough for the client.
                first && parts == 1
            }
            Special::TransferEncoding => {
                if chunked || !h.value.eq_ignore_ascii_case(b"chunked") {
                    other_coding = true;
                }
                chunked = true;
                false
            }
            Special::Date => {
                date = true;
                true
            }
            // The proxy sets these itself (`headers::PROXY_SET_RESPONSE`): the backend's go.
            Special::HopByHop | Special::ProxySet => false,
            Special::None => !named.iter().any(|n| n.eq_ignore_ascii_case(name)),
        };
        let crlf = end >= 2 && data[end - 2] == b'\r';
        if keep && !crlf {
            // A bare LF line end (tolerated by httparse) goes out as CRLF.
            flush(&mut lines, data, run.take());
            for part in [name, b": ", h.value, b"\r\n"] {
                lines.extend_from_slice(part);
            }
            continue;
        }
        run = match (keep, run) {
            (true, Some((from, to))) if to == start => Some((from, end)),
            (true, previous) => {
                flush(&mut lines, data, previous);
                Some((start, end))
            }
            (false, previous) => {
                flush(&mut lines, data, previous);
                None
            }
        };
    }
    flush(&mut lines, data, run);
    let headers = RawHeaders {
        lines: lines.freeze(),
        content_length: length.is_some(),
        date,
    };
    let framing = if chunked && length.is_some() {
        return Err(Failure::Bad("both Content-Length and Transfer-Encoding"));
    } else if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Length(0)
    } else if other_coding {
        return Err(Failure::Bad("unsupported Transfer-Encoding"));
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        reusable = false;
        Framing::UntilClose
    };
    Ok(Some((
        len,
        Head {
            status,
            headers,
            framing,
            reusable,
            rest: data.slice(len..),
        },
    )))
}

/// Header names the parser treats specially, told apart by length first (most names
/// match none, after one comparison at most).
#[derive(Debug)]
enum Special {
    ContentLength,
    TransferEncoding,
    Date,
    HopByHop,
    /// A header the proxy sets on its answers.
    ProxySet,
    None,
}

/// What a backend's header name is to the proxy. Once per response header line: by length
/// first, where most names end, then one comparison or two (a loop over the lists in
/// `headers` cost about 300 instructions a response). `special_agrees_with_the_lists`
/// checks it against `headers::HOP_BY_HOP` and `headers::PROXY_SET_RESPONSE`.
fn special(name: &[u8]) -> Special {
    let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
    match name.len() {
        2 if is(b"te") => Special::HopByHop,
        4 if is(b"date") => Special::Date,
        7 if is(b"upgrade") || is(b"trailer") => Special::HopByHop,
        10 if is(b"connection") || is(b"keep-alive") => Special::HopByHop,
        10 if is(b"x-proxy-id") => Special::ProxySet,
        12 if is(b"x-request-id") => Special::ProxySet,
        13 if is(b"x-server-info") => Special::ProxySet,
        14 if is(b"content-length") => Special::ContentLength,
        14 if is(b"http2-settings") => Special::HopByHop,
        15 if is(b"x-upstream-addr") => Special::ProxySet,
        16 if is(b"proxy-connection") => Special::HopByHop,
        17 if is(b"transfer-encoding") => Special::TransferEncoding,
        18 if is(b"proxy-authenticate") => Special::HopByHop,
        19 if is(b"proxy-authorization") => Special::HopByHop,
        24 if is(b"x-upstream-response-time") => Special::ProxySet,
        _ => Special::None,
    }
}

/// Where the line of header (`name`, `value`) lies in `data`: from the name to just past
/// its line end. httparse's slices point into `data`, a name starts its line, and the line
/// ends at the first LF after the value (after optional whitespace).
fn line_span(data: &[u8], name: &[u8], value: &[u8]) -> (usize, usize) {
    let base = data.as_ptr() as usize;
    let start = name.as_ptr() as usize - base;
    let value_end = value.as_ptr() as usize - base + value.len();
    let end = data[value_end..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(data.len(), |i| value_end + i + 1);
    (start, end)
}

/// Appends the kept run of lines `run` (a span of `data`).
fn flush(lines: &mut BytesMut, data: &[u8], run: Option<(usize, usize)>) {
    if let Some((from, to)) = run {
        lines.extend_from_slice(&data[from..to]);
    }
}

fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits
        .iter()
        .try_fold(0u64, |n, d| d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l7::headers;

    fn parsed(head: &'static [u8]) -> Result<Head, &'static str> {
        match parse_head(&Bytes::from_static(head), false) {
            Ok(Some((_, head))) => Ok(head),
            Ok(None) => Err("partial"),
            Err(Failure::Bad(why)) => Err(why),
            Err(_) => Err("io"),
        }
    }

    fn framing_of(head: &'static [u8]) -> Result<Framing, &'static str> {
        parsed(head).map(|h| h.framing)
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
        assert!(
            framing_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n").is_err()
        );
        assert_eq!(
            framing_of(b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n"),
            Err("malformed response head")
        );
        assert_eq!(framing_of(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"), Err("partial"));
    }

    #[test]
    fn hop_by_hop_headers_are_left_out_and_close_is_seen() {
        let head = parsed(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n\
              Content-Length: 2\r\nContent-Length: 2\r\nX-Kept: yes\r\n\r\nhi",
        )
        .unwrap();
        assert_eq!(head.headers.lines, "Content-Length: 2\r\nX-Kept: yes\r\n");
        assert!(head.headers.content_length && !head.headers.date);
        let odd = parsed(b"HTTP/1.1 200 OK\r\nA: 1\nContent-Length: 2, 2\r\nDate: x\r\nB: 2\r\n\r\nhi").unwrap();
        assert_eq!(odd.headers.lines, "A: 1\r\nContent-Length: 2\r\nDate: x\r\nB: 2\r\n");
        assert!(odd.headers.date);
        assert!(head.reusable);
        assert_eq!(head.rest, "hi");
        assert!(
            !parsed(b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .reusable
        );
        assert!(
            !parsed(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .reusable
        );
        assert!(
            !parsed(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().reusable,
            "read until close"
        );
    }

    #[test]
    fn special_agrees_with_the_lists() {
        for name in headers::hop_by_hop_names() {
            let upper = name.to_ascii_uppercase();
            let want = if name == "transfer-encoding" {
                "TransferEncoding"
            } else {
                "HopByHop"
            };
            assert_eq!(format!("{:?}", special(upper.as_bytes())), want, "{name}");
        }
        for name in headers::PROXY_SET_RESPONSE {
            assert_eq!(format!("{:?}", special(name.as_str().as_bytes())), "ProxySet", "{name}");
        }
        for name in ["x-proxy-idx", "content-type", "server", "x-upstream", "tee"] {
            assert_eq!(format!("{:?}", special(name.as_bytes())), "None", "{name}");
        }
    }

    #[test]
    fn headers_the_proxy_sets_are_left_out() {
        let head = parsed(
            b"HTTP/1.1 200 OK\r\nX-Request-Id: backend\r\nx-proxy-id: backend\r\nX-Upstream-Addr: 1.2.3.4:5\r\n\
              x-upstream-response-time: 9.999\r\nX-Proxy-Idx: kept\r\nConnection: keep-alive\r\n\
              Content-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.headers.lines, "X-Proxy-Idx: kept\r\nContent-Length: 0\r\n");
    }
}
