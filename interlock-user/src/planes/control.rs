//! Starting the control plane in its role: a leader watches Docker (a manager) and may serve
//! its snapshots to followers; a follower follows a leader's stream. Either way the planes
//! get one snapshot channel.
use anyhow::{bail, Context, Result};
use tokio::net::TcpListener;

use crate::config::{ControlConfig, Role};
use crate::control::stream_tls::StreamTls;
use crate::control::{self, stream, Publisher, WatchConfig};
use crate::docker::DockerSource;
use crate::model::assemble::Options;
use crate::model::SnapshotRx;

/// Starts the control plane and returns the snapshot channel it feeds.
pub async fn start(config: &ControlConfig) -> Result<SnapshotRx> {
    let role = match config.role {
        Role::Auto => match DockerSource::connect().await {
            Ok(source) if source.is_manager().await.unwrap_or(false) => Role::Leader,
            Ok(_) | Err(_) if config.leader.is_some() => Role::Follower,
            Ok(_) => bail!("this Docker engine is not a swarm manager: give --leader <host:port> to follow one"),
            Err(e) => bail!("role auto: cannot reach Docker ({e:#}) and no --leader given"),
        },
        other => other,
    };
    let tls = match &config.stream_tls_dir {
        Some(dir) => Some(StreamTls::load(dir).context("loading the snapshot stream's TLS material")?),
        None => None,
    };
    let (tx, rx) = control::snapshot_channel();
    match role {
        Role::Leader => {
            let watch = WatchConfig {
                poll: config.poll,
                reconcile: config.reconcile,
                ..WatchConfig::default()
            };
            let options = Options {
                service_cluster: config.service_cluster.clone(),
                secrets_dir: config.secrets_dir.clone(),
            };
            tokio::spawn(control::run_leader(watch, Publisher::new(options, tx)));
            if let Some(addr) = config.snapshot_listen {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("binding the snapshot stream to {addr}: {e}"))?;
                tracing::info!(%addr, "serving snapshots to followers");
                if tls.is_none() {
                    tracing::warn!(%addr, "the snapshot stream is not authenticated: set --stream-tls-dir");
                }
                let stream_rx = rx.clone();
                let server_tls = tls.as_ref().map(|t| t.server.clone());
                tokio::spawn(async move {
                    if let Err(e) = stream::serve_snapshots(listener, stream_rx, server_tls).await {
                        tracing::error!("snapshot stream stopped: {e:#}");
                    }
                });
            }
            tracing::info!("control plane: leader (watching Docker)");
        }
        Role::Follower => {
            let Some(leader) = config.leader.clone() else {
                bail!("role follower needs --leader <host:port>")
            };
            tracing::info!(%leader, "control plane: follower");
            tokio::spawn(stream::run_follower(leader, tx, tls.map(|t| t.client)));
        }
        Role::Auto => unreachable!("resolved above"),
    }
    Ok(rx)
}
