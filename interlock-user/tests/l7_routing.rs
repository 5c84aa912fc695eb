//! The HTTP plane on real loopback sockets: routing by host and path, rewrites, redirects,
//! default backend, forwarding headers, stickiness, h2c, websockets, metrics.
mod common;

use std::collections::HashMap;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use interlock::model::{Redirect, Stickiness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn routes_by_host_then_longest_prefix_with_rewrite_and_headers() {
    let (web, app, api) = (
        TestBackend::start("web").await,
        TestBackend::start("app").await,
        TestBackend::start("api").await,
    );
    let mut rewritten = route("app", &["shop.example"], "/app", &[&app]);
    rewritten.strip_prefix = true;
    let snap = snapshot(
        1,
        vec![
            route("web", &["shop.example", "*.shop.example"], "/", &[&web]),
            rewritten,
            route("api", &["shop.example"], "/app/api", &[&api]),
        ],
    );
    let proxy = TestProxy::start(&snap).await;
    let c = client();

    let (status, headers, body) = get(&c, proxy.http, "Shop.Example:80", "/index.html").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(field(&body, "name"), "web");
    assert_eq!(field(&body, "xff"), "127.0.0.1");
    assert_eq!(field(&body, "proto"), "http");
    assert_eq!(
        field(&body, "host"),
        "Shop.Example:80",
        "the Host header reaches the backend unchanged"
    );
    assert_eq!(headers["x-upstream-addr"], web.addr.to_string());
    assert!(headers.contains_key("x-upstream-response-time"));
    assert_eq!(headers["x-request-id"].len(), 32);

    let (_, _, body) = get(&c, proxy.http, "shop.example", "/app/cart?id=1").await;
    assert_eq!(
        (field(&body, "name"), field(&body, "path")),
        ("app", "/cart?id=1"),
        "context_root_rewrite strips /app"
    );
    let (_, _, body) = get(&c, proxy.http, "shop.example", "/app").await;
    assert_eq!(field(&body, "path"), "/");
    let (_, _, body) = get(&c, proxy.http, "shop.example", "/app/api/v1").await;
    assert_eq!((field(&body, "name"), field(&body, "path")), ("api", "/app/api/v1"));
    let (_, _, body) = get(&c, proxy.http, "shop.example", "/apple").await;
    assert_eq!(field(&body, "name"), "web", "prefixes match whole segments");
    let (_, _, body) = get(&c, proxy.http, "eu.shop.example", "/").await;
    assert_eq!(field(&body, "name"), "web", "wildcard host");

    let (status, _, body) = get(&c, proxy.http, "nothing.example", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("no route"));

    // A spoofed X-Forwarded-For is replaced, not appended to.
    let req = Request::get(format!("http://{}/", proxy.http))
        .header("host", "shop.example")
        .header("x-forwarded-for", "6.6.6.6")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let body = c
        .request(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(field(&String::from_utf8_lossy(&body), "xff"), "127.0.0.1");
}

#[tokio::test]
async fn default_backend_redirects_and_ssl_only() {
    let (a, fallback) = (TestBackend::start("a").await, TestBackend::start("fallback").await);
    let mut r = route("a", &["a.example"], "/", &[&a]);
    r.redirects = vec![Redirect {
        source: "http://old.example".into(),
        target: "http://a.example".into(),
    }];
    let mut secure = route("secure", &["secure.example"], "/", &[&a]);
    secure.ssl_only = true;
    // Interlock's default backend: no hosts of its own.
    let mut dflt = route("fallback", &[], "/", &[&fallback]);
    dflt.default_backend = true;
    let routes = snapshot(1, vec![r, secure, dflt]);
    // The HTTPS listener as `interlock proxy --https 0.0.0.0:8443` would tell it.
    let proxy = TestProxy::start_configured(&routes, Default::default(), |p| p.with_https_port(Some(8443))).await;
    let c = client();

    // Redirects answer 302 (as Interlock's nginx), the normalised path and query kept.
    let (status, headers, _) = get(&c, proxy.http, "old.example", "/").await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers["location"], "http://a.example/");
    let (status, headers, _) = get(&c, proxy.http, "Old.Example:80", "/x/./y/../z?q=1&r").await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers["location"], "http://a.example/x/z?q=1&r");
    // ssl_only stays 301 and names the HTTPS port when it is not 443.
    let (status, headers, _) = get(&c, proxy.http, "secure.example", "/x?y=1").await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(headers["location"], "https://secure.example:8443/x?y=1");
    let (_, _, body) = get(&c, proxy.http, "unknown.example", "/").await;
    assert_eq!(field(&body, "name"), "fallback");
    let (_, _, body) = get(&c, proxy.http, "a.example", "/").await;
    assert_eq!(field(&body, "name"), "a", "a claimed host is not the default's");
}

