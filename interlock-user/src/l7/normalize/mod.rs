//! The one step every request takes before it is routed, whichever server read it (the
//! lean HTTP/1.1 loop, hyper's HTTP/1 and HTTP/2, over TLS or not): what is routed is what
//! the backend gets, and what two parsers could read differently is refused.
//!
//! - Framing: several Content-Length or Host headers, or Content-Length beside
//!   Transfer-Encoding, are 400 (request smuggling); a Transfer-Encoding other than
//!   `chunked` alone is 501.
//! - Authority (`authority`): an absolute-form target's authority (RFC 9112 3.2.2) or h2's
//!   `:authority` (RFC 9113 8.3.1) is what is routed and replaces Host; an h2 `host` header
//!   naming something else, authority-form and asterisk-form targets, and an invalid
//!   host or port are 400; `CONNECT` is 405.
//! - Path (`path`): dot segments, encoded dots and repeated slashes normalised, ambiguous
//!   escapes refused; the target becomes origin-form with that path.
//! - HTTP/2 fields: a value with surrounding whitespace is 400; cookie crumbs are joined.
//! - Upgrades: only `websocket`, on an HTTP/1.1 GET. Any other (h2c, unknown tokens, any
//!   on HTTP/1.0) is not an upgrade: its headers are hop-by-hop, so they are removed on
//!   the way and the request is served as a plain one.
//! - The headers the proxy sets (X-Forwarded-*, X-Real-IP, Forwarded, x-request-id) are
//!   removed from the client's request; the proxy writes its own.
pub mod authority;
pub mod path;

use std::borrow::Cow;

use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, COOKIE, FORWARDED, HOST, TRANSFER_ENCODING, UPGRADE};
use hyper::http::uri::{PathAndQuery, Uri};
use hyper::{Method, Request, Version};

use crate::l7::error::ProxyError;
use crate::l7::headers::{
    self, Relayed, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PORT, X_FORWARDED_PROTO, X_REAL_IP, X_REQUEST_ID,
};

/// What normalising a request found.
#[derive(Debug)]
pub struct Normalized {
    /// `host[:port]` as checked by [`authority::check`]: what is routed, and the backend's
    /// Host and X-Forwarded-Host.
    pub authority: HeaderValue,
    /// The `Upgrade` value of a websocket upgrade; `None` for every other request.
    pub upgrade: Option<HeaderValue>,
    /// A trusted peer's X-Forwarded-* and X-Real-IP (`--trusted-proxies`), taken out of
    /// the request to be passed on (`headers::Forwarded`).
    pub relayed: Option<Box<Relayed>>,
}

/// What one walk over the header names saw.
#[derive(Default)]
struct Seen {
    lengths: u8,
    codings: u8,
    hosts: u8,
    connection: bool,
    upgrade: bool,
    /// A header the proxy sets itself.
    proxy_set: bool,
}

fn walk(headers: &hyper::HeaderMap) -> Seen {
    // Standard names compare as enum values: a walk costs less than a hash lookup a rule.
    // Every value, not every distinct name: repeated headers must count.
    let mut seen = Seen::default();
    for (name, _) in headers {
        if name == CONTENT_LENGTH {
            seen.lengths = seen.lengths.saturating_add(1);
        } else if name == TRANSFER_ENCODING {
            seen.codings = seen.codings.saturating_add(1);
        } else if name == HOST {
            seen.hosts = seen.hosts.saturating_add(1);
        } else if name == CONNECTION {
            seen.connection = true;
        } else if name == UPGRADE {
            seen.upgrade = true;
        } else if headers::is_proxy_set_request(name) {
            seen.proxy_set = true;
        }
    }
    seen
}

/// Normalises `req` in place (its URI, Host and proxy-set headers) or says why it is
/// refused. Cheap on the usual request: one walk over the names, one scan of the path.
/// `trusted`: the peer is a trusted proxy, whose forwarding headers are kept (`relayed`).
pub fn request<B>(req: &mut Request<B>, trusted: bool) -> Result<Normalized, ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed("CONNECT"));
    }
    let seen = walk(req.headers());
    if seen.codings > 0 && seen.lengths > 0 {
        return Err(ProxyError::BadRequest("both Content-Length and Transfer-Encoding"));
    }
    if seen.lengths > 1 {
        return Err(ProxyError::BadRequest("several Content-Length headers"));
    }
    if seen.hosts > 1 {
        return Err(ProxyError::BadRequest("several Host headers"));
    }
    if seen.codings > 0 && !only_chunked(req.headers()) {
        // The body is forwarded re-chunked, without Transfer-Encoding (hop-by-hop): a
        // coding before `chunked` would be lost (RFC 9112 6.1: 501, as nginx answers).
        return Err(ProxyError::NotImplemented("a transfer coding other than chunked"));
    }
    if req.version() >= Version::HTTP_2 {
        h2_fields(req.headers_mut())?;
    }
    let authority = authority_of(req, seen.hosts == 1)?;
    let normalized_path = origin_form(req.uri())?;
    if let Some(uri) = normalized_path {
        *req.uri_mut() = uri;
    }
    let upgrade = if seen.connection && seen.upgrade {
        websocket_upgrade(req)
    } else {
        None
    };
    let headers = req.headers_mut();
    let mut relayed = None;
    if seen.proxy_set {
        if trusted {
            relayed = Some(Box::new(Relayed {
                xff: joined(headers, &X_FORWARDED_FOR),
                real_ip: headers.remove(&X_REAL_IP),
                proto: headers.remove(&X_FORWARDED_PROTO),
                host: headers.remove(&X_FORWARDED_HOST),
                port: headers.remove(&X_FORWARDED_PORT),
            }));
        }
        for name in [
            &X_FORWARDED_FOR,
            &X_FORWARDED_PROTO,
            &X_FORWARDED_HOST,
            &X_FORWARDED_PORT,
            &X_REAL_IP,
            &X_REQUEST_ID,
        ] {
            headers.remove(name);
        }
        headers.remove(FORWARDED);
    }
    Ok(Normalized {
        authority,
        upgrade,
        relayed,
    })
}

