//! Writing a response head for a client of the lean server, and how its body is framed.
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::body::Body;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use hyper::StatusCode;

use crate::l7::proxy::answer::Answer;

/// How the body follows the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body: HEAD, 1xx, 204, 304.
    None,
    /// As many bytes as Content-Length says, written as they come.
    Length,
    /// Length unknown: chunked transfer coding.
    Chunked,
}

/// Writes the head of `answer` into `out`: status line, the backend's header lines as the
/// lean client kept them, the map's, the ones the proxy adds, `Date` when the response has
/// none (as hyper's server adds it), the framing headers, and `Connection: close` when the
/// connection ends after this response. Returns the framing and whether the connection
/// closes (also when the response itself says `Connection: close`).
pub(super) fn write_head(out: &mut Vec<u8>, answer: &Answer, head_request: bool, mut close: bool) -> (Framing, bool) {
    let resp = &answer.response;
    let status = resp.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let raw = answer.raw.as_ref();
    if let Some(raw) = raw {
        out.extend_from_slice(&raw.lines);
    }
    let headers = resp.headers();
    for (name, value) in headers {
        // The framing is this connection's to decide.
        if name == TRANSFER_ENCODING {
            continue;
        }
        if name == CONNECTION {
            close |= value.as_bytes().eq_ignore_ascii_case(b"close");
            continue;
        }
        header(out, name.as_str(), value);
    }
    answer.write_added_headers(out);
    if !raw.is_some_and(|r| r.date) && !headers.contains_key(DATE) {
        out.extend_from_slice(b"date: ");
        now_http_date(out);
        out.extend_from_slice(b"\r\n");
    }
    let bodiless = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        Framing::None
    } else if raw.is_some_and(|r| r.content_length) || headers.contains_key(CONTENT_LENGTH) {
        Framing::Length
    } else if let Some(n) = resp.body().size_hint().exact() {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        out.extend_from_slice(b"\r\n");
        Framing::Length
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    };
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (framing, close)
}

fn header(out: &mut Vec<u8>, name: &str, value: &HeaderValue) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The start of a chunk of `len` bytes (chunked framing).
pub(super) fn chunk_start(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(HEX[(len >> (4 * i)) & 0xf]);
    }
    out.extend_from_slice(b"\r\n");
}

/// The last chunk of a chunked body (no trailers).
pub(super) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

thread_local! {
    /// The Date value of the current second: formatted once a second per thread.
    static DATE_CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Appends the current time as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn now_http_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE_CACHE.with_borrow_mut(|(cached, text)| {
        if *cached != secs {
            let formatted = httpdate::fmt_http_date(now);
            if formatted.len() == text.len() {
                text.copy_from_slice(formatted.as_bytes());
                *cached = secs;
            }
        }
        out.extend_from_slice(text);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l7::headers::RequestId;
    use crate::l7::raw_headers::RawHeaders;
    use crate::l7::ProxyBody;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::Response;

    const ADDED: &str = concat!(
        "x-request-id: r1\r\nx-proxy-id: p\r\nx-server-info: ",
        "interlock/",
        env!("CARGO_PKG_VERSION"),
        "\r\n"
    );

    fn answer(status: u16, headers: &[(&'static str, &'static str)], body: &'static str) -> Answer {
        let mut resp = Response::new(
            Full::new(Bytes::from_static(body.as_bytes()))
                .map_err(|n| match n {})
                .boxed(),
        );
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        for (k, v) in headers {
            resp.headers_mut().append(*k, HeaderValue::from_static(v));
        }
        with_body(resp)
    }

    fn with_body(response: Response<ProxyBody>) -> Answer {
        Answer {
            response,
            raw: None,
            request_id: RequestId::Client(HeaderValue::from_static("r1")),
            upstream: None,
            proxy_id: HeaderValue::from_static("p"),
        }
    }

    fn head_of(answer: &Answer, head_request: bool, close: bool) -> (String, Framing, bool) {
        let mut out = Vec::new();
        let (framing, close) = write_head(&mut out, answer, head_request, close);
        (String::from_utf8(out).unwrap(), framing, close)
    }

    #[test]
    fn heads_carry_status_headers_date_and_framing() {
        let (head, framing, close) = head_of(
            &answer(200, &[("content-length", "2"), ("x-a", "1")], "hi"),
            false,
            false,
        );
        assert!(
            head.starts_with(&format!(
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: 1\r\n{ADDED}date: "
            )),
            "{head}"
        );
        assert!(head.ends_with(" GMT\r\n\r\n"), "{head}");
        assert_eq!((framing, close), (Framing::Length, false));

        let (head, framing, _) = head_of(&answer(404, &[], "no route\n"), false, false);
        assert!(
            head.contains("content-length: 9\r\n"),
            "a known size becomes a length: {head}"
        );
        assert_eq!(framing, Framing::Length);

        let (head, framing, close) = head_of(
            &answer(400, &[("connection", "close"), ("date", "x")], "bad"),
            false,
            false,
        );
        assert_eq!(
            head,
            format!("HTTP/1.1 400 Bad Request\r\ndate: x\r\n{ADDED}content-length: 3\r\nconnection: close\r\n\r\n")
        );
        assert_eq!((framing, close), (Framing::Length, true));

        let (_, framing, close) = head_of(&answer(200, &[("content-length", "5")], ""), true, true);
        assert_eq!((framing, close), (Framing::None, true), "HEAD: no body");
        assert_eq!(head_of(&answer(304, &[], ""), false, false).1, Framing::None);
    }

    #[test]
    fn raw_lines_come_first_and_count_for_framing_and_date() {
        let mut a = answer(200, &[], "hi");
        a.raw = Some(RawHeaders {
            lines: Bytes::from_static(b"Date: Thu, 03 Dec 2026 07:00:00 GMT\r\nContent-Length: 5\r\n"),
            content_length: true,
            date: true,
        });
        a.upstream = Some((
            HeaderValue::from_static("10.0.0.2:80"),
            std::time::Duration::from_millis(3),
        ));
        let (head, framing, _) = head_of(&a, false, false);
        assert_eq!(
            head,
            format!(
                "HTTP/1.1 200 OK\r\nDate: Thu, 03 Dec 2026 07:00:00 GMT\r\nContent-Length: 5\r\n\
                 x-upstream-addr: 10.0.0.2:80\r\nx-upstream-response-time: 0.003\r\n{ADDED}\r\n"
            )
        );
        assert_eq!(framing, Framing::Length);
    }

    #[test]
    fn unknown_lengths_are_chunked() {
        let body = http_body_util::StreamBody::new(futures_util::stream::empty::<
            Result<hyper::body::Frame<Bytes>, crate::l7::BoxError>,
        >());
        let (head, framing, _) = head_of(&with_body(Response::new(body.boxed())), false, false);
        assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
        assert_eq!(framing, Framing::Chunked);
        for (len, hex) in [
            (0, "0"),
            (1, "1"),
            (15, "f"),
            (16, "10"),
            (65535, "ffff"),
            (65536, "10000"),
        ] {
            let mut out = Vec::new();
            chunk_start(&mut out, len);
            assert_eq!(out, format!("{hex}\r\n").as_bytes());
        }
    }
}
