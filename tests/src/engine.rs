//! Stopping and starting dockerd in tests (there is no systemd here), and a guard that leaves
//! it running in swarm mode whatever happens.
use std::process::Command;
use std::time::{Duration, Instant};

use crate::docker::docker;

const WAIT: Duration = Duration::from_secs(120);

pub fn engine_up() -> bool {
    docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]).is_ok_and(|s| s == "active")
}

pub fn start_dockerd() {
    let _ = Command::new("sh")
        .args(["-c", "setsid dockerd >>/var/log/dockerd.log 2>&1 < /dev/null &"])
        .status();
}

pub fn stop_dockerd() {
    let stopped = Command::new("pkill").args(["-TERM", "-x", "dockerd"]).status();
    assert!(stopped.is_ok_and(|s| s.success()), "dockerd was running");
}

fn dockerd_running() -> bool {
    Command::new("pgrep")
        .args(["-x", "dockerd"])
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Waits until the engine answers (`up`) or is gone, process included (`!up`).
pub fn wait_engine(up: bool) {
    let deadline = Instant::now() + WAIT;
    // Down means the process is gone too: a new dockerd refuses to start beside a stopping one.
    while engine_up() != up || (!up && dockerd_running()) {
        assert!(
            Instant::now() < deadline,
            "dockerd did not come {}",
            if up { "up" } else { "down" }
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Leaves dockerd running in swarm mode whatever happens in the test.
pub struct EngineGuard;

impl Drop for EngineGuard {
    fn drop(&mut self) {
        if !engine_up() {
            if !dockerd_running() {
                start_dockerd();
            }
            wait_engine(true);
        }
    }
}
