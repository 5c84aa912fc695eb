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

use rustls::{ClientConfig, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::stream_tls::StreamTls;
use crate::model::{Snapshot, SnapshotRx, SnapshotTx};

/// A snapshot line longer than this is refused (a leader gone wrong must not exhaust memory).
const MAX_LINE: usize = 64 << 20;

/// A follower has this long to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves snapshots to followers until the listener fails. With `tls`, only followers holding
/// a certificate from the stream's CA are served (mutual TLS).
pub async fn serve_snapshots(listener: TcpListener, rx: SnapshotRx, tls: Option<Arc<ServerConfig>>) -> Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    loop {
        let (stream, peer) = listener.accept().await.context("accepting a follower")?;
        let (rx, acceptor) = (rx.clone(), acceptor.clone());
        tokio::spawn(async move {
            let served = match acceptor {
                None => serve_follower(TokioIo::new(stream), rx).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => serve_follower(TokioIo::new(tls), rx).await,
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, "refused a snapshot client without a valid certificate: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "refused a snapshot client: no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
                        return;
                    }
                },
            };
            if let Err(e) = served {
                tracing::debug!(%peer, "snapshot stream closed: {e}");
            }
        });
    }
}

async fn serve_follower<I>(io: I, rx: SnapshotRx) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| answer(req, rx.clone()));
    hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await
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

/// Follows `leader` (host:port) forever, reconnecting with backoff. With `tls`, the leader must
/// prove it holds a certificate for `interlock` from the stream's CA, or nothing it sends is
/// used: the last good snapshot stays.
pub async fn run_follower(leader: String, tx: SnapshotTx, tls: Option<Arc<ClientConfig>>) {
    let mut backoff = Duration::from_millis(250);
    let connector = tls.map(TlsConnector::from);
    loop {
        match follow_once(&leader, &tx, connector.as_ref()).await {
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

async fn follow_once(leader: &str, tx: &SnapshotTx, tls: Option<&TlsConnector>) -> Result<()> {
    let stream = TcpStream::connect(leader)
        .await
        .with_context(|| format!("connecting to {leader}"))?;
    match tls {
        None => follow_on(TokioIo::new(stream), leader, tx).await,
        Some(connector) => {
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(StreamTls::peer_name(), stream))
                .await
                .context("TLS handshake with the leader timed out")?
                .context("the leader is not trusted (TLS with the stream's CA failed)")?;
            follow_on(TokioIo::new(tls), leader, tx).await
        }
    }
}

async fn follow_on<I>(io: I, leader: &str, tx: &SnapshotTx) -> Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
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
