//! HTTPS: certificates chosen by SNI from PEM files (made here with rcgen), HTTP/2 by ALPN,
//! reload when the files change, and SNI passthrough to a backend that terminates TLS itself.
mod common;

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
