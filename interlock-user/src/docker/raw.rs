//! Plain GET requests to the engine API for what bollard's models leave out: bollard 0.21's
//! `Task` has no `NetworksAttachments`, which hold the task addresses we route to.
//! Written by hand on purpose: one GET over the same unix socket, TCP or TLS endpoint bollard
//! uses (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH as the docker CLI reads them).
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};

/// Where the engine listens, from DOCKER_HOST (default: the local unix socket).
#[derive(Clone)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
    /// TCP with mutual TLS: address, server name, client config (CA, client cert and key).
    Tls(
        String,
        rustls::pki_types::ServerName<'static>,
        Arc<rustls::ClientConfig>,
    ),
}

impl Endpoint {
    pub fn from_env() -> Result<Endpoint> {
        let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let tls_verify = std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty() && v != "0");
        let cert_path = std::env::var_os("DOCKER_CERT_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".docker")
            });
        Endpoint::new(&host, tls_verify, &cert_path)
    }

    /// `host` as in DOCKER_HOST; with `tls`, `cert_dir` holds ca.pem, cert.pem and key.pem.
    pub fn new(host: &str, tls: bool, cert_dir: &Path) -> Result<Endpoint> {
        if let Some(path) = host.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(path.into()));
        }
        let tcp = host.strip_prefix("tcp://").or_else(|| host.strip_prefix("https://"));
        let Some(addr) = tcp.map(|a| a.trim_end_matches('/').to_string()) else {
            bail!("DOCKER_HOST={host:?}: expected unix:///path, tcp://host:port or https://host:port");
        };
        if !tls && !host.starts_with("https://") {
            return Ok(Endpoint::Tcp(addr));
        }
        let name = addr
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&addr)
            .trim_matches(['[', ']'])
            .to_string();
        let server_name = rustls::pki_types::ServerName::try_from(name.clone())
            .with_context(|| format!("DOCKER_HOST={host:?}: {name:?} is not a valid TLS server name"))?;
        Ok(Endpoint::Tls(addr, server_name, Arc::new(tls_config(cert_dir)?)))
    }
}

/// The docker CLI's layout: `ca.pem` (engine CA), `cert.pem` + `key.pem` (client identity).
fn tls_config(dir: &Path) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |name: &str| dir.join(name);
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(read("ca.pem"))
        .with_context(|| format!("reading {}", read("ca.pem").display()))?
    {
        roots
            .add(ca.context("parsing ca.pem")?)
            .context("adding the engine CA")?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(read("cert.pem"))
        .with_context(|| format!("reading {}", read("cert.pem").display()))?
        .collect::<Result<_, _>>()
        .context("parsing cert.pem")?;
    let key = PrivateKeyDer::from_pem_file(read("key.pem"))
        .with_context(|| format!("reading {}", read("key.pem").display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .context("the client certificate and key do not match")
}

/// GETs `path` (with query) under API version `version` (e.g. "1.41") and decodes the JSON.
pub async fn get_json<T: DeserializeOwned>(endpoint: &Endpoint, version: &str, path: &str) -> Result<T> {
    let uri = format!("/v{version}{path}");
    let body = match endpoint {
        Endpoint::Unix(socket) => {
            let stream = tokio::net::UnixStream::connect(socket)
                .await
                .with_context(|| format!("connecting to the Docker socket {}", socket.display()))?;
            get(stream, &uri).await?
        }
        Endpoint::Tcp(addr) => {
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .with_context(|| format!("connecting to Docker at {addr}"))?;
            get(stream, &uri).await?
        }
        Endpoint::Tls(addr, name, config) => {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .with_context(|| format!("connecting to Docker at {addr}"))?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name.clone(), tcp)
                .await
                .with_context(|| format!("TLS handshake with Docker at {addr}"))?;
            get(tls, &uri).await?
        }
    };
    serde_json::from_slice(&body).with_context(|| format!("decoding the engine's answer to GET {uri}"))
}

async fn get<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S, uri: &str) -> Result<Bytes> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get(uri)
        .header(hyper::header::HOST, "docker")
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await.with_context(|| format!("GET {uri}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("GET {uri}: {status}: {}", String::from_utf8_lossy(&body).trim());
    }
    Ok(body)
}
