//! Where log lines go: stderr, written by a background thread, never by the threads that
//! serve traffic.
//!
//! In a swarm task stderr is a pipe that dockerd drains. A hung or busy dockerd stops
//! draining it; once the pipe's 64 KiB fill, a direct write blocks the writing thread, and
//! with an access-log line per request every worker blocks within seconds: the proxy stops
//! answering (seen with dockerd frozen under load). Lines go into a bounded in-memory queue
//! instead; when it is full they are dropped and counted (`interlock_log_lines_dropped_total`),
//! traffic goes on.
//!
//! Written by hand rather than with `tracing_appender::non_blocking`: that one hands each
//! line over as its own allocation through a channel whose reader wakes per line (a futex
//! wake from the serving thread, then the reader's spin with `sched_yield`, ~3,000 a second
//! under the bench's load, on the proxy's CPU). Here a line is a copy into one shared buffer
//! under an uncontended mutex; the writer thread sleeps until a line arrives, lets lines
//! gather for [`GATHER`], and writes them all at once.
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;

/// Bytes held while stderr is not drained (about 80,000 access-log lines).
const QUEUED_BYTES: usize = 16 << 20;

/// How long the writer lets lines gather after the first: under load one write per interval,
/// and a line reaches stderr at most this late.
const GATHER: Duration = Duration::from_millis(10);

/// The most written at once. A write runs to its end on the CPU it started on; with the
/// proxy's worker on the same CPU, a 60 KiB batch held it for up to a millisecond, a delay
/// in the p99 of the requests in flight. Between smaller writes the worker gets its turn.
const WRITE_CHUNK: usize = 16 * 1024;

/// How much lower than the serving threads the writer runs (nice steps): it gets a tenth of
/// a busy CPU, far more than writing costs, and never takes a serving thread's turn first.
const WRITER_NICE: libc::c_int = 10;

/// How long the guard waits for the last lines to be written at exit (stderr may be stuck).
const FLUSH_AT_EXIT: Duration = Duration::from_secs(1);

/// The writer's buffer is given back down to this after a burst (or a hang) grew it.
const KEPT_CAPACITY: usize = 1 << 20;

static INSTALLED: OnceLock<Arc<Shared>> = OnceLock::new();

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    limit: usize,
    dropped: AtomicU64,
}

struct Queue {
    lines: Vec<u8>,
    /// The writer sleeps on `wake`: the next line must notify it (only then: a notify is a
    /// system call).
    writer_waiting: bool,
    closing: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves whole lines behind: the queue stays usable.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where lines are queued; the tracing subscriber's writer (`MakeWriter`) and the access log's.
#[derive(Clone)]
pub struct LogSink(Arc<Shared>);

/// Writes what is still queued when dropped (keep it until the process ends).
pub struct FlushGuard {
    shared: Arc<Shared>,
    done: std::sync::mpsc::Receiver<()>,
}

/// The sink for stderr, and its guard. Its dropped lines are the ones `/metrics` reports.
pub fn stderr() -> (LogSink, FlushGuard) {
    let (sink, guard) = start(std::io::stderr(), QUEUED_BYTES);
    let _ = INSTALLED.set(sink.0.clone());
    (sink, guard)
}

/// A sink for the file at `path` (appended to, created if missing), and its guard: the
/// access log's `--access-log <path>`. Its dropped lines are not on `/metrics`.
pub fn file(path: &std::path::Path) -> std::io::Result<(LogSink, FlushGuard)> {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    Ok(start(out, QUEUED_BYTES))
}

/// A sink whose lines a thread of its own writes to `out`, holding at most `limit` bytes.
fn start(out: impl Write + Send + 'static, limit: usize) -> (LogSink, FlushGuard) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            lines: Vec::with_capacity(64 * 1024),
            writer_waiting: false,
            closing: false,
        }),
        wake: Condvar::new(),
        limit,
        dropped: AtomicU64::new(0),
    });
    let (done_tx, done) = std::sync::mpsc::channel();
    let thread_shared = shared.clone();
    std::thread::Builder::new()
        .name("interlock-log".into())
        .spawn(move || {
            lower_priority(WRITER_NICE);
            write_until_closed(&thread_shared, out);
            drop(done_tx);
        })
        .expect("spawning the log writer thread");
    (LogSink(shared.clone()), FlushGuard { shared, done })
}

fn write_until_closed(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        {
            let mut q = shared.lock();
            while q.lines.is_empty() && !q.closing {
                q.writer_waiting = true;
                q = shared.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
            if q.lines.is_empty() {
                return; // closing, and everything is written
            }
            if !q.closing {
                drop(q);
                std::thread::sleep(GATHER);
                q = shared.lock();
            }
            std::mem::swap(&mut q.lines, &mut batch);
        }
        // Errors (stderr closed) lose these lines only; there is nowhere to report them.
        for chunk in whole_lines(&batch, WRITE_CHUNK) {
            if out.write_all(chunk).is_err() {
                break;
            }
        }
        let _ = out.flush();
        batch.clear();
        batch.shrink_to(KEPT_CAPACITY);
    }
}

