//! The `interlock` binary as a child process of a test, killed on drop.
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Path of the agent binary: `INTERLOCK_BIN` (set by `cargo xtask test`), else the debug build.
pub fn interlock_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("INTERLOCK_BIN") {
        return PathBuf::from(path);
    }
    let fallback = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/interlock");
    assert!(
        fallback.exists(),
        "no agent binary: run through `cargo xtask test`, or `cargo build -p interlock-user` first"
    );
    fallback
}

/// A running agent whose stdout and stderr lines are collected.
pub struct AgentProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    new_line: mpsc::Receiver<()>,
}

impl AgentProcess {
    /// Starts `cmd` (usually `NetNs::command(interlock_bin())` plus arguments).
    pub fn spawn(mut cmd: Command) -> Result<AgentProcess> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).env("NO_COLOR", "1");
        let mut child = cmd.spawn().with_context(|| format!("cannot start {cmd:?}"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, new_line) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        for stream in [Box::new(stdout) as Box<dyn std::io::Read + Send>, Box::new(stderr)] {
            let lines = lines.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("[agent] {line}");
                    lines.lock().unwrap().push(line);
                    let _ = tx.send(());
                }
            });
        }
        Ok(AgentProcess { child, lines, new_line })
    }

    /// Every line printed so far.
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until a line containing `needle` appears; fails after `timeout` or when the agent exits.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.output().into_iter().find(|l| l.contains(needle)) {
                return Ok(line);
            }
            if let Some(status) = self.child.try_wait()? {
                // Let the reader threads catch up before the final check.
                std::thread::sleep(Duration::from_millis(100));
                if let Some(line) = self.output().into_iter().find(|l| l.contains(needle)) {
                    return Ok(line);
                }
                bail!("the agent exited ({status}) before printing {needle:?}");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("the agent did not print {needle:?} within {timeout:?}");
            }
            let _ = self.new_line.recv_timeout(left.min(Duration::from_millis(200)));
        }
    }

    /// Waits for the agent to exit by itself; fails if it does not within `timeout` or fails.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                std::thread::sleep(Duration::from_millis(100));
                if !status.success() {
                    bail!("the agent exited with {status}");
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the agent did not exit within {timeout:?}")
    }

    /// Sends SIGKILL (no cleanup in the agent: as if it crashed).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> Result<()> {
        self.sigterm();
        self.wait_exit(timeout)
    }

    /// Sends SIGTERM without waiting (to watch what the agent does while it drains).
    pub fn sigterm(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
