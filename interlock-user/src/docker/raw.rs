//! Plain GET requests to the engine API for what bollard's models leave out: bollard 0.21's
//! `Task` has no `NetworksAttachments`, which hold the task addresses we route to.
//! One GET (`crate::http_get`) over the same unix socket, TCP or TLS endpoint bollard uses
//! (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH as the docker CLI reads them).
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;

use crate::http_get;

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

/// How long one read may take: bollard's own request timeout, so the raw read gives up when
/// the typed ones beside it would.
const TIMEOUT: Duration = Duration::from_secs(120);
/// The task list of a large swarm is tens of MiB; a body past this is not an engine's.
const MAX_BODY: usize = 256 << 20;

/// GETs `path` (with query) under API version `version` (e.g. "1.41") and decodes the JSON.
pub async fn get_json<T: DeserializeOwned>(endpoint: &Endpoint, version: &str, path: &str) -> Result<T> {
    let uri = format!("/v{version}{path}");
    let get = http_get::Get {
        host: "docker",
        path: &uri,
        timeout: TIMEOUT,
        max_body: MAX_BODY,
    };
    let answer = match endpoint {
        Endpoint::Unix(socket) => {
            let connect = async {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .with_context(|| format!("connecting to the Docker socket {}", socket.display()))
            };
            http_get::get(connect, get).await
        }
        Endpoint::Tcp(addr) => http_get::get(tcp(addr), get).await,
        Endpoint::Tls(addr, name, config) => {
            let connect = async {
                let tcp = tcp(addr).await?;
                tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .with_context(|| format!("TLS handshake with Docker at {addr}"))
            };
            http_get::get(connect, get).await
        }
    }
    .with_context(|| format!("GET {uri}"))?;
    if !answer.status.is_success() {
        bail!(
            "GET {uri}: {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body).trim()
        );
    }
    serde_json::from_slice(&answer.body).with_context(|| format!("decoding the engine's answer to GET {uri}"))
}

async fn tcp(addr: &str) -> Result<tokio::net::TcpStream> {
    tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to Docker at {addr}"))
}
