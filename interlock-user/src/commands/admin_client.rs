//! A `GET` to a running agent's admin address, for the commands that ask it
//! (`interlock status`, `interlock ready`), over `interlock::http_get`.
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper::StatusCode;

use interlock::http_get;

/// An agent's `/status` lists every route and backend: generous, but bounded.
const MAX_BODY: usize = 64 << 20;

/// `GET path` on `admin` within `timeout` (connecting included): the status code and the body.
pub async fn get(admin: SocketAddr, path: &str, timeout: Duration) -> Result<(StatusCode, String)> {
    let connect = async {
        tokio::net::TcpStream::connect(admin)
            .await
            .with_context(|| format!("no agent answers on {admin} (is `interlock run` running, with --admin there?)"))
    };
    let host = admin.to_string();
    let get = http_get::Get {
        host: &host,
        path,
        timeout,
        max_body: MAX_BODY,
    };
    let answer = http_get::get(connect, get).await.map_err(|e| match e {
        // Its own message already says where and why.
        http_get::Error::Connect(e) => e,
        e => anyhow::Error::new(e).context(format!("asking {admin} for {path}")),
    })?;
    Ok((answer.status, String::from_utf8_lossy(&answer.body).into_owned()))
}
