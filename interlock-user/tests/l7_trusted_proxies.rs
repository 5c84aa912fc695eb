//! `--trusted-proxies`: a balancer in front whose PROXY header (v1, v2) names the client and
//! whose X-Forwarded-* are extended, not replaced; anybody else's are replaced, and a PROXY
//! header from an untrusted peer is just a bad request. Real sockets on loopback, a backend
//! recording exactly what it got.
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::recording::{RawClient, RecordingBackend, Reply};
use common::{snapshot, TestProxy};
use interlock::l7::front::trust::TrustedProxies;
use interlock::l7::limits::Limits;
use interlock::model::{Backend, HttpRoute, ServiceRef};

const WAIT: Duration = Duration::from_secs(3);

async fn proxy_trusting(trusted: &[&str], backend: &RecordingBackend) -> TestProxy {
    let route = HttpRoute::plain(
        ServiceRef {
            id: "app".into(),
            name: "app".into(),
        },
        vec!["app.test".into()],
        "/",
        vec![Backend {
            addr: backend.addr,
            weight: 1,
            id: "app".into(),
        }],
    );
    let limits = Limits {
        trusted_proxies: Arc::new(TrustedProxies::parse(trusted).unwrap()),
        ..Limits::default()
    };
    TestProxy::start_with(&snapshot(1, vec![route]), limits).await
}

/// Sends `bytes` on a new connection; the status, and the request the backend got.
async fn exchange(
    proxy: &TestProxy,
    backend: &RecordingBackend,
    bytes: &[u8],
) -> (u16, Option<common::recording::Recorded>) {
    backend.clear();
    let mut c = RawClient::connect(proxy.http).await;
    c.send(bytes).await;
    let status = c.response(false, WAIT).await.map_or(0, |r| r.status);
    (status, backend.requests().pop())
}

const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 203.0.113.5\r\n\
    X-Forwarded-Proto: https\r\nX-Real-IP: 6.6.6.6\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn an_untrusted_peers_forwarding_headers_are_replaced_and_its_proxy_header_refused() {
    let backend = RecordingBackend::start(Reply::default()).await;
    let proxy = proxy_trusting(&["192.0.2.0/24"], &backend).await;
    let (status, seen) = exchange(&proxy, &backend, GET).await;
    assert_eq!(status, 200);
    let seen = seen.unwrap();
    assert_eq!(seen.headers("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.headers("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(seen.headers("x-forwarded-proto"), ["http"]);
    assert_eq!(seen.headers("x-forwarded-port"), [proxy.http.port().to_string()]);
    let spoofed = [&b"PROXY TCP4 203.0.113.9 10.0.0.2 51000 80\r\n"[..], GET].concat();
    let (status, seen) = exchange(&proxy, &backend, &spoofed).await;
    assert_eq!(status, 400, "a PROXY header from an untrusted peer is not a request");
    assert!(seen.is_none());
}

#[tokio::test]
async fn a_trusted_peers_chain_is_extended_and_its_proto_kept() {
    let backend = RecordingBackend::start(Reply::default()).await;
    let proxy = proxy_trusting(&["127.0.0.0/8"], &backend).await;
    let (status, seen) = exchange(&proxy, &backend, GET).await;
    assert_eq!(status, 200);
    let seen = seen.unwrap();
    assert_eq!(seen.headers("x-forwarded-for"), ["203.0.113.5, 127.0.0.1"]);
    assert_eq!(
        seen.headers("x-real-ip"),
        ["6.6.6.6"],
        "the trusted proxy's own X-Real-IP"
    );
    assert_eq!(seen.headers("x-forwarded-proto"), ["https"]);
    // Without its X-Real-IP: the last address of its chain, the one it saw.
    let get =
        b"GET /x HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 10.9.9.9, 203.0.113.5\r\nConnection: close\r\n\r\n";
    let (_, seen) = exchange(&proxy, &backend, get).await;
    assert_eq!(seen.unwrap().headers("x-real-ip"), ["203.0.113.5"]);
}

#[tokio::test]
async fn a_trusted_balancers_proxy_header_names_the_client_v1_and_v2() {
    let backend = RecordingBackend::start(Reply::default()).await;
    let proxy = proxy_trusting(&["127.0.0.1"], &backend).await;
    let v1 = [&b"PROXY TCP4 203.0.113.9 10.0.0.2 51000 8443\r\n"[..], GET].concat();
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[198, 51, 100, 7, 10, 0, 0, 2]);
    v2.extend_from_slice(&40000u16.to_be_bytes());
    v2.extend_from_slice(&443u16.to_be_bytes());
    v2.extend_from_slice(GET);
    for (bytes, client, port) in [(v1, "203.0.113.9", "8443"), (v2, "198.51.100.7", "443")] {
        let (status, seen) = exchange(&proxy, &backend, &bytes).await;
        assert_eq!(status, 200, "{client}");
        let seen = seen.unwrap();
        // The balancer's client is not trusted: its own headers are replaced.
        assert_eq!(seen.headers("x-forwarded-for"), [client]);
        assert_eq!(seen.headers("x-real-ip"), [client]);
        assert_eq!(seen.headers("x-forwarded-proto"), ["http"]);
        assert_eq!(seen.headers("x-forwarded-port"), [port]);
    }
    // The header may come in pieces, as TCP delivers it; the request after it is intact.
    backend.clear();
    let mut c = RawClient::connect(proxy.http).await;
    c.send(b"PROXY TCP4 203.0.113.9 ").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(&[&b"10.0.0.2 51000 80\r\n"[..], GET].concat()).await;
    assert_eq!(c.response(false, WAIT).await.map(|r| r.status), Some(200));
    assert_eq!(backend.requests().pop().unwrap().headers("x-real-ip"), ["203.0.113.9"]);
    // A malformed header from a trusted peer closes the connection, nothing forwarded.
    let (status, seen) = exchange(&proxy, &backend, b"PROXY TCP4 nonsense\r\nGET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, 0);
    assert!(seen.is_none());
}
