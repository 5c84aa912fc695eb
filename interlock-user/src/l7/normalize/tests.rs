use super::*;

/// The step for an untrusted peer.
fn request_<B>(req: &mut Request<B>) -> Result<Normalized, ProxyError> {
    request(req, false)
}

fn req(version: Version, method: &str, target: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::builder().version(version).method(method).uri(target);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

fn h1(target: &str, headers: &[(&str, &str)]) -> Request<()> {
    req(Version::HTTP_11, "GET", target, headers)
}

fn refused(mut r: Request<()>) -> String {
    match request_(&mut r) {
        Err(e) => e.to_string(),
        Ok(n) => panic!("accepted: {n:?} {r:?}"),
    }
}

#[test]
fn a_plain_request_is_left_as_it_came() {
    let mut r = h1("/a?b=1", &[("host", "A.example:8080"), ("accept", "*/*")]);
    let n = request_(&mut r).unwrap();
    assert_eq!(n.authority, "A.example:8080");
    assert!(n.upgrade.is_none());
    assert_eq!(r.uri(), "/a?b=1");
    assert_eq!(r.headers().len(), 2);
}

#[test]
fn the_target_authority_replaces_host() {
    let mut r = h1("http://a.example/x?q", &[("host", "x\"><script>")]);
    let n = request_(&mut r).unwrap();
    assert_eq!(n.authority, "a.example");
    assert_eq!(r.uri(), "/x?q");
    assert_eq!(r.headers().get_all("host").iter().collect::<Vec<_>>(), ["a.example"]);
    // h2: :authority is routed and sent as Host; a host header naming another is refused.
    let mut r = req(Version::HTTP_2, "GET", "https://a.example/", &[]);
    assert_eq!(request_(&mut r).unwrap().authority, "a.example");
    assert_eq!(r.headers()["host"], "a.example");
    let mut r = req(Version::HTTP_2, "GET", "https://a.example/", &[("host", "A.EXAMPLE")]);
    assert!(request_(&mut r).is_ok());
    let r = req(
        Version::HTTP_2,
        "GET",
        "https://a.example/",
        &[("host", "admin.internal")],
    );
    assert!(refused(r).contains("other than :authority"));
}

#[test]
fn bad_targets_and_hosts_are_refused() {
    assert!(refused(h1("/", &[("host", "a.example:evil")])).contains("port"));
    assert!(refused(h1("/", &[])).contains("missing Host"));
    assert!(refused(h1("/", &[("host", "a"), ("host", "b")])).contains("several Host"));
    assert!(refused(h1("a.example:80", &[("host", "a.example")])).contains("authority-form"));
    assert!(refused(req(Version::HTTP_11, "OPTIONS", "*", &[("host", "a")])).contains("asterisk"));
    assert!(refused(h1("ftp://a.example/", &[("host", "a.example")])).contains("scheme"));
    assert!(refused(h1("http://user@a.example/", &[("host", "a.example")])).contains("Host"));
    let connect = req(Version::HTTP_11, "CONNECT", "a.example:443", &[("host", "a.example")]);
    let mut connect2 = req(Version::HTTP_11, "CONNECT", "a.example:443", &[("host", "a.example")]);
    assert!(matches!(request_(&mut connect2), Err(ProxyError::MethodNotAllowed(_))));
    assert!(refused(connect).contains("CONNECT"));
    // HTTP/1.0 may leave Host out, but the proxy routes by it.
    assert!(refused(req(Version::HTTP_10, "GET", "/", &[])).contains("missing Host"));
}

#[test]
fn framing_that_could_be_read_two_ways_is_refused() {
    let both = h1(
        "/",
        &[("host", "a"), ("content-length", "5"), ("transfer-encoding", "chunked")],
    );
    assert!(refused(both).contains("both"));
    let two = h1("/", &[("host", "a"), ("content-length", "5"), ("content-length", "6")]);
    assert!(refused(two).contains("several Content-Length"));
    for coding in ["gzip, chunked", "chunked, chunked", "identity"] {
        let mut r = h1("/", &[("host", "a"), ("transfer-encoding", coding)]);
        assert!(
            matches!(request_(&mut r), Err(ProxyError::NotImplemented(_))),
            "{coding}"
        );
    }
    let mut r = h1("/", &[("host", "a"), ("transfer-encoding", "Chunked")]);
    assert!(request_(&mut r).is_ok());
}

#[test]
fn paths_are_normalised_before_routing() {
    let mut r = h1("/ws/../other?x=/../", &[("host", "a")]);
    request_(&mut r).unwrap();
    assert_eq!(r.uri(), "/other?x=/../", "the query is left alone");
    let mut r = h1("http://a/%2e%2e//admin", &[("host", "a")]);
    request_(&mut r).unwrap();
    assert_eq!(r.uri(), "/admin");
    assert!(refused(h1("/a%2fb", &[("host", "a")])).contains("encoded"));
}

#[test]
fn only_websocket_upgrades_on_http11_gets() {
    let ws = [
        ("host", "a"),
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
    ];
    let mut r = h1("/ws", &ws);
    assert_eq!(request_(&mut r).unwrap().upgrade.unwrap(), "WebSocket");
    for (version, method, upgrade) in [
        (Version::HTTP_11, "GET", "h2c"),
        (Version::HTTP_11, "GET", "x-raw-tcp"),
        (Version::HTTP_11, "GET", "websocket, h2c"),
        (Version::HTTP_10, "GET", "websocket"),
        (Version::HTTP_11, "POST", "websocket"),
    ] {
        let mut r = req(
            version,
            method,
            "/ws",
            &[("host", "a"), ("connection", "upgrade"), ("upgrade", upgrade)],
        );
        assert!(
            request_(&mut r).unwrap().upgrade.is_none(),
            "{version:?} {method} {upgrade}"
        );
    }
    // No `upgrade` token in Connection: not an upgrade.
    let mut r = h1(
        "/ws",
        &[("host", "a"), ("connection", "keep-alive"), ("upgrade", "websocket")],
    );
    assert!(request_(&mut r).unwrap().upgrade.is_none());
}

#[test]
fn headers_the_proxy_sets_are_removed_from_the_clients_request() {
    let mut r = h1(
        "/",
        &[
            ("host", "a"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-host", "evil"),
            ("x-forwarded-proto", "https"),
            ("x-real-ip", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-request-id", "abc"),
            ("accept", "*/*"),
        ],
    );
    request_(&mut r).unwrap();
    let mut left: Vec<_> = r.headers().keys().map(|k| k.as_str()).collect();
    left.sort();
    assert_eq!(left, ["accept", "host"]);
}

#[test]
fn h2_fields_are_made_fit_for_http11() {
    let mut r = req(
        Version::HTTP_2,
        "GET",
        "https://a.example/",
        &[("cookie", "a=1"), ("accept", "*/*"), ("cookie", "b=2")],
    );
    request_(&mut r).unwrap();
    assert_eq!(r.headers().get_all("cookie").iter().collect::<Vec<_>>(), ["a=1; b=2"]);
    for value in [" a", "a\t"] {
        let r = req(Version::HTTP_2, "GET", "https://a.example/", &[("x-ws", value)]);
        assert!(refused(r).contains("whitespace"), "{value:?}");
    }
    // HTTP/1.1 values are trimmed by the parsers; several Cookie lines are the client's own.
    let mut r = h1("/", &[("host", "a"), ("cookie", "a=1"), ("cookie", "b=2")]);
    request_(&mut r).unwrap();
    assert_eq!(r.headers().get_all("cookie").iter().count(), 2);
}

#[test]
fn a_trusted_peers_forwarding_headers_are_kept_aside() {
    let mut r = h1(
        "/",
        &[
            ("host", "a"),
            ("x-forwarded-for", "203.0.113.5"),
            ("x-forwarded-for", "198.51.100.9"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=6.6.6.6"),
        ],
    );
    let relayed = request(&mut r, true).unwrap().relayed.unwrap();
    assert_eq!(relayed.xff.unwrap(), "203.0.113.5, 198.51.100.9");
    assert_eq!(relayed.proto.unwrap(), "https");
    assert!(relayed.host.is_none());
    assert_eq!(r.headers().len(), 1, "{:?}", r.headers());
    let mut r = h1("/", &[("host", "a"), ("x-forwarded-for", "203.0.113.5")]);
    assert!(request(&mut r, false).unwrap().relayed.is_none());
}
