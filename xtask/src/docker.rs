//! Lets one xtask run at a time drive the local swarm (`swarm_lock`), and makes sure a
//! Docker engine runs in swarm mode for the holder of that lock (`SwarmLock::ensure_swarm`).
//!
//! There is no systemd on the project's machines, so dockerd is started detached and
//! logs to /var/log/dockerd.log.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd;

/// Held by the one xtask run that drives the local swarm; released when dropped (or by the
/// kernel when the process exits, however it exits).
pub struct SwarmLock {
    _file: File,
}

impl SwarmLock {
    /// Starts dockerd when it does not answer and initialises a single-node swarm when there
    /// is none. Only the lock's holder may: a method, so no run can skip the lock.
    pub fn ensure_swarm(&self) -> Result<()> {
        if !cmd::ok("docker info") {
            eprintln!("docker: starting dockerd (log: /var/log/dockerd.log)");
            cmd::sh("setsid dockerd >/var/log/dockerd.log 2>&1 < /dev/null &")?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !cmd::ok("docker info") {
                if Instant::now() > deadline {
                    bail!("dockerd did not answer within 60 s; see /var/log/dockerd.log");
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        let state = Command::new("docker")
            .args(["info", "--format", "{{.Swarm.LocalNodeState}}"])
            .stderr(Stdio::null())
            .output()?;
        if String::from_utf8_lossy(&state.stdout).trim() != "active" {
            eprintln!("docker: initialising a single-node swarm");
            cmd::sh("docker swarm init --advertise-addr 127.0.0.1 >/dev/null")?;
        }
        Ok(())
    }
}

/// Mounts bpffs at /sys/fs/bpf when it is not mounted (a fresh machine has none).
pub fn ensure_bpffs() -> Result<()> {
    if !cmd::ok("mount | grep -q ' /sys/fs/bpf type bpf'") {
        cmd::sh("mkdir -p /sys/fs/bpf && mount -t bpf bpf /sys/fs/bpf")?;
    }
    Ok(())
}

/// One xtask run at a time drives the local swarm (`test`, `demo`, `bench control`,
/// `bench e2e`): their services would show up in each other's snapshots, and a test run
/// removes the `ilt-*` objects and the demo's stack it finds. Waits while another run holds it.
pub fn swarm_lock() -> Result<SwarmLock> {
    Ok(SwarmLock {
        _file: hold_lock(&lock_path())?,
    })
}

/// The lock file (`/run/lock` is a tmpfs on Debian: no stale file after a reboot).
fn lock_path() -> PathBuf {
    let dir = Path::new("/run/lock");
    let dir = if dir.is_dir() {
        dir.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    dir.join("interlock-xtask-test.lock")
}

/// Takes the exclusive lock at `path`, waiting (and saying so) while another run holds it.
/// The kernel releases it when the holder exits, however it exits.
fn hold_lock(path: &Path) -> Result<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening the swarm lock {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            eprintln!(
                "xtask: another run that drives the swarm (`cargo xtask test`, `demo`, \
                 `bench control` or `bench e2e`) holds {}; waiting for it to finish",
                path.display()
            );
            file.lock()
                .with_context(|| format!("waiting for the swarm lock {}", path.display()))?;
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Removes the lock file however the test ends.
    struct Removed(PathBuf);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn a_second_run_waits_for_the_first() {
        let path = std::env::temp_dir().join(format!("ilt-lock-{}", std::process::id()));
        let _removed = Removed(path.clone());
        let first = hold_lock(&path).unwrap();
        let (done, finished) = mpsc::channel();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                let held = hold_lock(&path).map(|_| ());
                let _ = done.send(held.is_ok());
            })
        };
        assert!(
            finished.recv_timeout(Duration::from_millis(300)).is_err(),
            "the second run went ahead while the first held the lock"
        );
        drop(first);
        assert_eq!(finished.recv_timeout(Duration::from_secs(10)), Ok(true));
        waiter.join().unwrap();
    }
}
