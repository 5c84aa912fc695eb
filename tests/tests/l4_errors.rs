//! `interlock l4` refuses clearly when it cannot work: no bpffs, no capabilities.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use interlock_tests::agent::{interlock_bin, AgentProcess};
use interlock_tests::l4::BpfFsMount;
use interlock_tests::netns::NetNs;
use interlock_tests::require_root;

const CONFIG: &str =
    r#"[{"service":{"id":"s","name":"s"},"vip":"192.0.2.1","port":80,"protocol":"Tcp","backends":[]}]"#;

/// Runs `cmd` (the agent binary, maybe behind a wrapper) as `l4` and returns its output;
/// fails the test unless it exits with an error.
fn failing_agent(mut cmd: Command, config: &Path, pin_dir: &Path) -> Vec<String> {
    cmd.args(["l4", "--iface", "lo", "--skb", "--snat-addr", "10.0.0.1"])
        .arg("--config")
        .arg(config)
        .arg("--pin-dir")
        .arg(pin_dir);
    let mut agent = AgentProcess::spawn(cmd).unwrap();
    assert!(agent.wait_exit(Duration::from_secs(10)).is_err(), "the agent must fail");
    agent.output()
}

#[test]
fn l4_a_pin_dir_outside_bpffs_is_refused_by_name() {
    require_root();
    let ns = NetNs::new().unwrap();
    let dir = std::env::temp_dir().join(interlock_tests::netns::unique("ilt-nobpf-"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("l4.json");
    std::fs::write(&config, CONFIG).unwrap();
    let out = failing_agent(ns.command(interlock_bin()), &config, &dir.join("interlock"));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.iter().any(|l| l.contains("is not on a bpf filesystem")), "{out:?}");
}

#[test]
fn l4_missing_capabilities_are_named() {
    require_root();
    let ns = NetNs::new().unwrap();
    let pins = BpfFsMount::new().unwrap();
    let config = pins.dir.with_extension("json");
    std::fs::write(&config, CONFIG).unwrap();
    let mut cmd = ns.command("setpriv");
    cmd.args(["--bounding-set=-all", "--inh-caps=-all", "--"])
        .arg(interlock_bin());
    let out = failing_agent(cmd, &config, &pins.dir.join("interlock"));
    let _ = std::fs::remove_file(&config);
    assert!(
        out.iter().any(|l| l.contains("CAP_BPF") || l.contains("CAP_SYS_ADMIN")),
        "the error names the capabilities: {out:?}"
    );
}
