//! The engine API over TCP with mutual TLS (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH): the raw task
//! read used by the control plane reaches a TLS engine endpoint with the docker CLI's cert layout,
//! and refuses an engine whose certificate the CA did not sign.
use std::sync::Arc;

use interlock::docker::raw::{get_json, Endpoint};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca_pem: ca.pem(),
        server: leaf(vec!["localhost".into()]),
        client: leaf(vec!["client".into()]),
    }
}

/// A fake engine endpoint that requires a client certificate signed by `pki`'s CA and answers
/// every request with `body`.
async fn engine(pki: &Pki, body: &'static str) -> std::net::SocketAddr {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(pki.server.0.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(pki.server.1.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && tls.read_exact(&mut byte).await.is_ok() {
                    head.push(byte[0]);
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: application/json\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

fn cert_dir(pki: &Pki, tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ilt-docker-tls-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.join("cert.pem"), &pki.client.0).unwrap();
    std::fs::write(dir.join("key.pem"), &pki.client.1).unwrap();
    dir
}

#[tokio::test]
async fn raw_reads_go_over_mutual_tls() {
    let pki = pki();
    let addr = engine(&pki, r#"[{"ID":"t1"}]"#).await;
    let dir = cert_dir(&pki, "ok");
    let endpoint = Endpoint::new(&format!("tcp://localhost:{}", addr.port()), true, &dir).unwrap();
    let tasks: Vec<serde_json::Value> = get_json(&endpoint, "1.41", "/tasks").await.unwrap();
    assert_eq!(tasks[0]["ID"], "t1");

    // An engine with a certificate from another CA is refused.
    let other = pki_other_ca(&pki);
    let endpoint = Endpoint::new(&format!("tcp://localhost:{}", addr.port()), true, &other).unwrap();
    let err = get_json::<serde_json::Value>(&endpoint, "1.41", "/tasks")
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("TLS handshake"), "{err:#}");

    // Missing client files are named.
    let err = Endpoint::new("tcp://localhost:2376", true, std::path::Path::new("/nonexistent"))
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("/nonexistent/ca.pem"), "{err:#}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other);
}

/// A cert dir whose ca.pem is a different CA (client identity unchanged).
fn pki_other_ca(pki: &Pki) -> std::path::PathBuf {
    let dir = cert_dir(pki, "other");
    std::fs::write(dir.join("ca.pem"), self::pki().ca_pem).unwrap();
    dir
}
