//! Splices: bytes copied both ways, untouched, between a client and a backend: upgraded
//! (websocket) connections, and TLS passthrough connections.
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use super::Proxy;
use crate::l7::front::linger::ClientStream;
use crate::l7::route::balance::{self, Backend};
use crate::l7::upstream::attempt::{self, Attempts};

/// Copies bytes both ways between an upgraded client and backend connection.
pub(super) async fn splice_upgraded(
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    _in_flight: Option<balance::InFlight>,
) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!("upgrade failed: {e}");
            return;
        }
    };
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut backend = hyper_util::rt::TokioIo::new(backend);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
}

impl Proxy {
    /// Splices a TLS passthrough connection (`hello`: the ClientHello already read) to one
    /// of `backends`, pinned by client IP, trying the next on a failed connect.
    pub async fn passthrough(
        &self,
        mut client: ClientStream,
        hello: Vec<u8>,
        backends: &[Arc<Backend>],
        peer: SocketAddr,
    ) {
        let mut attempts = Attempts::new(backends, Some(balance::sticky_key(peer.ip())), self.backend_attempts);
        while let Some(backend) = attempts.next_backend() {
            let mut upstream = match attempt::connect(backend.addr, self.upstream.connect_timeout()).await {
                Ok(s) => s,
                Err(e) => match attempts.failed(&backend, e, Some(())) {
                    Ok(()) => continue,
                    Err(_) => break,
                },
            };
            attempts.succeeded(&backend);
            let _in_flight = backend.start();
            if upstream.write_all(&hello).await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            return;
        }
        tracing::warn!(%peer, "TLS passthrough: no backend reachable");
    }
}
