//! TLS for the tests: self-signed certificates as Docker secrets, and a client connector.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub struct Cert {
    pub der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn make_cert(host: &str) -> Cert {
    make_cert_for(&[host])
}

/// One certificate for several names.
pub fn make_cert_for(hosts: &[&str]) -> Cert {
    let c = rcgen::generate_simple_self_signed(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>()).unwrap();
    Cert {
        der: c.cert.der().clone(),
        cert_pem: c.cert.pem(),
        key_pem: c.key_pair.serialize_pem(),
    }
}

/// Writes a cert and key as "Docker secrets" in a temp dir; returns their paths.
pub fn write_secret(dir: &Path, name: &str, cert: &Cert) -> (PathBuf, PathBuf) {
    let (c, k) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&c, &cert.cert_pem).unwrap();
    std::fs::write(&k, &cert.key_pem).unwrap();
    (c, k)
}

/// A client trusting `trusted` and offering `alpn`.
pub fn connector(trusted: &[&Cert], alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in trusted {
        roots.add(c.der.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// A TLS connection to `addr`, asking for `host` by SNI.
pub async fn tls_connect(
    addr: SocketAddr,
    host: &str,
    tls: &TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tls.connect(ServerName::try_from(host.to_string()).unwrap(), tcp).await
}
