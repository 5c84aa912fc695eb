//! Header rules of the proxy: hop-by-hop removal, forwarding headers, request ids, and the
//! request checks that must fail before anything is forwarded.
use std::net::IpAddr;

use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, UPGRADE};

use super::error::ProxyError;

/// Headers that describe one connection, not the message (RFC 9110 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_UPSTREAM_ADDR: HeaderName = HeaderName::from_static("x-upstream-addr");
pub static X_UPSTREAM_RESPONSE_TIME: HeaderName = HeaderName::from_static("x-upstream-response-time");
pub static X_PROXY_ID: HeaderName = HeaderName::from_static("x-proxy-id");

/// The upgrade protocol a request asks for (`websocket`), when it asks for one.
pub fn upgrade_requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade.then(|| headers.get(UPGRADE).cloned()).flatten()
}

/// Removes hop-by-hop headers, including those the Connection header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// Checks a request before it is routed: framing that two parsers could read differently
/// is refused (request smuggling), and the host must be a plausible authority.
pub fn check_request(headers: &HeaderMap, host: Option<&str>) -> Result<(), ProxyError> {
    if headers.contains_key(TRANSFER_ENCODING) && headers.contains_key(CONTENT_LENGTH) {
        return Err(ProxyError::BadRequest("both Content-Length and Transfer-Encoding"));
    }
    if headers.get_all(CONTENT_LENGTH).iter().count() > 1 {
        return Err(ProxyError::BadRequest("several Content-Length headers"));
    }
    if headers.get_all(HOST).iter().count() > 1 {
        return Err(ProxyError::BadRequest("several Host headers"));
    }
    let host = host.ok_or(ProxyError::BadRequest("missing Host"))?;
    let valid = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
    if !valid {
        return Err(ProxyError::BadRequest("invalid Host"));
    }
    Ok(())
}

/// Sets the forwarding headers; incoming ones are replaced, since clients are not trusted.
pub fn set_forwarded(headers: &mut HeaderMap, client: IpAddr, proto: &'static str, host: &str) {
    if let Ok(v) = HeaderValue::from_str(&client.to_string()) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Ok(v) = HeaderValue::from_str(host) {
        headers.insert(X_FORWARDED_HOST.clone(), v);
    }
}

/// The request id: the client's when it is a sane token, else a new random one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(&X_REQUEST_ID)
        .filter(|v| {
            (1..=128).contains(&v.len()) && v.as_bytes().iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        })
        .cloned()
        .unwrap_or_else(|| {
            let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
            HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("0"))
        })
}

/// The value of cookie `name` in the request's Cookie headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("x-keep", "1"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let both = headers(&[("content-length", "5"), ("transfer-encoding", "chunked")]);
        assert!(check_request(&both, Some("a.example")).is_err());
        let two = headers(&[("content-length", "5"), ("content-length", "6")]);
        assert!(check_request(&two, Some("a.example")).is_err());
        assert!(check_request(&HeaderMap::new(), None).is_err());
        assert!(check_request(&HeaderMap::new(), Some("a b")).is_err());
        assert!(check_request(&HeaderMap::new(), Some("a.example:8080")).is_ok());
    }

    #[test]
    fn forwarded_headers_replace_the_clients() {
        let mut h = headers(&[("x-forwarded-for", "6.6.6.6")]);
        set_forwarded(&mut h, "192.0.2.1".parse().unwrap(), "https", "a.example");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1");
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn request_ids_and_cookies() {
        assert_eq!(request_id(&headers(&[("x-request-id", "abc-123")])), "abc-123");
        assert_ne!(request_id(&headers(&[("x-request-id", "bad id")])), "bad id");
        assert_eq!(request_id(&HeaderMap::new()).len(), 32);
        let h = headers(&[("cookie", "a=1; SESSION=xyz"), ("cookie", "b=2")]);
        assert_eq!(cookie(&h, "SESSION"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(upgrade_requested(&headers(&[("connection", "Upgrade"), ("upgrade", "websocket")])).is_some());
    }
}
