//! Where log lines go: stderr, written by a background thread, never by the threads that
//! serve traffic.
//!
//! In a swarm task stderr is a pipe that dockerd drains. A hung or busy dockerd stops
//! draining it; once the pipe's 64 KiB fill, a direct write blocks the writing thread, and
//! with an access-log line per request every worker blocks within seconds: the proxy stops
//! answering (seen with dockerd frozen under load). Lines go through a bounded queue instead;
//! when it is full they are dropped and counted (`interlock_log_lines_dropped_total`),
//! traffic goes on.
use std::sync::OnceLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

/// Lines held while stderr is not drained (about 20 MiB of access-log lines).
const QUEUED_LINES: usize = 100_000;

/// Bytes gathered before a write to stderr (about 250 access-log lines).
const WRITE_BUFFER: usize = 64 * 1024;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// The writer for the tracing subscriber, and the guard that flushes it when dropped
/// (keep it until the process ends).
pub fn stderr() -> (NonBlocking, WorkerGuard) {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("interlock-log")
        // The writer thread drains what is queued, then flushes: under load many lines go
        // out in one write instead of a system call each (stderr itself is unbuffered).
        .finish(std::io::BufWriter::with_capacity(WRITE_BUFFER, std::io::stderr()));
    let _ = DROPPED.set(writer.error_counter());
    (writer, guard)
}

/// Lines dropped so far because stderr was not drained.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// `interlock_log_lines_dropped_total` on `/metrics`.
#[derive(Debug)]
pub struct DroppedLinesCollector;

impl Collector for DroppedLinesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let metric = encoder.encode_descriptor(
            "interlock_log_lines_dropped",
            "Log lines dropped because stderr was not drained (a hung log reader)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(dropped_lines()).encode(metric)
    }
}