/// All of a header's values as one comma-separated list (several X-Forwarded-For lines
/// are one list, RFC 9110 5.3).
fn joined(headers: &hyper::HeaderMap, name: &hyper::header::HeaderName) -> Option<HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let rest: Vec<&HeaderValue> = values.collect();
    if rest.is_empty() {
        return Some(first.clone());
    }
    let mut list = first.as_bytes().to_vec();
    for v in rest {
        list.extend_from_slice(b", ");
        list.extend_from_slice(v.as_bytes());
    }
    HeaderValue::from_bytes(&list).ok()
}

/// What HTTP/2 asks of fields before an HTTP/1.1 hop: no value starts or ends with
/// whitespace (RFC 9113 8.2.1: malformed, never forwarded; h2 does not check), and cookie
/// crumbs are joined into one Cookie header with `; ` (8.2.3).
fn h2_fields(headers: &mut hyper::HeaderMap) -> Result<(), ProxyError> {
    let mut cookies = 0;
    for (name, value) in headers.iter() {
        if let (Some(first), Some(last)) = (value.as_bytes().first(), value.as_bytes().last()) {
            if matches!(first, b' ' | b'\t') || matches!(last, b' ' | b'\t') {
                return Err(ProxyError::BadRequest("a field value with surrounding whitespace"));
            }
        }
        if name == COOKIE {
            cookies += 1;
        }
    }
    if cookies > 1 {
        let crumbs: Vec<&[u8]> = headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes).collect();
        let joined = HeaderValue::from_bytes(&crumbs.join(&b"; "[..]))
            .map_err(|_| ProxyError::BadRequest("an invalid cookie"))?;
        headers.insert(COOKIE, joined);
    }
    Ok(())
}

/// True when Transfer-Encoding is exactly `chunked`, once.
fn only_chunked(headers: &hyper::HeaderMap) -> bool {
    let mut codings = headers.get_all(TRANSFER_ENCODING).iter();
    match (codings.next(), codings.next()) {
        (Some(v), None) => v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked"),
        _ => false,
    }
}

/// The authority to route by, with Host set to it when it came from the target.
fn authority_of<B>(req: &mut Request<B>, has_host: bool) -> Result<HeaderValue, ProxyError> {
    let uri = req.uri();
    let h2 = req.version() >= Version::HTTP_2;
    if !h2 && uri.authority().is_some() && uri.scheme().is_none() {
        return Err(ProxyError::BadRequest(
            "an authority-form target (only CONNECT takes one)",
        ));
    }
    if !h2 && req.version() == Version::HTTP_11 && !has_host {
        return Err(ProxyError::BadRequest("missing Host")); // RFC 9112 3.2
    }
    if let Some(scheme) = uri.scheme_str() {
        if scheme != "http" && scheme != "https" {
            return Err(ProxyError::BadRequest(
                "a target with a scheme other than http or https",
            ));
        }
    }
    let Some(target) = uri.authority() else {
        let host = req.headers().get(HOST).ok_or(ProxyError::BadRequest("missing Host"))?;
        authority::check(host.as_bytes()).map_err(ProxyError::BadRequest)?;
        return Ok(host.clone());
    };
    let target = target.as_str();
    authority::check(target.as_bytes()).map_err(ProxyError::BadRequest)?;
    if h2 {
        if let Some(host) = req.headers().get(HOST) {
            if !authority::same(host.as_bytes(), target.as_bytes()) {
                return Err(ProxyError::BadRequest("a host header other than :authority"));
            }
        }
    }
    // Checked above: only host name, address and port bytes, all valid in a header value.
    let value = HeaderValue::from_str(target).map_err(|_| ProxyError::BadRequest("an invalid authority"))?;
    req.headers_mut().insert(HOST, value.clone());
    Ok(value)
}

/// The origin-form target with the normalised path, when it differs from `uri`.
fn origin_form(uri: &Uri) -> Result<Option<Uri>, ProxyError> {
    if uri.path() == "*" {
        return Err(ProxyError::BadRequest("an asterisk-form target"));
    }
    let path = path::normalize(uri.path()).map_err(ProxyError::BadRequest)?;
    let origin = uri.scheme().is_none() && uri.authority().is_none();
    if origin && matches!(path, Cow::Borrowed(_)) {
        return Ok(None);
    }
    let path_and_query = match (path, uri.query()) {
        (Cow::Borrowed(_), _) => uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
        (Cow::Owned(p), None) => PathAndQuery::try_from(p).map_err(|_| ProxyError::BadRequest("an unparsable path"))?,
        (Cow::Owned(p), Some(q)) => {
            PathAndQuery::try_from(format!("{p}?{q}")).map_err(|_| ProxyError::BadRequest("an unparsable path"))?
        }
    };
    let mut parts = hyper::http::uri::Parts::default();
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts)
        .map(Some)
        .map_err(|_| ProxyError::BadRequest("an unparsable path"))
}

/// `Some("websocket")` for an HTTP/1.1 GET asking to upgrade to websocket (RFC 6455 4.1);
/// `None` for any other upgrade, which is then served as a plain request.
fn websocket_upgrade<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 || req.method() != Method::GET {
        return None;
    }
    let headers = req.headers();
    let asked = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let mut protocols = headers.get_all(UPGRADE).iter();
    match (asked, protocols.next(), protocols.next()) {
        (true, Some(p), None) if p.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket") => Some(p.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
