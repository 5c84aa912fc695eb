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

/// Puts raw header lines into the response's header map. Values share the lines' bytes.
pub fn into_header_map<B>(resp: &mut Response<B>, raw: &RawHeaders) {
    let map = resp.headers_mut();
    for line in raw.lines.split(|b| *b == b'\n') {
        // Lines are `Name: value\r\n` as httparse accepted them (see `h1_client::head`).
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_maybe_shared(raw.lines.slice_ref(value)),
        ) else {
            continue;
        };
        map.append(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_map_entries_beside_the_proxys_own() {
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
