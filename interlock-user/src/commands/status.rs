//! `interlock status`: asks a running agent's admin address for `/status` and prints its
//! routes, backends and L4 counters as tables (or the JSON with `--json`).
use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::agent::status::Status;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The agent's admin address.
    #[arg(long, default_value = "127.0.0.1:9090", env = "INTERLOCK_ADMIN")]
    pub admin: SocketAddr,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: StatusArgs) -> Result<()> {
    let body = fetch(args.admin).await?;
    if args.json {
        println!("{body}");
        return Ok(());
    }
    let status: Status =
        serde_json::from_str(&body).with_context(|| format!("the agent at {} sent no status", args.admin))?;
    print!("{}", status.to_table());
    Ok(())
}

async fn fetch(admin: SocketAddr) -> Result<String> {
    let stream = tokio::net::TcpStream::connect(admin)
        .await
        .with_context(|| format!("no agent answers on {admin} (is `interlock run` running, with --admin there?)"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get("/status")
        .header(hyper::header::HOST, admin.to_string())
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await.context("asking for /status")?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!(
            "{admin}/status answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}
