//! Makes sure a Docker engine runs in swarm mode (for the Docker tests and the demo).
//!
//! There is no systemd on the project's machines, so dockerd is started detached and
//! logs to /var/log/dockerd.log.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::cmd;

pub fn ensure_swarm() -> Result<()> {
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

/// Mounts bpffs at /sys/fs/bpf when it is not mounted (a fresh machine has none).
pub fn ensure_bpffs() -> Result<()> {
    if !cmd::ok("mount | grep -q ' /sys/fs/bpf type bpf'") {
        cmd::sh("mkdir -p /sys/fs/bpf && mount -t bpf bpf /sys/fs/bpf")?;
    }
    Ok(())
}
