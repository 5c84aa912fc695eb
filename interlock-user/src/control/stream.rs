//! Leader -> follower snapshot stream over HTTP: `GET /snapshots` answers with one JSON
//! snapshot per line, the current one first, then each new version; `GET /snapshot` answers
//! with the current one. Followers apply them to their own watch channel and keep the last
//! good snapshot while the leader is unreachable.
//!
//! The channel is plain HTTP for now: bind it to an address only the proxies reach.
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::WatchStream;

use crate::model::{Snapshot, SnapshotRx, SnapshotTx};

/// A snapshot line longer than this is refused (a leader gone wrong must not exhaust memory).
const MAX_LINE: usize = 64 << 20;

/// Serves snapshots to followers until the listener fails.
pub async fn serve_snapshots(listener: TcpListener, rx: SnapshotRx) -> Result<()> {
    loop {
        let (stream, peer) = listener.accept().await.context("accepting a follower")?;
        let rx = rx.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, rx.clone()));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, "snapshot stream closed: {e}");
            }
        });
    }
}

async fn answer(req: Request<Incoming>, rx: SnapshotRx) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/snapshots") => {
            let lines = WatchStream::new(rx)
                .filter(|s| std::future::ready(s.version > 0))
                .map(|s| Ok::<_, Infallible>(Frame::data(Bytes::from(line(&s)))));
            Response::builder()
                .header("content-type", "application/x-ndjson")
                .body(BodyExt::boxed(StreamBody::new(lines)))
        }
        (&hyper::Method::GET, "/snapshot") => {
            let current = rx.borrow().clone();
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(line(&current))).boxed())
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"not found\n")).boxed()),
    };
    Ok(response.unwrap_or_else(|_| Response::new(Empty::new().boxed())))
}

fn line(snapshot: &Snapshot) -> Vec<u8> {
    let mut out = serde_json::to_vec(snapshot).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Follows `leader` (host:port) forever, reconnecting with backoff.
pub async fn run_follower(leader: String, tx: SnapshotTx) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match follow_once(&leader, &tx).await {
            Ok(()) => backoff = Duration::from_millis(250),
            Err(e) => {
                let version = tx.borrow().version;
                tracing::warn!("leader {leader} unreachable, keeping snapshot version {version}: {e:#}");
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

async fn follow_once(leader: &str, tx: &SnapshotTx) -> Result<()> {
    let stream = TcpStream::connect(leader)
        .await
        .with_context(|| format!("connecting to {leader}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get("/snapshots")
        .header(hyper::header::HOST, leader)
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    if resp.status() != StatusCode::OK {
        bail!("leader answered {}", resp.status());
    }
    tracing::info!("following leader {leader}");
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the snapshot stream")?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buf.extend_from_slice(data);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let snapshot: Snapshot =
                serde_json::from_slice(&line).context("the leader sent a snapshot that does not parse")?;
            apply(tx, snapshot);
        }
        if buf.len() > MAX_LINE {
            bail!("the leader sent a line over {MAX_LINE} bytes");
        }
    }
    bail!("the leader closed the stream")
}

fn apply(tx: &SnapshotTx, snapshot: Snapshot) {
    tx.send_if_modified(|current| {
        if current.version == snapshot.version && **current == snapshot {
            return false;
        }
        *current = Arc::new(snapshot);
        true
    });
}
