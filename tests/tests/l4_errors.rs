//! `interlock l4` refuses clearly when it cannot work: no bpffs, no capabilities, maps pinned
//! by an incompatible version.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aya::maps::{Array, MapData};
use interlock_common::lb::LbConfig;
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

/// The names in `dir`, sorted: what a refused start must leave as it was.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A pin directory whose `LB_CONFIG` has another value size (as an older version's would) is
/// refused by name before anything is loaded or attached; so is one missing a map.
#[test]
fn l4_a_pin_dir_of_another_layout_is_refused_and_left_alone() {
    require_root();
    let ns = NetNs::new().unwrap();
    // Dropped last: unmounting the bpffs removes every pin, also when an assertion fails.
    let pins = BpfFsMount::new().unwrap();
    let config = pins.dir.with_extension("json");
    std::fs::write(&config, CONFIG).unwrap();
    let _config_file = Removed(config.clone());
    let dir = pins.dir.join("interlock");
    std::fs::create_dir_all(&dir).unwrap();

    assert_ne!(size_of::<LbConfig>(), size_of::<u64>());
    Array::<MapData, u64>::create(1, 0)
        .unwrap()
        .pin(dir.join("LB_CONFIG"))
        .unwrap();
    let before = listing(&dir);
    let out = failing_agent(ns.command(interlock_bin()), &config, &dir);
    let want = format!(
        "the maps pinned in {} come from an incompatible version of interlock: LB_CONFIG has 4-byte keys, \
         8-byte values and 1 entries, not 4, {} and 1; stop the agent and remove that directory",
        dir.display(),
        size_of::<LbConfig>()
    );
    assert!(out.iter().any(|l| l.contains(&want)), "{out:?}");
    assert_eq!(listing(&dir), before, "the refused directory is left as it was");
    assert!(!out.iter().any(|l| l.contains("attached")), "{out:?}");

    // The right layout, but the other maps are missing.
    std::fs::remove_file(dir.join("LB_CONFIG")).unwrap();
    Array::<MapData, LbConfig>::create(1, 0)
        .unwrap()
        .pin(dir.join("LB_CONFIG"))
        .unwrap();
    let out = failing_agent(ns.command(interlock_bin()), &config, &dir);
    assert!(
        out.iter()
            .any(|l| l.contains("incompatible version of interlock: LB_VIPS is missing; stop the agent")),
        "{out:?}"
    );
    assert_eq!(listing(&dir), before);
}

/// A file removed on drop (also when an assertion fails).
struct Removed(std::path::PathBuf);
impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
