//! Header rules of the proxy: hop-by-hop removal, forwarding headers, request ids. The
//! checks a request must pass before it is routed are in `l7::normalize`.
use std::net::IpAddr;
use std::time::Duration;

use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, FORWARDED, HOST, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// h2c's upgrade settings (RFC 7540 3.2): meaningful on one connection only.
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Headers that describe one connection, not the message (RFC 9110 7.6.1). Static names:
/// comparing and removing them costs no parsing per request.
static HOP_BY_HOP: [&HeaderName; 10] = [
    &CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &PROXY_AUTHENTICATE,
    &PROXY_AUTHORIZATION,
    &TE,
    &TRAILER,
    &TRANSFER_ENCODING,
    &UPGRADE,
    &HTTP2_SETTINGS,
];

/// Headers a Connection option can never remove: the request's target and framing. (The
/// headers the proxy sets are written after hop-by-hop removal, so no option reaches them.)
static PROTECTED: [&HeaderName; 2] = [&HOST, &CONTENT_LENGTH];

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_UPSTREAM_ADDR: HeaderName = HeaderName::from_static("x-upstream-addr");
pub static X_UPSTREAM_RESPONSE_TIME: HeaderName = HeaderName::from_static("x-upstream-response-time");
pub static X_PROXY_ID: HeaderName = HeaderName::from_static("x-proxy-id");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub static X_SERVER_INFO: HeaderName = HeaderName::from_static("x-server-info");

/// True for the request headers the proxy sets itself ([`set_forwarded`]): a client's are
/// removed before routing, never passed on.
pub fn is_proxy_set_request(name: &HeaderName) -> bool {
    name == X_FORWARDED_FOR
        || name == X_FORWARDED_PROTO
        || name == X_FORWARDED_HOST
        || name == X_FORWARDED_PORT
        || name == X_REAL_IP
        || name == X_REQUEST_ID
        || name == FORWARDED
}

/// The response headers the proxy sets on every answer. A backend's own are dropped on every
/// path (the lean client leaves their lines out, hyper's map loses them) and the client sees
/// the proxy's once. For `x-request-id` the proxy's id wins: the client's own when it is a
/// valid id (see [`request_id`]), else a fresh one, the id the access log carries.
pub static PROXY_SET_RESPONSE: [&HeaderName; 5] = [
    &X_REQUEST_ID,
    &X_UPSTREAM_ADDR,
    &X_UPSTREAM_RESPONSE_TIME,
    &X_PROXY_ID,
    &X_SERVER_INFO,
];

/// True for the hop-by-hop headers every message may carry (not those a Connection
/// header names).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// The hop-by-hop names (for checks of matchers that know them by heart).
pub fn hop_by_hop_names() -> impl Iterator<Item = &'static str> {
    HOP_BY_HOP.iter().map(|h| h.as_str())
}

/// Removes hop-by-hop headers, including those the Connection header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names, a bit per hop-by-hop header present: most messages carry
    // none, or only `Connection: keep-alive`, and then nothing is parsed or allocated.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| *h == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        // Connection (first in HOP_BY_HOP): the names it lists go too. The usual values,
        // `keep-alive` and `close`, are options, not names: nothing to parse or collect.
        let mut named: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(CONNECTION) {
            let Ok(value) = value.to_str() else { continue };
            for token in value.split(',').map(str::trim) {
                let known = token.eq_ignore_ascii_case("keep-alive")
                    || token.eq_ignore_ascii_case("close")
                    || HOP_BY_HOP.iter().any(|h| token.eq_ignore_ascii_case(h.as_str()))
                    || PROTECTED.iter().any(|h| token.eq_ignore_ascii_case(h.as_str()));
                if !known {
                    if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                        named.push(name);
                    }
                }
            }
        }
        for name in named {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(*name);
        }
    }
}

/// A client address as a header value; made once per connection, not per request.
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    let text = match ip {
        // Once per connection: an IPv4 address by hand, without fmt's machinery and a
        // String to copy from (about 1,500 instructions a connection).
        IpAddr::V4(v4) => {
            let mut text = Vec::with_capacity(15);
            let mut num = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push(b'.');
                }
                text.extend_from_slice(num.format(octet).as_bytes());
            }
            text
        }
        IpAddr::V6(_) => ip.to_string().into_bytes(),
    };
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).unwrap_or(HeaderValue::from_static("-"))
}

/// The headers the proxy tells a backend about the request with: X-Forwarded-For and
/// X-Real-IP (the client's address), X-Forwarded-Proto, X-Forwarded-Host (the authority
/// routed), X-Forwarded-Port (the port the client connected to) and x-request-id (the id
/// the access log and the client's answer carry). The lean client writes them straight
/// into the request head; [`set_forwarded`] puts them in a map for hyper's. The client's
/// own were removed by `normalize`, or kept in `relayed` when the peer is trusted.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// From [`ip_value`].
    pub client: HeaderValue,
    pub proto: &'static str,
    pub host: HeaderValue,
    pub port: u16,
    pub request_id: RequestId,
    /// What a trusted proxy in front said (boxed: absent on almost every request).
    pub relayed: Option<Box<Relayed>>,
}

