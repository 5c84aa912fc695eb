//! The proxy's own answers: errors mapped to a status and a short text, redirects.
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, LOCATION};
use hyper::{Response, StatusCode};

use crate::l7::error::{ProxyError, Side};
use crate::l7::ProxyBody;

fn text_response(status: StatusCode, body: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A redirect to `target`: `302 Found` for `com.docker.lb.redirects` (as Interlock's nginx
/// answers them), `301` for `ssl_only` (Interlock's `return 301 https://...`).
pub(super) fn redirect(status: StatusCode, target: &str) -> Response<ProxyBody> {
    let mut resp = text_response(status, "moved\n");
    if let Ok(v) = HeaderValue::from_str(target) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

pub(super) fn error_response(e: &ProxyError) -> Response<ProxyBody> {
    let body = match e {
        ProxyError::NoRoute { .. } => "no route for this host\n".to_string(),
        ProxyError::BadRequest(why) => format!("bad request: {why}\n"),
        ProxyError::MethodNotAllowed(method) => format!("{method} is not served by this proxy\n"),
        ProxyError::NotImplemented(what) => format!("not implemented: {what}\n"),
        other => format!("{}\n", other.status().canonical_reason().unwrap_or("error")),
    };
    let mut resp = text_response(e.status(), &body);
    if matches!(e, ProxyError::MethodNotAllowed(_)) {
        // RFC 9110 15.5.6: a 405 lists what is allowed (CONNECT is all that is not).
        resp.headers_mut().insert(
            hyper::header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
        );
    }
    if e.side() == Side::Client {
        // After a malformed request the connection's framing cannot be trusted: close it.
        resp.headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
