//! Running code in another network namespace (a bind-mounted `/proc/<pid>/ns/net` or
//! `/run/netns/<name>`).
//!
//! A namespace is entered per thread (`setns`), so the work runs on a short-lived thread of
//! its own; what it makes there keeps its namespace from any thread: sockets stay in the
//! namespace they were made in, BPF links on the interfaces they were attached to.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Runs `f` on a thread in the network namespace at `netns` (`None`: this process's own)
/// and waits for it.
pub fn run_in<T: Send + 'static>(netns: Option<PathBuf>, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let thread = std::thread::spawn(move || {
        if let Some(path) = netns {
            enter(&path)?;
        }
        f()
    });
    thread
        .join()
        .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))?
}

/// Moves the calling thread into the network namespace at `path`.
pub fn enter(path: &Path) -> Result<()> {
    let file = open_netns(path)?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering network namespace {} (needs CAP_SYS_ADMIN)", path.display()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_in_our_own_namespace_without_a_path() {
        assert_eq!(run_in(None, || Ok(std::process::id())).unwrap(), std::process::id());
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