/// The X-Forwarded-* and X-Real-IP headers of a trusted proxy in front (`--trusted-proxies`).
/// X-Forwarded-For gets the peer appended; the others are passed on as the proxy sent them.
#[derive(Debug, Clone, Default)]
pub struct Relayed {
    pub xff: Option<HeaderValue>,
    pub real_ip: Option<HeaderValue>,
    pub proto: Option<HeaderValue>,
    pub host: Option<HeaderValue>,
    pub port: Option<HeaderValue>,
}

impl Relayed {
    /// X-Real-IP: the trusted proxy's own, else the last address of its X-Forwarded-For
    /// (the one it saw: nginx's `real_ip_header X-Forwarded-For` without recursion).
    fn real_ip(&self) -> Option<&[u8]> {
        if let Some(ip) = &self.real_ip {
            return Some(ip.as_bytes());
        }
        let xff = self.xff.as_ref()?.as_bytes();
        let last = xff.rsplit(|b| *b == b',').next()?.trim_ascii();
        (!last.is_empty()).then_some(last)
    }
}

impl Forwarded {
    /// The header lines, for the lean client.
    pub fn write(&self, out: &mut Vec<u8>) {
        let relayed = self.relayed.as_deref();
        out.extend_from_slice(b"x-forwarded-for: ");
        if let Some(xff) = relayed.and_then(|r| r.xff.as_ref()) {
            out.extend_from_slice(xff.as_bytes());
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(self.client.as_bytes());
        out.extend_from_slice(b"\r\nx-real-ip: ");
        out.extend_from_slice(relayed.and_then(Relayed::real_ip).unwrap_or(self.client.as_bytes()));
        out.extend_from_slice(b"\r\nx-forwarded-proto: ");
        out.extend_from_slice(match relayed.and_then(|r| r.proto.as_ref()) {
            Some(proto) => proto.as_bytes(),
            None => self.proto.as_bytes(),
        });
        out.extend_from_slice(b"\r\nx-forwarded-host: ");
        out.extend_from_slice(relayed.and_then(|r| r.host.as_ref()).unwrap_or(&self.host).as_bytes());
        out.extend_from_slice(b"\r\nx-forwarded-port: ");
        match relayed.and_then(|r| r.port.as_ref()) {
            Some(port) => out.extend_from_slice(port.as_bytes()),
            None => out.extend_from_slice(itoa::Buffer::new().format(self.port).as_bytes()),
        }
        out.extend_from_slice(b"\r\nx-request-id: ");
        out.extend_from_slice(self.request_id.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// X-Forwarded-For's value (the trusted proxy's chain, then the peer).
    fn xff(&self) -> HeaderValue {
        match self.relayed.as_deref().and_then(|r| r.xff.as_ref()) {
            Some(xff) => {
                let mut chain = xff.as_bytes().to_vec();
                chain.extend_from_slice(b", ");
                chain.extend_from_slice(self.client.as_bytes());
                HeaderValue::from_bytes(&chain).unwrap_or_else(|_| self.client.clone())
            }
            None => self.client.clone(),
        }
    }
}

/// Sets the forwarding headers in `headers` (hyper's client): the same values as
/// [`Forwarded::write`].
pub fn set_forwarded(headers: &mut HeaderMap, forwarded: Forwarded) {
    let relayed = forwarded.relayed.as_deref().cloned().unwrap_or_default();
    let real_ip = relayed
        .real_ip()
        .and_then(|ip| HeaderValue::from_bytes(ip).ok())
        .unwrap_or_else(|| forwarded.client.clone());
    headers.insert(X_FORWARDED_FOR.clone(), forwarded.xff());
    headers.insert(X_REAL_IP.clone(), real_ip);
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        relayed.proto.unwrap_or(HeaderValue::from_static(forwarded.proto)),
    );
    headers.insert(X_FORWARDED_HOST.clone(), relayed.host.unwrap_or(forwarded.host));
    headers.insert(
        X_FORWARDED_PORT.clone(),
        relayed.port.unwrap_or_else(|| HeaderValue::from(forwarded.port)),
    );
    headers.insert(X_REQUEST_ID.clone(), forwarded.request_id.into_value());
}

/// A request's id: the client's `x-request-id` when it is a sane token, else 32 random hex
/// digits (kept on the stack: no allocation unless a header map needs it).
#[derive(Debug, Clone)]
pub enum RequestId {
    Client(HeaderValue),
    Fresh([u8; 32]),
}

impl RequestId {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            RequestId::Client(v) => v.as_bytes(),
            RequestId::Fresh(id) => id,
        }
    }

    /// Both kinds are ASCII (checked, or hex digits).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("-")
    }

    pub fn into_value(self) -> HeaderValue {
        match self {
            RequestId::Client(v) => v,
            RequestId::Fresh(id) => HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("0")),
        }
    }
}

/// The request id of a request with `headers`.
pub fn request_id(headers: &HeaderMap) -> RequestId {
    match headers.get(&X_REQUEST_ID).filter(|v| {
        (1..=128).contains(&v.len()) && v.as_bytes().iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    }) {
        Some(v) => RequestId::Client(v.clone()),
        None => RequestId::Fresh(random_id()),
    }
}

