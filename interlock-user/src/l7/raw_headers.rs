//! A backend's response headers as the lean client read them: header lines, verbatim.
//!
//! Building a `HeaderMap` from a response head (a parsed name, a hash and an insert per
//! header) cost about 3,500 instructions a request, for a map the lean server only walks
//! to write the same lines out again. So the lean client keeps the kept lines as bytes
//! (with the response body, then in the proxy's `Answer`), and the lean server writes them
//! as they are. Whoever needs a map, hyper's server, gets one from [`into_header_map`].
use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::Response;

/// Header lines (`Name: value\r\n`, as the backend wrote them) without hop-by-hop ones.
/// httparse checked every name and value, so each line makes a valid header.
#[derive(Debug, Clone)]
pub struct RawHeaders {
    pub lines: Bytes,
    /// A Content-Length line is among them.
    pub content_length: bool,
    /// A Date line is among them.
    pub date: bool,
}

/// Header lines in a block (the lean client's limit).
const MAX_LINES: usize = 100;

/// Puts raw header lines into the response's header map (before what the map held).
pub fn into_header_map<B>(resp: &mut Response<B>, raw: &RawHeaders) {
    // The block ends with the empty line that closes a head, so httparse reads it whole.
    let mut block = Vec::with_capacity(raw.lines.len() + 2);
    block.extend_from_slice(&raw.lines);
    block.extend_from_slice(b"\r\n");
    let mut slots = [httparse::EMPTY_HEADER; MAX_LINES];
    let Ok(httparse::Status::Complete((_, headers))) = httparse::parse_headers(&block, &mut slots) else {
        return;
    };
    let ours = std::mem::take(resp.headers_mut());
    let map = resp.headers_mut();
    map.reserve(headers.len() + ours.len());
    for h in headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            continue;
        };
        map.append(name, value);
    }
    for (name, value) in ours.iter() {
        map.append(name.clone(), value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_map_entries_before_the_proxys_own() {
        let mut resp = Response::new(());
        resp.headers_mut()
            .insert("x-upstream-addr", HeaderValue::from_static("10.0.0.2:80"));
        let raw = RawHeaders {
            lines: Bytes::from_static(b"Content-Type: text/plain\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n"),
            content_length: false,
            date: false,
        };
        into_header_map(&mut resp, &raw);
        let h = resp.headers();
        assert_eq!(h.len(), 4);
        assert_eq!(h["content-type"], "text/plain");
        assert_eq!(h.get_all("set-cookie").iter().count(), 2);
        assert_eq!(h["x-upstream-addr"], "10.0.0.2:80");
    }
}
