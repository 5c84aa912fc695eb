//! The leader's loop: connect, read everything, publish; then follow events (debounced),
//! poll tasks and reconcile fully on timers. When Docker goes away it keeps the last
//! snapshot (never publishes an empty one for that reason) and reconnects with backoff.
use std::time::Duration;

use anyhow::Result;
use tokio::sync::mpsc;
use tokio::time::{interval, sleep, Instant, MissedTickBehavior};

use super::Publisher;
use crate::docker::{watch_events, Dirty, DockerSource};
use crate::model::assemble::ClusterState;

#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Task poll interval (Docker has no task events).
    pub poll: Duration,
    /// Full re-read interval.
    pub reconcile: Duration,
    /// How long to fold a burst of events together before reading.
    pub debounce: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            poll: Duration::from_secs(1),
            reconcile: Duration::from_secs(30),
            debounce: Duration::from_millis(20),
        }
    }
}

/// Runs forever (until the task is dropped).
pub async fn run_leader(config: WatchConfig, mut publisher: Publisher) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let started = Instant::now();
        match session(&config, &mut publisher).await {
            Ok(()) => {}
            Err(e) => tracing::warn!("Docker unreachable, keeping the last snapshot: {e:#}"),
        }
        // A session that ran a while resets the backoff; quick failures grow it to 10 s.
        backoff = if started.elapsed() > Duration::from_secs(30) {
            Duration::from_millis(250)
        } else {
            (backoff * 2).min(Duration::from_secs(10))
        };
        sleep(backoff).await;
    }
}

/// One connection to the engine; returns when the engine or its event stream goes away.
async fn session(config: &WatchConfig, publisher: &mut Publisher) -> Result<()> {
    let source = DockerSource::connect().await?;
    let (tx, mut events) = mpsc::channel::<Dirty>(1024);
    // Subscribe before the full read, so nothing between the two is missed.
    let mut event_task = tokio::spawn(watch_events(source.docker.clone(), tx));
    let mut state = ClusterState::default();
    source.refresh(&mut state, Dirty::ALL).await?;
    let version = publisher.publish(&state);
    tracing::info!(
        version,
        services = state.services.len(),
        tasks = state.tasks.len(),
        "synced with Docker"
    );

    let mut poll = interval(config.poll);
    let mut reconcile = interval(config.reconcile);
    for timer in [&mut poll, &mut reconcile] {
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        timer.tick().await;
    }
    loop {
        let dirty = tokio::select! {
            ended = &mut event_task => {
                let why = ended.unwrap_or_else(|e| format!("event task failed: {e}"));
                anyhow::bail!("{why}");
            }
            Some(first) = events.recv() => {
                let mut dirty = first;
                let deadline = sleep(config.debounce);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        _ = &mut deadline => break,
                        Some(more) = events.recv() => dirty.merge(more),
                    }
                }
                dirty
            }
            _ = poll.tick() => Dirty { tasks: true, ..Dirty::default() },
            _ = reconcile.tick() => Dirty::ALL,
        };
        if let Err(e) = source.refresh(&mut state, dirty).await {
            event_task.abort();
            return Err(e);
        }
        publisher.publish(&state);
    }
}