/// 32 random hex digits, written without the formatting machinery (once per request).
fn random_id() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = fastrand::u128(..);
    let mut id = [0u8; 32];
    for (i, digit) in id.iter_mut().enumerate() {
        *digit = HEX[((bits >> (4 * (31 - i))) & 0xf) as usize];
    }
    id
}

/// `took` in seconds with three decimals (`0.004`), as x-upstream-response-time carries it.
pub fn seconds_value(took: Duration) -> HeaderValue {
    let mut text = Vec::with_capacity(24);
    write_seconds(&mut text, took);
    // The vector becomes the value's bytes (no second copy).
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).unwrap_or(HeaderValue::from_static("0.000"))
}

/// Appends `took` as [`seconds_value`] writes it.
pub fn write_seconds(out: &mut Vec<u8>, took: Duration) {
    let ms = took.as_millis();
    out.extend_from_slice(itoa::Buffer::new().format(ms / 1000).as_bytes());
    let frac = (ms % 1000) as u16;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
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
    fn a_connection_option_never_removes_host_or_content_length() {
        let mut h = headers(&[
            ("connection", "host, Content-Length, x-secret"),
            ("host", "a.example"),
            ("content-length", "3"),
            ("x-secret", "1"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["content-length", "host"]);
    }

    #[test]
    fn forwarded_headers_replace_the_clients() {
        assert_eq!(ip_value("10.0.255.7".parse().unwrap()), "10.0.255.7");
        assert_eq!(ip_value("0.0.0.0".parse().unwrap()), "0.0.0.0");
        assert_eq!(ip_value("2001:db8::1".parse().unwrap()), "2001:db8::1");
        let forwarded = Forwarded {
            client: ip_value("192.0.2.1".parse().unwrap()),
            proto: "https",
            host: HeaderValue::from_static("a.example"),
            port: 443,
            request_id: RequestId::Client(HeaderValue::from_static("abc-1")),
            relayed: None,
        };
        let mut lines = Vec::new();
        forwarded.write(&mut lines);
        assert_eq!(
            String::from_utf8(lines).unwrap(),
            "x-forwarded-for: 192.0.2.1\r\nx-real-ip: 192.0.2.1\r\nx-forwarded-proto: https\r\n\
             x-forwarded-host: a.example\r\nx-forwarded-port: 443\r\nx-request-id: abc-1\r\n"
        );
        // Behind a trusted proxy: its chain extended, its proto and host kept.
        let behind = Forwarded {
            relayed: Some(Box::new(Relayed {
                xff: Some(HeaderValue::from_static("203.0.113.5, 198.51.100.9")),
                proto: Some(HeaderValue::from_static("https")),
                ..Relayed::default()
            })),
            proto: "http",
            ..forwarded.clone()
        };
        let mut lines = Vec::new();
        behind.write(&mut lines);
        let text = String::from_utf8(lines).unwrap();
        assert!(text.starts_with("x-forwarded-for: 203.0.113.5, 198.51.100.9, 192.0.2.1\r\nx-real-ip: 198.51.100.9\r\nx-forwarded-proto: https\r\n"), "{text}");
        let mut h = HeaderMap::new();
        set_forwarded(&mut h, behind);
        assert_eq!(h["x-forwarded-for"], "203.0.113.5, 198.51.100.9, 192.0.2.1");
        assert_eq!(h["x-real-ip"], "198.51.100.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-port"], "443");
        let mut h = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-host", "evil.example")]);
        set_forwarded(&mut h, forwarded);
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1");
        assert_eq!(h["x-real-ip"], "192.0.2.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "a.example");
        assert_eq!(h["x-request-id"], "abc-1");
    }

    #[test]
    fn hop_by_hop_free_headers_stay() {
        let mut h = headers(&[("host", "a.example"), ("accept", "*/*"), ("x-keepalive", "1")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 3);
        let mut h = headers(&[("keep-alive", "timeout=5"), ("upgrade", "h2c"), ("accept", "*/*")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn response_time_in_seconds() {
        assert_eq!(seconds_value(Duration::from_micros(4_400)), "0.004");
        assert_eq!(seconds_value(Duration::from_millis(12_345)), "12.345");
        assert_eq!(seconds_value(Duration::ZERO), "0.000");
        assert_eq!(seconds_value(Duration::from_millis(1_050)), "1.050");
    }

    #[test]
    fn request_ids_and_cookies() {
        assert_eq!(request_id(&headers(&[("x-request-id", "abc-123")])).as_str(), "abc-123");
        assert_ne!(request_id(&headers(&[("x-request-id", "bad id")])).as_str(), "bad id");
        let fresh = request_id(&HeaderMap::new());
        assert_eq!(fresh.as_bytes().len(), 32);
        assert!(fresh.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(fresh.as_str(), request_id(&HeaderMap::new()).as_str());
        assert_eq!(fresh.clone().into_value(), fresh.as_str());
        let h = headers(&[("cookie", "a=1; SESSION=xyz"), ("cookie", "b=2")]);
        assert_eq!(cookie(&h, "SESSION"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
