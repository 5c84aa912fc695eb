//! `interlock control`: runs the control plane alone and prints each snapshot as one JSON
//! line. Role: `leader` watches Docker (a manager), `follower` follows a leader's snapshot
//! stream (workers cannot list services), `auto` asks the engine whether it is a manager.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::net::TcpListener;

use crate::control::stream_tls::StreamTls;
use crate::control::{self, stream, Publisher, WatchConfig};
use crate::docker::DockerSource;
use crate::model::assemble::Options;
use crate::model::SnapshotRx;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Auto,
    Leader,
    Follower,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ControlArgs {
    /// leader: watch Docker; follower: follow --leader; auto: leader on a manager, else follower.
    #[arg(long, value_enum, default_value = "auto", env = "INTERLOCK_ROLE")]
    pub role: Role,
    /// Leader: serve the snapshot stream to followers on this address.
    #[arg(long, env = "INTERLOCK_SNAPSHOT_LISTEN")]
    pub snapshot_listen: Option<SocketAddr>,
    /// Follower: the leader's snapshot stream address (host:port).
    #[arg(long, env = "INTERLOCK_LEADER")]
    pub leader: Option<String>,
    /// Task poll interval in milliseconds (Docker emits no task events).
    #[arg(long, default_value_t = 1000, env = "INTERLOCK_POLL_MS")]
    pub poll_ms: u64,
    /// Full reconcile interval in seconds.
    #[arg(long, default_value_t = 30, env = "INTERLOCK_RECONCILE_S")]
    pub reconcile_s: u64,
    /// Serve only services whose com.docker.lb.service_cluster label has this value.
    #[arg(long, env = "INTERLOCK_SERVICE_CLUSTER")]
    pub service_cluster: Option<String>,
    /// Mutual TLS for the snapshot stream: a directory with interlock-ca.pem, interlock-cert.pem
    /// and interlock-key.pem (`interlock certs`). Leaders then serve, and followers accept,
    /// only peers with a certificate from that CA.
    #[arg(long, env = "INTERLOCK_STREAM_TLS_DIR")]
    pub stream_tls_dir: Option<PathBuf>,
    /// Where Docker secrets named by ssl_cert/ssl_key are mounted.
    #[arg(long, default_value = "/run/secrets", env = "INTERLOCK_SECRETS_DIR")]
    pub secrets_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ControlCommand {
    #[command(flatten)]
    pub control: ControlArgs,
    /// Print each snapshot version as one JSON line on stdout.
    #[arg(long)]
    pub print: bool,
}

/// Starts the control plane in its role and returns the snapshot channel it feeds.
pub async fn start(args: &ControlArgs) -> Result<SnapshotRx> {
    let role = match args.role {
        Role::Auto => match DockerSource::connect().await {
            Ok(source) if source.is_manager().await.unwrap_or(false) => Role::Leader,
            Ok(_) | Err(_) if args.leader.is_some() => Role::Follower,
            Ok(_) => bail!("this Docker engine is not a swarm manager: give --leader <host:port> to follow one"),
            Err(e) => bail!("role auto: cannot reach Docker ({e:#}) and no --leader given"),
        },
        other => other,
    };
    let tls = match &args.stream_tls_dir {
        Some(dir) => Some(StreamTls::load(dir).context("loading the snapshot stream's TLS material")?),
        None => None,
    };
    let (tx, rx) = control::snapshot_channel();
    match role {
        Role::Leader => {
            let config = WatchConfig {
                poll: Duration::from_millis(args.poll_ms.max(50)),
                reconcile: Duration::from_secs(args.reconcile_s.max(1)),
                ..WatchConfig::default()
            };
            let options = Options {
                service_cluster: args.service_cluster.clone(),
                secrets_dir: args.secrets_dir.clone(),
            };
            tokio::spawn(control::run_leader(config, Publisher::new(options, tx)));
            if let Some(addr) = args.snapshot_listen {
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
            let Some(leader) = args.leader.clone() else {
                bail!("role follower needs --leader <host:port>")
            };
            tracing::info!(%leader, "control plane: follower");
            tokio::spawn(stream::run_follower(leader, tx, tls.map(|t| t.client)));
        }
        Role::Auto => unreachable!("resolved above"),
    }
    Ok(rx)
}

pub async fn run(cmd: ControlCommand) -> Result<()> {
    let mut rx = start(&cmd.control).await?;
    let print = async {
        loop {
            let snapshot = rx.borrow_and_update().clone();
            if cmd.print && snapshot.version > 0 {
                println!("{}", serde_json::to_string(&*snapshot).unwrap_or_default());
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = print => {},
        _ = super::count::shutdown_signal() => {},
    }
    Ok(())
}
