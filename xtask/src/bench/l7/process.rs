//! The processes of the bench: where they run, stopping them, sampling their memory.
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

/// Where a process of the bench runs. With two or more CPUs the proxy under test gets CPU 1
/// to itself and the load (wrk and the backend) shares CPU 0, so every proxy is measured
/// with the same one core and one worker, and the load generator never competes with it.
/// Everything runs at nice -10: the other work on a shared machine disturbs it less.
#[derive(Debug, Clone, Copy)]
pub enum Placement<'a> {
    Proxy,
    Load,
    /// Like `Proxy`, run under valgrind's callgrind, which counts into this file.
    Profiled(&'a Path),
}

/// Workers (processes or threads) each proxy runs: one, on its one CPU.
pub const WORKERS: usize = 1;

impl Placement<'_> {
    pub fn command(self, program: &str) -> Command {
        let mut c = Command::new("nice");
        c.args(["-n", "-10"]);
        if std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) >= 2 {
            let cpu = match self {
                Placement::Proxy | Placement::Profiled(_) => "1",
                Placement::Load => "0",
            };
            c.args(["taskset", "-c", cpu]);
        }
        if let Placement::Profiled(out) = self {
            c.args(["valgrind", "-q", "--tool=callgrind"])
                .arg(format!("--callgrind-out-file={}", out.display()));
        }
        c.arg(program);
        c
    }
}

/// A child process stopped when dropped.
pub struct Proc {
    child: Child,
    /// The signal that makes it stop cleanly (nginx: SIGQUIT finishes and exits).
    stop_signal: i32,
}

impl Proc {
    pub fn start(what: &str, mut cmd: Command) -> Result<Proc> {
        Self::start_with(what, &mut cmd, libc::SIGTERM)
    }

    pub fn start_with(what: &str, cmd: &mut Command, stop_signal: i32) -> Result<Proc> {
        let child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        Ok(Proc { child, stop_signal })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the process to stop and waits up to `grace` for it (valgrind writes its
    /// profile on a clean exit).
    pub fn stop(mut self, grace: Duration) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, self.stop_signal) };
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // The stop signal first (nginx removes its pid file), then make sure.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, self.stop_signal) };
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples a process's VmRSS every 100 ms; reports the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak_kb: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let (stop, peak_kb) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, p) = (stop.clone(), peak_kb.clone());
        let status = PathBuf::from(format!("/proc/{pid}/status"));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kb) = std::fs::read_to_string(&status).ok().and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.split_whitespace().next()?.parse().ok())
                }) {
                    p.fetch_max(kb, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        RssSampler {
            stop,
            peak_kb,
            thread: Some(thread),
        }
    }

    pub fn stop_mb(mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak_kb.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

pub fn wait_port(port: u16, within: Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("nothing listens on 127.0.0.1:{port} after {within:?}")
}
