//! Helpers for the end-to-end tests: network namespaces and veth pairs that remove
//! themselves (also when a test panics), the agent binary as a child process, and the
//! privilege check that makes a kernel test fail loudly instead of skipping.
pub mod agent;
pub mod l4;
pub mod netns;

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
