//! Plain GET requests to the engine API for what bollard's models leave out: bollard 0.21's
//! `Task` has no `NetworksAttachments`, which hold the task addresses we route to.
//! Written by hand on purpose: one GET over the same unix socket or TCP address bollard uses.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};

/// Where the engine listens, from DOCKER_HOST (default: the local unix socket).
#[derive(Debug, Clone)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl Endpoint {
    pub fn from_env() -> Result<Endpoint> {
        let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        if let Some(path) = host.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(path.into()));
        }
        if let Some(addr) = host.strip_prefix("tcp://") {
            if std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty() && v != "0") {
                bail!("DOCKER_HOST={host} with DOCKER_TLS_VERIFY: TLS to the engine is not supported yet; use the unix socket");
            }
            return Ok(Endpoint::Tcp(addr.trim_end_matches('/').into()));
        }
        bail!("DOCKER_HOST={host:?}: expected unix:///path or tcp://host:port")
    }
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
