//! `cargo xtask test`: the whole suite.
//!
//! As root it runs unit tests, the kernel tests (BPF_PROG_TEST_RUN, XDP on veth pairs in
//! network namespaces) and the Docker tests (a single-node swarm, started when absent).
//! `--unprivileged` runs only the tests that need nothing.

use anyhow::{bail, Result};

use crate::{cmd, docker, root, setup};

pub fn run(unprivileged: bool, extra: &[String]) -> Result<()> {
    if !unprivileged && !cmd::is_root() {
        bail!(
            "cargo xtask test needs root: its kernel tests load BPF programs and create network \
             namespaces, and its Docker tests drive a swarm. Run it as root, or run \
             `cargo xtask test --unprivileged` for the tests that need no privileges."
        );
    }
    // Held to the end: a second run at the same time would remove this one's `ilt-*` objects.
    let swarm = if unprivileged {
        None
    } else {
        Some(docker::swarm_lock()?)
    };
    if cmd::is_root() {
        setup::run()?;
    }
    xtask::ebpf::build(&root(), true).map_err(|e| anyhow::anyhow!("{e}"))?;

    let mut cargo = cmd::cargo();
    cargo
        .current_dir(root())
        .args(["test", "--workspace", "--exclude", "interlock-ebpf"]);
    if let Some(swarm) = &swarm {
        docker::ensure_bpffs()?;
        swarm.ensure_swarm()?;
        remove_stale_test_objects();
        // The end-to-end tests start the real agent binary.
        cmd::run(cmd::cargo().current_dir(root()).args([
            "build",
            "--package",
            "interlock-user",
            "--bin",
            "interlock",
        ]))?;
        cargo.env("INTERLOCK_BIN", root().join("target/debug/interlock"));
        // The swarm tests deploy deploy/stack.yml with the image of this checkout.
        crate::image::run()?;
        cargo.env("INTERLOCK_IMAGE", crate::image::IMAGE);
    } else {
        cargo.args(["--exclude", "interlock-tests"]);
    }
    if !extra.is_empty() {
        cargo.arg("--").args(extra);
    }
    cmd::run(&mut cargo)
}

/// Namespaces and swarm objects left by a test run that was killed (tests name theirs `ilt-*`),
/// and the demo (its XDP fast path holds docker_gwbridge, its labelled services would show up
/// in the control plane's snapshots).
fn remove_stale_test_objects() {
    if cmd::ok("docker stack ps interlock") || cmd::ok("docker service inspect demo-web") {
        eprintln!("test: removing what `cargo xtask demo` left running (the swarm tests need docker_gwbridge)");
        crate::demo::take_down();
    }
    let _ = cmd::sh("docker stack ls --format '{{.Name}}' | grep '^ilt-' | xargs -r -n1 docker stack rm >/dev/null");
    let _ = cmd::sh("rm -rf /sys/fs/bpf/ilt-stack-*");
    let _ = cmd::sh("for ns in $(ip netns list | awk '/^ilt-/ {print $1}'); do ip netns del \"$ns\"; done");
    let _ = cmd::sh("docker service ls -q --filter name=ilt- | xargs -r docker service rm >/dev/null");
    let _ = cmd::sh("docker network ls -q --filter name=ilt- | xargs -r docker network rm >/dev/null 2>&1");
}