/// `batch` in pieces of at most `max` bytes that end at a line's end (a longer line is a
/// piece of its own).
fn whole_lines(batch: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = batch;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = if rest.len() <= max {
            rest.len()
        } else {
            rest[..max]
                .iter()
                .rposition(|b| *b == b'\n')
                .or_else(|| rest[max..].iter().position(|b| *b == b'\n').map(|nl| max + nl))
                .map_or(rest.len(), |nl| nl + 1)
        };
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// Raises the calling thread's nice value by `steps` (always allowed; the kernel caps it at
/// 19). On Linux a nice value is per thread, so the serving threads keep theirs.
#[allow(unsafe_code)] // nix has no nice(2).
fn lower_priority(steps: libc::c_int) {
    // SAFETY: nice(2) takes an integer and touches no memory of ours; it acts on the calling
    // thread only, and its result (the new nice value, or -1) is not needed.
    unsafe {
        libc::nice(steps);
    }
}

impl LogSink {
    /// Queues whole lines; drops them (counted) when the queue is full. Never blocks on output.
    pub fn push(&self, lines: &[u8]) {
        let shared = &self.0;
        let mut q = shared.lock();
        if q.lines.len() + lines.len() > shared.limit {
            drop(q);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.lines.extend_from_slice(lines);
        let wake = std::mem::take(&mut q.writer_waiting);
        drop(q);
        if wake {
            shared.wake.notify_one();
        }
    }
}

/// tracing's fmt layer writes each event with one `write_all`: one call, one whole line.
impl Write for &LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = &'a LogSink;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        // The thread ends once it has written everything; give up if stderr is stuck.
        let _ = self.done.recv_timeout(FLUSH_AT_EXIT);
    }
}

/// Lines dropped so far because stderr was not drained.
pub fn dropped_lines() -> u64 {
    INSTALLED.get().map_or(0, |s| s.dropped.load(Ordering::Relaxed))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Output the test reads back; `gate` closed makes every write wait (a stuck stderr).
    #[derive(Clone, Default)]
    struct Captured {
        bytes: Arc<Mutex<Vec<u8>>>,
        gate: Arc<Mutex<()>>,
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn batches_are_written_in_pieces_ending_at_line_ends() {
        let batch = b"aaaa\nbb\ncccccccccc\nd\n";
        let pieces: Vec<&[u8]> = whole_lines(batch, 8).collect();
        assert_eq!(pieces, [&b"aaaa\nbb\n"[..], b"cccccccccc\n", b"d\n"]);
        assert_eq!(pieces.concat(), batch);
        assert_eq!(whole_lines(b"no end", 3).collect::<Vec<_>>(), [&b"no end"[..]]);
        assert_eq!(whole_lines(b"", 3).count(), 0);
    }

    #[test]
    fn lines_come_out_whole_and_in_order_and_the_guard_flushes_them() {
        let out = Captured::default();
        let (sink, guard) = start(out.clone(), 1 << 20);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        (&sink).write_all(format!("t{t} line {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        drop(guard);
        let text = String::from_utf8(out.bytes.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 4000);
        for t in 0..4 {
            let mine: Vec<&str> = text.lines().filter(|l| l.starts_with(&format!("t{t} "))).collect();
            let expected: Vec<String> = (0..1000).map(|i| format!("t{t} line {i}")).collect();
            assert_eq!(mine, expected, "thread {t}'s lines whole and in order");
        }
        assert_eq!(sink.0.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_stuck_output_drops_and_counts_lines_and_never_blocks_the_writer() {
        let out = Captured::default();
        let stuck = out.gate.lock().unwrap();
        let (sink, guard) = start(out.clone(), 1000);
        let first = b"first line, taken by the writer thread, which then waits on the output\n";
        sink.push(first);
        while !sink.0.lock().lines.is_empty() {
            std::thread::sleep(GATHER);
        }
        for _ in 0..100 {
            sink.push(&[b'x'; 99]);
        }
        // 1000 bytes hold 10 lines of 100; the other 90 are dropped, the pushes returned.
        assert_eq!(sink.0.dropped.load(Ordering::Relaxed), 90);
        drop(stuck);
        drop(guard);
        let written = out.bytes.lock().unwrap().len();
        assert_eq!(
            written,
            first.len() + 10 * 99,
            "the first line and the 10 queued ones are written"
        );
    }
}
