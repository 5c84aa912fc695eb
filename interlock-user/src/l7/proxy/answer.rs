//! What the proxy answers a request with: the response, and the headers the proxy adds
//! kept beside it rather than inserted into its map.
//!
//! The lean server (`h1_server`) writes the added headers and a backend's raw header lines
//! straight into its output; inserting four headers into a map (a hash, an insert, an
//! allocated value each) and building the backend's map would cost more than writing
//! them. hyper's server takes maps only: it gets [`Answer::into_response`].
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::Response;

use crate::l7::headers::{
    self, RequestId, X_PROXY_ID, X_REQUEST_ID, X_SERVER_INFO, X_UPSTREAM_ADDR, X_UPSTREAM_RESPONSE_TIME,
};

/// `x-server-info`, as Interlock's proxies answer it: what is serving, and which version.
pub const SERVER_INFO: &str = concat!("interlock/", env!("CARGO_PKG_VERSION"));
use crate::l7::raw_headers::{self, RawHeaders};
use crate::l7::ProxyBody;

pub struct Answer {
    /// The backend's response (hop-by-hop headers gone), or one the proxy made.
    pub response: Response<ProxyBody>,
    /// The backend's header lines when the lean client fetched the response (its map then
    /// holds none of them).
    pub raw: Option<RawHeaders>,
    pub request_id: RequestId,
    /// The backend that answered (its `x-upstream-addr` value) and how long it took.
    pub upstream: Option<(HeaderValue, Duration)>,
    pub proxy_id: HeaderValue,
}

impl Answer {
    /// The response with every header in its map, for hyper's server. The backend's
    /// headers hold none of `headers::PROXY_SET_RESPONSE` (left out by the lean client,
    /// removed from hyper's map by `forward`); inserting replaces any all the same, so the
    /// client gets each once, the proxy's, as the lean server writes them.
    pub fn into_response(self) -> Response<ProxyBody> {
        let mut resp = self.response;
        if let Some(raw) = self.raw {
            raw_headers::into_header_map(&mut resp, &raw);
        }
        let map = resp.headers_mut();
        if let Some((addr, took)) = self.upstream {
            map.insert(X_UPSTREAM_ADDR.clone(), addr);
            map.insert(X_UPSTREAM_RESPONSE_TIME.clone(), headers::seconds_value(took));
        }
        map.insert(X_REQUEST_ID.clone(), self.request_id.into_value());
        map.insert(X_PROXY_ID.clone(), self.proxy_id);
        map.insert(X_SERVER_INFO.clone(), HeaderValue::from_static(SERVER_INFO));
        resp
    }

    /// Appends the headers the proxy adds as header lines (what `into_response` puts in
    /// the map).
    pub fn write_added_headers(&self, out: &mut Vec<u8>) {
        if let Some((addr, took)) = &self.upstream {
            out.extend_from_slice(b"x-upstream-addr: ");
            out.extend_from_slice(addr.as_bytes());
            out.extend_from_slice(b"\r\nx-upstream-response-time: ");
            headers::write_seconds(out, *took);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(self.request_id.as_bytes());
        out.extend_from_slice(b"\r\nx-proxy-id: ");
        out.extend_from_slice(self.proxy_id.as_bytes());
        out.extend_from_slice(b"\r\nx-server-info: ");
        out.extend_from_slice(SERVER_INFO.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};

    #[test]
    fn both_forms_carry_the_same_headers() {
        let answer = || Answer {
            response: Response::new(Empty::<Bytes>::new().map_err(|n| match n {}).boxed()),
            raw: Some(RawHeaders {
                lines: Bytes::from_static(b"Content-Type: text/plain\r\n"),
                content_length: false,
                date: false,
            }),
            request_id: RequestId::Fresh(*b"0123456789abcdef0123456789abcdef"),
            upstream: Some((HeaderValue::from_static("10.0.0.2:80"), Duration::from_millis(1_042))),
            proxy_id: HeaderValue::from_static("p1"),
        };
        let mut lines = Vec::new();
        answer().write_added_headers(&mut lines);
        assert_eq!(
            String::from_utf8(lines).unwrap(),
            format!(
                "x-upstream-addr: 10.0.0.2:80\r\nx-upstream-response-time: 1.042\r\n\
             x-request-id: 0123456789abcdef0123456789abcdef\r\nx-proxy-id: p1\r\nx-server-info: {SERVER_INFO}\r\n"
            )
        );
        let resp = answer().into_response();
        let h = resp.headers();
        assert_eq!(h.len(), 6);
        assert!(h["x-server-info"].to_str().unwrap().starts_with("interlock/"));
        assert_eq!(h["content-type"], "text/plain");
        assert_eq!(h["x-upstream-addr"], "10.0.0.2:80");
        assert_eq!(h["x-upstream-response-time"], "1.042");
        assert_eq!(h["x-request-id"], "0123456789abcdef0123456789abcdef");
        assert_eq!(h["x-proxy-id"], "p1");
        for name in headers::PROXY_SET_RESPONSE {
            assert_eq!(h.get_all(name).iter().count(), 1, "{name}: the list is what is added");
        }
    }

    #[test]
    fn the_proxys_headers_replace_a_backends_in_the_map() {
        let mut response = Response::new(Empty::<Bytes>::new().map_err(|n| match n {}).boxed());
        for name in headers::PROXY_SET_RESPONSE {
            response.headers_mut().append(name, HeaderValue::from_static("backend"));
        }
        let resp = Answer {
            response,
            raw: None,
            request_id: RequestId::Client(HeaderValue::from_static("abc-123")),
            upstream: Some((HeaderValue::from_static("10.0.0.2:80"), Duration::from_millis(1))),
            proxy_id: HeaderValue::from_static("p1"),
        }
        .into_response();
        for name in headers::PROXY_SET_RESPONSE {
            let values: Vec<_> = resp.headers().get_all(name).iter().collect();
            assert_eq!(values.len(), 1, "{name}");
            assert_ne!(values[0], "backend", "{name}");
        }
    }
}
