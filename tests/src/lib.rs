//! Helpers for the end-to-end tests: network namespaces and veth pairs that remove
//! themselves (also when a test panics), the agent binary as a child process, and the
//! privilege check that makes a kernel test fail loudly instead of skipping.
pub mod agent;
pub mod docker;
pub mod engine;
pub mod l4;
pub mod load;
pub mod netns;
pub mod stack;

/// Fails the test with a clear message when it does not run as root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (BPF, network namespaces): run it through `cargo xtask test` as root, \
         or use `cargo xtask test --unprivileged` for the tests that need nothing"
    );
}

/// Prints one line to the real stderr, past the test harness's output capture, so a passing
/// end-to-end test still shows what it saw (attach mode, counts) in `cargo xtask test`'s output.
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "[e2e] {line}");
}

/// Polls `ok` every 50 ms until it says true (an error counts as not yet); returns the
/// seconds it took, or an error naming `what` after `timeout`.
pub fn wait_until(
    what: &str,
    timeout: std::time::Duration,
    mut ok: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<f64> {
    let start = std::time::Instant::now();
    loop {
        if ok().unwrap_or(false) {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > timeout {
            anyhow::bail!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
