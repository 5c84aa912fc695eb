//! A `GET` to a running agent's admin address, for the commands that ask it
//! (`interlock status`, `interlock ready`).
use std::net::SocketAddr;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;

/// `GET path` on `admin`: the status code and the body.
pub async fn get(admin: SocketAddr, path: &str) -> Result<(StatusCode, String)> {
    let stream = tokio::net::TcpStream::connect(admin)
        .await
        .with_context(|| format!("no agent answers on {admin} (is `interlock run` running, with --admin there?)"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, admin.to_string())
        .body(Empty::<Bytes>::new())?;
    let resp = sender
        .send_request(req)
        .await
        .with_context(|| format!("asking {admin} for {path}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
