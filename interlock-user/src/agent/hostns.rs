//! Doing things in the host's network namespace from inside the agent's container.
//!
//! The XDP fast path lives on the host's interfaces (so it outlives the agent's container),
//! but the agent's container has its own namespace (so it can join overlays for L7).
//! Attaching XDP and resolving interface names happen in the calling thread's namespace, so
//! they run on a short-lived thread that `setns`es into the host's (a bind-mounted
//! `/proc/1/ns/net` of the host). BPF maps and sockets keep working from any thread.
use std::ffi::CStr;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Runs `f` on a thread in the network namespace at `netns` (`None`: this process's own).
pub fn run_in<T: Send + 'static>(netns: Option<PathBuf>, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let thread = std::thread::spawn(move || {
        if let Some(path) = netns {
            enter(&path)?;
        }
        f()
    });
    thread
        .join()
        .map_err(|_| anyhow::anyhow!("the host-namespace thread panicked"))?
}

fn enter(path: &Path) -> Result<()> {
    let file = open_netns(path)?;
    // SAFETY: setns on this thread only, with a namespace fd we hold open.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("entering network namespace {} (needs CAP_SYS_ADMIN)", path.display()));
    }
    Ok(())
}

/// Opens `path`, a network namespace file such as `/host/proc/1/ns/net`. Some hosts' init
/// refuses to show its namespaces (seen here: PID 1 is not a normal init); then the
/// namespace of `dockerd` (which always runs in the host's) is used, found in the same proc.
fn open_netns(path: &Path) -> Result<std::fs::File> {
    let first = match std::fs::File::open(path) {
        Ok(f) => return Ok(f),
        Err(e) => e,
    };
    let fallback = path
        .ends_with("1/ns/net")
        .then(|| path.ancestors().nth(3))
        .flatten()
        .and_then(|proc_dir| find_process_netns(proc_dir, "dockerd"));
    match fallback {
        Some(alt) => {
            tracing::info!(unreadable = %path.display(), using = %alt.display(), "host network namespace");
            std::fs::File::open(&alt).with_context(|| format!("opening the host network namespace {}", alt.display()))
        }
        None => Err(first).with_context(|| {
            format!(
                "opening the host network namespace {} (mount the host's /proc at /host/proc; the \
                 agent needs CAP_SYS_ADMIN and CAP_SYS_PTRACE)",
                path.display()
            )
        }),
    }
}

/// `<proc>/<pid>/ns/net` of the first process whose name is `comm`.
fn find_process_netns(proc_dir: &Path, comm: &str) -> Option<PathBuf> {
    std::fs::read_dir(proc_dir).ok()?.flatten().find_map(|entry| {
        let name = entry.file_name();
        let pid = name.to_str()?;
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let found = std::fs::read_to_string(entry.path().join("comm")).ok()?;
        (found.trim() == comm).then(|| entry.path().join("ns/net"))
    })
}

/// The first IPv4 address of `iface` in the calling thread's namespace.
pub fn iface_ipv4(iface: &str) -> Result<Ipv4Addr> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getifaddrs");
    }
    let mut found = None;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: non-null, NUL-terminated name owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: non-null sockaddr; its family tells its real type.
        if name.to_bytes() == iface.as_bytes() && i32::from(unsafe { (*ifa.ifa_addr).sa_family }) == libc::AF_INET {
            // SAFETY: AF_INET means the address is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            break;
        }
    }
    // SAFETY: frees the list getifaddrs gave us, once.
    unsafe { libc::freeifaddrs(head) };
    match found {
        Some(a) => Ok(a),
        None => bail!("interface {iface} has no IPv4 address (or does not exist in this namespace)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_its_address() {
        assert_eq!(iface_ipv4("lo").unwrap(), Ipv4Addr::LOCALHOST);
        let e = iface_ipv4("no-such-if0").unwrap_err().to_string();
        assert!(e.contains("no-such-if0"), "{e}");
    }

    #[test]
    fn runs_in_our_own_namespace_without_a_path() {
        assert_eq!(run_in(None, || iface_ipv4("lo")).unwrap(), Ipv4Addr::LOCALHOST);
        let e = run_in(Some("/nonexistent/ns".into()), || Ok(())).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/ns"), "{e:#}");
    }

    #[test]
    fn finds_a_process_namespace_by_name() {
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        let found = find_process_netns(Path::new("/proc"), me.trim()).expect("this test's own process");
        assert!(found.ends_with("ns/net"), "{}", found.display());
        assert_eq!(find_process_netns(Path::new("/proc"), "no-such-process-name"), None);
    }
}