#[tokio::test]
async fn sticky_cookie_and_ip_hash_pin_requests_and_p2c_spreads_the_rest() {
    let backends = [
        TestBackend::start("b0").await,
        TestBackend::start("b1").await,
        TestBackend::start("b2").await,
    ];
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let mut sticky = route("sticky", &["sticky.example"], "/", &refs);
    sticky.stickiness = Stickiness::Cookie("SESSION".into());
    let mut iphash = route("iphash", &["ip.example"], "/", &refs);
    iphash.stickiness = Stickiness::ClientIp;
    let plain = route("plain", &["plain.example"], "/", &refs);
    let proxy = TestProxy::start(&snapshot(1, vec![sticky, iphash, plain])).await;
    let c = client();

    for session in ["alpha", "beta", "gamma"] {
        let mut names = Vec::new();
        for _ in 0..10 {
            let req = Request::get(format!("http://{}/", proxy.http))
                .header("host", "sticky.example")
                .header("cookie", format!("other=1; SESSION={session}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let body = c
                .request(req)
                .await
                .unwrap()
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes();
            names.push(field(&String::from_utf8_lossy(&body), "name").to_string());
        }
        assert!(
            names.iter().all(|n| *n == names[0]),
            "session {session} sticks: {names:?}"
        );
    }
    let mut ip_names = Vec::new();
    for _ in 0..10 {
        ip_names.push(field(&get(&c, proxy.http, "ip.example", "/").await.2, "name").to_string());
    }
    assert!(
        ip_names.iter().all(|n| *n == ip_names[0]),
        "one client IP, one backend: {ip_names:?}"
    );

    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        *counts
            .entry(field(&get(&c, proxy.http, "plain.example", "/").await.2, "name").to_string())
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(
        counts.values().all(|n| *n >= 50),
        "spread over all backends: {counts:?}"
    );
}

#[tokio::test]
async fn h2c_prior_knowledge_and_streamed_post_bodies() {
    let b = TestBackend::start("b").await;
    let proxy = TestProxy::start(&snapshot(1, vec![route("b", &["h2.example"], "/", &[&b])])).await;
    // HTTP/2 with prior knowledge on the plain port; the host travels in :authority.
    let tcp = tokio::net::TcpStream::connect(proxy.http).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://h2.example/path")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    let body = String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned();
    assert_eq!(field(&body, "name"), "b");

    let big = Bytes::from(vec![b'x'; 4 << 20]);
    let req = Request::post(format!("http://{}/upload", proxy.http))
        .header("host", "h2.example")
        .body(Full::new(big.clone()))
        .unwrap();
    let echoed = client()
        .request(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(echoed.len(), big.len(), "a 4 MiB body crosses intact");
}

#[tokio::test]
async fn websocket_upgrade_is_spliced_both_ways() {
    let b = TestBackend::start("ws").await;
    let mut r = route("ws", &["ws.example"], "/", &[&b]);
    r.websocket_endpoints = vec!["/ws".into()];
    let proxy = TestProxy::start(&snapshot(1, vec![r])).await;
    let mut s = tokio::net::TcpStream::connect(proxy.http).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: ws.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"));
    for msg in [&b"hello"[..], b"second frame", &[0u8, 255, 1, 2]] {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg);
    }
    // Upgrades outside the websocket endpoints are refused.
    let mut s = tokio::net::TcpStream::connect(proxy.http).await.unwrap();
    s.write_all(b"GET /other HTTP/1.1\r\nHost: ws.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 400");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let b = TestBackend::start("m").await;
    // A backend named sick* answers /health with 503: a routed request with another status.
    let sick = TestBackend::start("sick-m").await;
    let proxy = TestProxy::start(&snapshot(
        1,
        vec![
            route("metered", &["m.example"], "/", &[&b]),
            route("sickly", &["s.example"], "/", &[&sick]),
        ],
    ))
    .await;
    let c = client();
    for _ in 0..3 {
        get(&c, proxy.http, "m.example", "/").await;
    }
    get(&c, proxy.http, "none.example", "/").await;
    get(&c, proxy.http, "s.example", "/health").await;
    let mut out = String::new();
    let mut registry = prometheus_client::registry::Registry::default();
    // The proxy's own registry is private to the test proxy; encode its metric families.
    registry.register("t_requests", "requests", proxy.proxy.metrics.requests.clone());
    registry.register("t_latency", "latency", proxy.proxy.metrics.latency.clone());
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    for expected in [
        "t_requests_total{route=\"metered\",status=\"200\"} 3",
        "t_requests_total{route=\"-\",status=\"404\"} 1",
        "t_requests_total{route=\"sickly\",status=\"503\"} 1",
        "t_latency_count{route=\"metered\"} 3",
        "t_latency_count{route=\"sickly\"} 1",
        "t_latency_count{route=\"-\"} 1",
    ] {
        assert!(out.contains(expected), "{expected} missing in\n{out}");
    }
}
