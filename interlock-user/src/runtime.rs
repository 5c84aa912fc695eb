//! The tokio runtime the binary runs on.
//!
//! With one worker thread (one CPU for this process, or `TOKIO_WORKER_THREADS=1`) it is
//! tokio's current-thread scheduler rather than the work-stealing one: with no other worker
//! to steal from, the work-stealing scheduler only adds cross-thread bookkeeping. In the l7
//! bench's one-CPU setup the proxy runs ~1.7% fewer instructions per request this way
//! (20,721 against 21,079); rate and p99 did not move beyond the machine's noise.
use tokio::runtime::{Builder, Runtime};

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

const WORKERS_VAR: &str = "TOKIO_WORKER_THREADS";

/// The runtime for this process: as many workers as tokio would start, and the
/// current-thread scheduler when that is one.
pub fn build() -> std::io::Result<Runtime> {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let setting = std::env::var(WORKERS_VAR).ok();
    let workers = worker_threads(setting.as_deref(), available)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    if workers == 1 {
        Builder::new_current_thread().enable_all().build()
    } else {
        Builder::new_multi_thread().worker_threads(workers).enable_all().build()
    }
}

/// Worker threads as tokio's own builder picks them: `TOKIO_WORKER_THREADS` when set (a
/// positive number, else an error naming it), otherwise one per available CPU.
fn worker_threads(setting: Option<&str>, available: usize) -> Result<usize, String> {
    match setting {
        None => Ok(available.max(1)),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{WORKERS_VAR}={v:?}: expected a positive number of worker threads"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_from_the_setting_or_the_cpus() {
        assert_eq!(worker_threads(None, 4), Ok(4));
        assert_eq!(worker_threads(None, 0), Ok(1));
        assert_eq!(worker_threads(Some("1"), 8), Ok(1));
        assert_eq!(worker_threads(Some(" 3 "), 1), Ok(3));
        for bad in ["0", "-1", "two", ""] {
            let e = worker_threads(Some(bad), 2).unwrap_err();
            assert!(e.contains("TOKIO_WORKER_THREADS"), "{e}");
        }
    }
}
