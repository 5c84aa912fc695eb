//! The request as the backend gets it and the response as the client gets it: origin-form
//! URI, hop-by-hop headers out, forwarding headers in, bodies streamed through; the form
//! each upstream client takes (the lean one for body-less requests, hyper's for the rest).
use http_body_util::BodyExt;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode, Uri, Version};

use super::respond::error_response;
use super::splice::splice_upgraded;
use super::{Proxy, RequestBody};
use crate::l7::error::ProxyError;
use crate::l7::headers;
use crate::l7::raw_headers::RawHeaders;
use crate::l7::route::balance;
use crate::l7::route::table::{self as routes, Route};
use crate::l7::upstream::h1_client::LeanRequest;
use crate::l7::upstream::tls::TlsTarget;
use crate::l7::upstream::{Outgoing, UpstreamBody};
use crate::l7::ProxyBody;

impl Proxy {
    /// The request as the backend sees it: the normalised request (`normalize`: origin
    /// form, Host the routed authority) with the route's rewrite, HTTP/1.1, no hop-by-hop
    /// headers, forwarding headers set; the body streamed through. Requests without a body
    /// or upgrade go to the lean client, the rest, and every request going over TLS
    /// (`tls`: an `ssl_backend` route), to hyper's.
    pub(super) fn upstream_request<B: RequestBody>(
        &self,
        req: Request<B>,
        route: &Route,
        forwarded: headers::Forwarded,
        upgrade: Option<&HeaderValue>,
        tls: Option<std::sync::Arc<TlsTarget>>,
    ) -> Result<Outgoing, ProxyError> {
        let (mut parts, body) = req.into_parts();
        if let Some(uri) = rewritten(&parts.uri, route)? {
            parts.uri = uri;
        }
        parts.version = Version::HTTP_11;
        if upgrade.is_none() && body.is_end_stream() && tls.is_none() {
            // The lean client writes the forwarding headers itself and leaves the fixed
            // hop-by-hop set out as it writes; only names a Connection header lists need
            // removing here.
            if parts.headers.contains_key(hyper::header::CONNECTION) {
                headers::strip_hop_by_hop(&mut parts.headers);
            }
            return Ok(Outgoing::lean(LeanRequest { parts, forwarded }));
        }
        headers::strip_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = upgrade {
            parts
                .headers
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(hyper::header::UPGRADE, protocol.clone());
        }
        headers::set_forwarded(&mut parts.headers, forwarded);
        let req = Request::from_parts(parts, body.map_err(Into::into).boxed());
        Ok(match tls {
            None => Outgoing::streamed(req),
            Some(target) => Outgoing::streamed_tls(req, target),
        })
    }

    /// The backend's response as the client gets it, and the backend's header lines when
    /// the lean client kept them raw.
    pub(super) fn downstream_response(
        &self,
        mut resp: Response<UpstreamBody>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        in_flight: balance::InFlight,
    ) -> (Response<ProxyBody>, Option<RawHeaders>) {
        // The lean client leaves hop-by-hop and proxy-set headers out as it parses.
        let raw = resp.body_mut().take_raw_headers();
        let (mut parts, body) = resp.into_parts();
        if raw.is_none() {
            // The proxy sets these (`Answer`): the backend's own never reach the client, on
            // either server path.
            for name in headers::PROXY_SET_RESPONSE {
                parts.headers.remove(name);
            }
        }
        let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
        let mut in_flight = Some(in_flight);
        if switching {
            match client_upgrade {
                Some(client_upgrade) => {
                    let backend_upgrade = hyper::upgrade::on(Response::from_parts(parts.clone(), ()));
                    tokio::spawn(splice_upgraded(client_upgrade, backend_upgrade, in_flight.take()));
                    return (Response::from_parts(parts, crate::l7::empty_body()), raw);
                }
                None => {
                    let e = ProxyError::Internal("backend switched protocols unasked".into());
                    return (error_response(&e), None);
                }
            }
        }
        if raw.is_none() {
            headers::strip_hop_by_hop(&mut parts.headers);
        }
        // Count the request in flight until its body has been read.
        let body = body.map_frame(move |f| {
            let _ = &in_flight;
            f
        });
        (Response::from_parts(parts, body.boxed()), raw)
    }
}

/// The target with the route's prefix stripped, when the route strips one (`normalize`
/// made it origin-form already).
fn rewritten(uri: &Uri, route: &Route) -> Result<Option<Uri>, ProxyError> {
    if !route.strip_prefix || route.path_prefix == "/" {
        return Ok(None);
    }
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    routes::rewrite_path(&route.path_prefix, true, path)
        .parse::<Uri>()
        .map(Some)
        .map_err(|_| ProxyError::BadRequest("unparsable path"))
}
