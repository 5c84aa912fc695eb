//! Forwards the kernel programs' aya-log records into the agent's own log.
use anyhow::Result;
use aya::Ebpf;
use aya_log::EbpfLogger;
use tokio::io::unix::AsyncFd;

/// Starts a task that drains the kernel log buffer whenever it has records.
/// aya-log only delivers records when `flush` is called, so this must keep running.
#[allow(unsafe_code)] // tokio registers a raw fd only unsafely (I/O safety: see the SAFETY below).
pub fn spawn_kernel_logger(bpf: &mut Ebpf) -> Result<()> {
    let logger = match EbpfLogger::init(bpf) {
        Ok(logger) => logger,
        Err(e) => {
            // Programs without log statements have no log map; that is fine.
            tracing::warn!("kernel log not available: {e}");
            return Ok(());
        }
    };
    // SAFETY: the logger owns its fd and the AsyncFd owns the logger, so the fd stays open
    // for as long as it is registered.
    let mut fd = unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)? };
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                break;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
    Ok(())
}
