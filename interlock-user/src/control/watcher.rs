//! The leader's loop: connect, read everything, publish; then follow events (debounced),
//! poll tasks and reconcile fully on timers. When Docker goes away it keeps the last
//! snapshot (never publishes an empty one for that reason) and reconnects with backoff.
use std::collections::VecDeque;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::mpsc;
use tokio::time::{interval, sleep, sleep_until, Instant, MissedTickBehavior};

use super::Publisher;
use crate::docker::{watch_events, Dirty, DockerSource};
use crate::model::assemble::ClusterState;

/// When to re-read tasks after an event touching them (ms after the event's refresh).
const RECHECKS_MS: [u64; 4] = [100, 250, 500, 800];

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
            poll: Duration::from_millis(crate::config::defaults::POLL_MS),
            reconcile: Duration::from_secs(crate::config::defaults::RECONCILE_S),
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
    let mut event_task = tokio::spawn({
        let source = source.clone();
        async move { watch_events(&source, tx).await }
    });
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
    // After a container event the task's state in the swarm lags the container by a few
    // hundred ms (the node reports it to the managers): re-read tasks a few times soon after,
    // instead of waiting for the next poll.
    let mut rechecks: VecDeque<Instant> = VecDeque::new();
    loop {
        let next_recheck = rechecks.front().copied();
        let recheck = async move {
            match next_recheck {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let mut from_events = false;
        let dirty = tokio::select! {
            _ = recheck => {
                rechecks.pop_front();
                Dirty { tasks: true, ..Dirty::default() }
            }
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
                from_events = true;
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
        if from_events && dirty.tasks && rechecks.is_empty() {
            let now = Instant::now();
            rechecks.extend(RECHECKS_MS.iter().map(|ms| now + Duration::from_millis(*ms)));
        }
    }
}
