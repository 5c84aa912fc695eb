//! Network namespaces and veth pairs for tests, named `ilt-*` and removed on drop.
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call (interface names have 15 bytes at most).
pub fn unique(prefix: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

/// Runs `ip` with the given arguments; fails with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args)).map(|_| ())
}

/// Runs a command and fails naming it and its stderr when it fails.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

/// A network namespace, deleted (with every interface in it) when dropped.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new() -> Result<NetNs> {
        let name = format!("ilt-{}", unique("n"));
        ip(&["netns", "add", &name])?;
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n <ns> ...`
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// A command that runs inside this namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs a shell line inside the namespace and returns its stdout.
    pub fn sh(&self, line: &str) -> Result<String> {
        let out = run(self.command("sh").args(["-c", line]))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// One end of a veth pair: its namespace's interface name and address.
pub struct VethEnd {
    pub iface: String,
    pub addr: String,
}

/// Creates a veth pair between two namespaces with the given /24 addresses, both ends up.
/// The pair disappears with either namespace.
pub fn veth_pair(a: &NetNs, a_addr: &str, b: &NetNs, b_addr: &str) -> Result<(VethEnd, VethEnd)> {
    let a_if = unique("va");
    let b_if = unique("vb");
    ip(&[
        "link", "add", &a_if, "netns", &a.name, "type", "veth", "peer", "name", &b_if, "netns", &b.name,
    ])?;
    for (ns, iface, addr) in [(a, &a_if, a_addr), (b, &b_if, b_addr)] {
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", iface])?;
        ns.ip(&["link", "set", iface, "up"])?;
    }
    Ok((
        VethEnd {
            iface: a_if,
            addr: a_addr.into(),
        },
        VethEnd {
            iface: b_if,
            addr: b_addr.into(),
        },
    ))
}
