//! HTTPS: certificates chosen by SNI from PEM files (made here with rcgen), HTTP/2 by ALPN,
//! reload when the files change, and SNI passthrough to a backend that terminates TLS itself.
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::tls::*;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use interlock::model::TlsMode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// One HTTPS GET through `addr` with SNI `host`, over HTTP/1.1 or h2 as ALPN decides.
async fn https_get(
    addr: std::net::SocketAddr,
    host: &str,
    tls: &TlsConnector,
) -> Result<(hyper::Version, String), String> {
    let stream = tls_connect(addr, host, tls).await.map_err(|e| e.to_string())?;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let req = Request::get(format!("https://{host}/secure"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = if h2 {
        let (mut s, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        s.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        s.send_request(req).await.map_err(|e| e.to_string())?
    };
    let version = resp.version();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((version, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn certificates_by_sni_h2_by_alpn_and_reload_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, b_cert) = (make_cert("a.example"), make_cert("b.example"));
    let (a_crt, a_key) = write_secret(dir.path(), "a", &a_cert);
    let (b_crt, b_key) = write_secret(dir.path(), "b", &b_cert);
    let (ba, bb) = (
        TestBackend::start("backend-a").await,
        TestBackend::start("backend-b").await,
    );
    let mut ra = route("a", &["a.example"], "/", &[&ba]);
    ra.tls = TlsMode::Terminate {
        cert: a_crt.clone(),
        key: a_key.clone(),
    };
    let mut rb = route("b", &["b.example"], "/", &[&bb]);
    rb.tls = TlsMode::Terminate {
        cert: b_crt,
        key: b_key,
    };
    let proxy = TestProxy::start(&snapshot(1, vec![ra, rb])).await;

    let h1 = connector(&[&a_cert, &b_cert], &[b"http/1.1"]);
    let (v, body) = https_get(proxy.https, "a.example", &h1).await.unwrap();
    assert_eq!(
        (v, field(&body, "name"), field(&body, "proto")),
        (hyper::Version::HTTP_11, "backend-a", "https")
    );
    let h2 = connector(&[&a_cert, &b_cert], &[b"h2", b"http/1.1"]);
    let (v, body) = https_get(proxy.https, "b.example", &h2).await.unwrap();
    assert_eq!(
        (v, field(&body, "name")),
        (hyper::Version::HTTP_2, "backend-b"),
        "SNI picks b's certificate; ALPN h2"
    );

    // Only a's certificate trusted: connecting as b must fail verification.
    let only_a = connector(&[&a_cert], &[b"http/1.1"]);
    assert!(https_get(proxy.https, "b.example", &only_a).await.is_err());

    // The secret is rotated: the new certificate is served without a restart.
    let a_new = make_cert("a.example");
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&a_crt, &a_new.cert_pem).unwrap();
    std::fs::write(&a_key, &a_new.key_pem).unwrap();
    proxy.tls.reload_if_changed();
    let trusts_new = connector(&[&a_new], &[b"http/1.1"]);
    let (_, body) = https_get(proxy.https, "a.example", &trusts_new).await.unwrap();
    assert_eq!(field(&body, "name"), "backend-a");
    assert!(
        https_get(proxy.https, "a.example", &only_a).await.is_err(),
        "the old certificate is gone"
    );
}

#[tokio::test]
async fn passthrough_splices_tls_to_the_backend_untouched() {
    // The backend terminates TLS itself with a certificate the proxy never sees.
    let cert = make_cert("pass.example");
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 5];
                if tls.read_exact(&mut buf).await.is_ok() {
                    let _ = tls.write_all(b"backend terminated TLS: ").await;
                    let _ = tls.write_all(&buf).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    let mut r = route("pass", &["pass.example"], "/", &[]);
    r.tls = TlsMode::Passthrough;
    r.backends = vec![interlock::model::Backend {
        addr: backend_addr,
        weight: 1,
        id: "tls-backend".into(),
    }];
    let proxy = TestProxy::start(&snapshot(1, vec![r])).await;

    let tls = connector(&[&cert], &[]);
    let tcp = TcpStream::connect(proxy.https).await.unwrap();
    let mut stream = tls
        .connect(ServerName::try_from("pass.example").unwrap(), tcp)
        .await
        .expect("the backend's certificate verifies");
    stream.write_all(b"hello").await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "backend terminated TLS: hello");
}

/// An HTTP/1.1 connection over TLS to `addr` as `host`; the task ends when the connection does.
async fn h1_over_tls(
    addr: std::net::SocketAddr,
    host: &str,
    tls: &TlsConnector,
) -> (
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let stream = tls_connect(addr, host, tls).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    (send, tokio::spawn(conn))
}

#[tokio::test]
async fn at_shutdown_idle_tls_connections_get_a_last_answer_or_close_without_holding_the_drain() {
    // hyper serves these connections (the lean loop serves only plain ones).
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert("a.example");
    let (crt, key) = write_secret(dir.path(), "a", &cert);
    let backend = TestBackend::start("backend-a").await;
    let mut r = route("a", &["a.example"], "/", &[&backend]);
    r.tls = TlsMode::Terminate { cert: crt, key };
    let mut proxy = TestProxy::start(&snapshot(1, vec![r])).await;
    let h1 = connector(&[&cert], &[b"http/1.1"]);
    let get = || {
        Request::get("https://a.example/")
            .header("host", "a.example")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let (mut used, _used_conn) = h1_over_tls(proxy.https, "a.example", &h1).await;
    let (mut idle, idle_conn) = h1_over_tls(proxy.https, "a.example", &h1).await;
    for s in [&mut used, &mut idle] {
        let first = s.send_request(get()).await.unwrap();
        assert_eq!(first.status(), 200);
        first.into_body().collect().await.unwrap();
    }
    proxy.shutdown();
    // A client sending its next request just after the shutdown is answered, and told
    // the connection ends, instead of having its request cut off.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let last = used
        .send_request(get())
        .await
        .expect("a request sent just after the shutdown is answered");
    assert_eq!(last.status(), 200);
    assert_eq!(
        last.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    // A connection left idle is closed after a second, well within the grace period.
    tokio::time::timeout(Duration::from_secs(3), idle_conn)
        .await
        .expect("the idle connection was closed")
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(3), proxy.serving.take().unwrap())
        .await
        .expect("drained well within the grace period")
        .unwrap();
}

/// A terminated TLS route for `host` (its certificate in `dir`) to `backend`.
fn tls_route(dir: &Path, host: &str, backend: &TestBackend) -> (Cert, interlock::model::HttpRoute) {
    let cert = make_cert(host);
    let (crt, key) = write_secret(dir, host, &cert);
    let mut r = route(host, &[host], "/", &[backend]);
    r.tls = TlsMode::Terminate { cert: crt, key };
    (cert, r)
}

/// HTTP/2 frames in `bytes` as (type, payload); stops at a truncated frame.
fn h2_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 9 {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        if bytes.len() < 9 + len {
            break;
        }
        frames.push((bytes[3], bytes[9..9 + len].to_vec()));
        bytes = &bytes[9 + len..];
    }
    frames
}

#[tokio::test]
async fn an_invalid_preface_after_alpn_h2_is_answered_with_goaway_not_http1() {
    let dir = tempfile::tempdir().unwrap();
    let backend = TestBackend::start("backend-a").await;
    let (cert, r) = tls_route(dir.path(), "a.example", &backend);
    let proxy = TestProxy::start(&snapshot(1, vec![r])).await;
    let h2 = connector(&[&cert], &[b"h2"]);
    let mut stream = tls_connect(proxy.https, "a.example", &h2).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // h2spec 3.5/2.
    stream.write_all(b"INVALID CONNECTION PREFACE\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut out)).await;
    assert!(
        !out.starts_with(b"HTTP/"),
        "an HTTP/1 answer on an h2 connection: {:.60}",
        String::from_utf8_lossy(&out)
    );
    let goaway = h2_frames(&out).into_iter().find(|(kind, _)| *kind == 0x7);
    let (_, payload) = goaway.unwrap_or_else(|| panic!("no GOAWAY in {out:?}"));
    assert_eq!(&payload[4..8], &[0, 0, 0, 1], "PROTOCOL_ERROR");
}

#[tokio::test]
async fn a_long_request_line_over_tls_is_431() {
    let dir = tempfile::tempdir().unwrap();
    let backend = TestBackend::start("backend-a").await;
    let (cert, r) = tls_route(dir.path(), "a.example", &backend);
    let proxy = TestProxy::start(&snapshot(1, vec![r])).await;
    let long = format!("GET /{} HTTP/1.1\r\nHost: a.example\r\n\r\n", "a".repeat(64 * 1024));
    // ALPN http/1.1, and none (the server tells HTTP/1 from h2 by the first bytes).
    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let tls = connector(&[&cert], alpn);
        let mut stream = tls_connect(proxy.https, "a.example", &tls).await.unwrap();
        let _ = stream.write_all(long.as_bytes()).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 431"), "ALPN {alpn:?}: {text:.60}");
    }
}

#[tokio::test]
async fn at_shutdown_idle_h2_connections_get_goaway_without_holding_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let backend = TestBackend::start("backend-a").await;
    let (cert, r) = tls_route(dir.path(), "a.example", &backend);
    let mut proxy = TestProxy::start(&snapshot(1, vec![r])).await;
    let h2 = connector(&[&cert], &[b"h2"]);
    let tls = tls_connect(proxy.https, "a.example", &h2).await.unwrap();
    let plain = TcpStream::connect(proxy.http).await.unwrap();
    let mut conns = Vec::new();
    // ALPN h2 on TLS, h2c with prior knowledge on the plain listener.
    for io in [Box::new(tls) as Box<dyn Io>, Box::new(plain)] {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(io))
                .await
                .unwrap();
        let conn = tokio::spawn(conn);
        let req = Request::get("https://a.example/")
            .header("host", "a.example")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
        resp.into_body().collect().await.unwrap();
        conns.push((send, conn));
    }
    proxy.shutdown();
    for (_send, conn) in conns {
        tokio::time::timeout(Duration::from_secs(3), conn)
            .await
            .expect("the server ended the idle h2 connection")
            .unwrap()
            .unwrap();
    }
    tokio::time::timeout(Duration::from_secs(3), proxy.serving.take().unwrap())
        .await
        .expect("drained well within the grace period")
        .unwrap();
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// A client speaking only `versions`, offering only `suites` (all when empty).
fn limited_connector(
    trusted: &Cert,
    versions: &[&'static rustls::SupportedProtocolVersion],
    suites: &[&str],
) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.der.clone()).unwrap();
    let mut provider = rustls::crypto::ring::default_provider();
    if !suites.is_empty() {
        provider
            .cipher_suites
            .retain(|s| suites.contains(&format!("{:?}", s.suite()).as_str()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn the_minimum_tls_version_and_the_cipher_suites_are_the_operators() {
    use interlock::l7::front::server::{self, Listener};
    use interlock::l7::front::tls::{TlsFront, TlsMinVersion, TlsPolicy};
    use rustls::version::{TLS12, TLS13};
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert("s.example");
    let (crt, key) = write_secret(dir.path(), "s", &cert);
    let app = TestBackend::start("app").await;
    let mut r = route("s", &["s.example"], "/", &[&app]);
    r.tls = TlsMode::Terminate { cert: crt, key };
    let snap = snapshot(1, vec![r]);
    // The default front (TLS 1.2 and up, every suite) takes a TLS 1.2 client.
    let proxy = TestProxy::start(&snap).await;
    let tls12 = limited_connector(&cert, &[&TLS12], &[]);
    let s = tls_connect(proxy.https, "s.example", &tls12)
        .await
        .expect("TLS 1.2 by default");
    assert_eq!(s.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));

    // TLS 1.3 only, one suite.
    let policy = TlsPolicy {
        min_version: TlsMinVersion::Tls13,
        ciphers: vec!["TLS13_CHACHA20_POLY1305_SHA256".into()],
    };
    let front = Arc::new(TlsFront::with_policy(&policy).unwrap());
    front.apply(&snap);
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(server::serve(
        vec![Listener { tcp, tls: Some(front) }],
        proxy.proxy.clone(),
        interlock::l7::limits::Limits::default(),
        stop_rx,
    ));
    assert!(
        tls_connect(addr, "s.example", &tls12).await.is_err(),
        "a TLS 1.2 client is refused when the minimum is 1.3"
    );
    let aes_only = limited_connector(&cert, &[&TLS13], &["TLS13_AES_128_GCM_SHA256"]);
    assert!(
        tls_connect(addr, "s.example", &aes_only).await.is_err(),
        "a client without the one allowed suite is refused"
    );
    let any13 = limited_connector(&cert, &[&TLS13, &TLS12], &[]);
    let (v, body) = https_get(addr, "s.example", &any13).await.unwrap();
    assert_eq!((v, field(&body, "name")), (hyper::Version::HTTP_11, "app"));
    let s = tls_connect(addr, "s.example", &any13).await.unwrap();
    let suite = s.get_ref().1.negotiated_cipher_suite().unwrap();
    assert_eq!(format!("{:?}", suite.suite()), "TLS13_CHACHA20_POLY1305_SHA256");

    // Names are checked: an unknown one is an error naming it and listing the known ones;
    // a minimum of 1.3 with TLS 1.2 suites only has nothing to negotiate.
    let bad = TlsPolicy {
        min_version: TlsMinVersion::Tls12,
        ciphers: vec!["TLS_RSA_WITH_RC4_128_MD5".into()],
    };
    let e = format!("{:#}", TlsFront::with_policy(&bad).err().unwrap());
    assert!(
        e.contains("TLS_RSA_WITH_RC4_128_MD5") && e.contains("TLS13_AES_256_GCM_SHA384"),
        "{e}"
    );
    let none13 = TlsPolicy {
        min_version: TlsMinVersion::Tls13,
        ciphers: vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()],
    };
    assert!(TlsFront::with_policy(&none13).is_err());
}

/// A default backend (hostless) serves unknown hosts over plain HTTP; over HTTPS an SNI no
/// route has a certificate for gets none (the handshake fails) rather than some other host's.
#[tokio::test]
async fn an_unknown_sni_gets_no_certificate_even_with_a_default_backend() {
    let dir = tempfile::tempdir().unwrap();
    let a_cert = make_cert("a.example");
    let (a_crt, a_key) = write_secret(dir.path(), "a", &a_cert);
    let (ba, fallback) = (
        TestBackend::start("backend-a").await,
        TestBackend::start("fallback").await,
    );
    let mut ra = route("a", &["a.example"], "/", &[&ba]);
    ra.tls = TlsMode::Terminate {
        cert: a_crt,
        key: a_key,
    };
    let mut dflt = route("fallback", &[], "/", &[&fallback]);
    dflt.default_backend = true;
    let proxy = TestProxy::start(&snapshot(1, vec![ra, dflt])).await;

    let trusts_a = connector(&[&a_cert], &[b"http/1.1"]);
    let (_, body) = https_get(proxy.https, "a.example", &trusts_a).await.unwrap();
    assert_eq!(field(&body, "name"), "backend-a");
    assert!(
        tls_connect(proxy.https, "unknown.example", &trusts_a).await.is_err(),
        "an unknown SNI is refused a certificate"
    );
    let (_, _, body) = get(&client(), proxy.http, "unknown.example", "/").await;
    assert_eq!(field(&body, "name"), "fallback", "plain HTTP: the default backend");
}
