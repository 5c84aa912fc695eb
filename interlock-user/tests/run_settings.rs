//! Every documented setting of `interlock run` reaches the plane it configures, whether given
//! by flag, by `INTERLOCK_*` variable or by the TOML file: `--print-config` reads the values
//! back from the configs the planes are started with, and says where each came from.
use std::collections::BTreeSet;
use std::process::Command;

/// key, the plane it configures, the value given (flag / variable form), the same value in
/// TOML, and how `--print-config` shows it. None of them is the default.
const SETTINGS: &[(&str, &str, &str, &str, &str)] = &[
    ("role", "control", "follower", "\"follower\"", "\"follower\""),
    (
        "leader",
        "control",
        "leader.example:7070",
        "\"leader.example:7070\"",
        "\"leader.example:7070\"",
    ),
    (
        "snapshot_listen",
        "control",
        "127.0.0.1:7071",
        "\"127.0.0.1:7071\"",
        "\"127.0.0.1:7071\"",
    ),
    (
        "stream_tls_dir",
        "control",
        "/etc/interlock-tls",
        "\"/etc/interlock-tls\"",
        "\"/etc/interlock-tls\"",
    ),
    ("poll_ms", "control", "250", "250", "250"),
    ("reconcile_s", "control", "45", "45", "45"),
    ("service_cluster", "control", "blue", "\"blue\"", "\"blue\""),
    (
        "secrets_dir",
        "control",
        "/var/secrets",
        "\"/var/secrets\"",
        "\"/var/secrets\"",
    ),
    (
        "http",
        "http",
        "127.0.0.1:8080",
        "\"127.0.0.1:8080\"",
        "\"127.0.0.1:8080\"",
    ),
    (
        "https",
        "http",
        "127.0.0.1:8443",
        "\"127.0.0.1:8443\"",
        "\"127.0.0.1:8443\"",
    ),
    (
        "admin",
        "http",
        "127.0.0.1:9191",
        "\"127.0.0.1:9191\"",
        "\"127.0.0.1:9191\"",
    ),
    (
        "listen_netns",
        "http",
        "/proc/1/ns/net",
        "\"/proc/1/ns/net\"",
        "\"/proc/1/ns/net\"",
    ),
    ("handover", "http", "false", "false", "false"),
    ("proxy_id", "http", "edge-1", "\"edge-1\"", "\"edge-1\""),
    ("max_connections", "http", "321", "321", "321"),
    ("max_backend_requests", "http", "17", "17", "17"),
    ("header_read_timeout_s", "http", "7", "7", "7"),
    ("client_body_timeout_s", "http", "12", "12", "12"),
    ("max_request_body_bytes", "http", "1048576", "1048576", "1048576"),
    ("connect_timeout_ms", "http", "1500", "1500", "1500"),
    ("backend_attempts", "http", "2", "2", "2"),
    ("eject_after_failures", "http", "5", "5", "5"),
    ("eject_base_ms", "http", "250", "250", "250"),
    ("eject_max_ms", "http", "9000", "9000", "9000"),
    ("health_timeout_ms", "http", "750", "750", "750"),
    ("upstream_timeout_s", "http", "33", "33", "33"),
    ("drain_grace_s", "http", "4", "4", "4"),
    ("first_routes_wait_s", "http", "2", "2", "2"),
    ("tls_min_version", "http", "1.3", "\"1.3\"", "\"1.3\""),
    (
        "tls_ciphers",
        "http",
        "TLS13_AES_256_GCM_SHA384,tls13_chacha20_poly1305_sha256",
        "[\"TLS13_AES_256_GCM_SHA384\", \"tls13_chacha20_poly1305_sha256\"]",
        "[\"TLS13_AES_256_GCM_SHA384\", \"TLS13_CHACHA20_POLY1305_SHA256\"]",
    ),
    (
        "access_log",
        "http",
        "/var/log/interlock-access.log",
        "\"/var/log/interlock-access.log\"",
        "\"/var/log/interlock-access.log\"",
    ),
    ("access_log_format", "http", "combined", "\"combined\"", "\"combined\""),
    (
        "trusted_proxies",
        "http",
        "10.0.0.0/8,192.0.2.7",
        "[\"10.0.0.0/8\", \"192.0.2.7\"]",
        "[\"10.0.0.0/8\", \"192.0.2.7/32\"]",
    ),
    (
        "xdp_interfaces",
        "l4",
        "eth0,eth1",
        "[\"eth0\", \"eth1\"]",
        "[\"eth0\", \"eth1\"]",
    ),
    ("xdp_mode", "l4", "driver", "\"driver\"", "\"driver\""),
    ("l4_vip", "l4", "192.0.2.10", "\"192.0.2.10\"", "\"192.0.2.10\""),
    (
        "bpffs",
        "l4",
        "/sys/fs/bpf/other",
        "\"/sys/fs/bpf/other\"",
        "\"/sys/fs/bpf/other\"",
    ),
    (
        "host_netns",
        "l4",
        "/proc/1/ns/net",
        "\"/proc/1/ns/net\"",
        "\"/proc/1/ns/net\"",
    ),
    (
        "docker_host",
        "agent",
        "unix:///run/other.sock",
        "\"unix:///run/other.sock\"",
        "\"unix:///run/other.sock\"",
    ),
    ("join_networks", "node", "true", "true", "true"),
    (
        "allowed_networks",
        "node",
        "app_net,db_net",
        "[\"app_net\", \"db_net\"]",
        "[\"app_net\", \"db_net\"]",
    ),
    ("log_format", "agent", "json", "\"json\"", "\"json\""),
];

/// `interlock run --print-config` with nothing from this process's environment.
fn run_print_config(configure: impl FnOnce(&mut Command)) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_interlock"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("INTERLOCK_") {
            cmd.env_remove(name);
        }
    }
    cmd.args(["run", "--print-config"]);
    configure(&mut cmd);
    cmd.output().expect("running interlock")
}

/// What a successful `--print-config` printed.
fn print_config(configure: impl FnOnce(&mut Command)) -> String {
    let out = run_print_config(configure);
    assert!(
        out.status.success(),
        "interlock run --print-config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Checks every setting is shown with the given value, its plane and `source`.
fn assert_all_reach_their_planes(text: &str, source: &str) {
    for (key, plane, _, _, shown) in SETTINGS {
        let line = format!("{key} = {shown}  # {plane}, {source}");
        assert!(
            text.lines().any(|l| l == line),
            "expected the line `{line}` in:\n{text}"
        );
    }
    // And the test covers every setting there is.
    let printed: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with("# interlock run"))
        .filter_map(|l| l.trim_start_matches("# ").split([' ', '=']).next())
        .collect();
    let tested: BTreeSet<&str> = SETTINGS.iter().map(|s| s.0).collect();
    assert_eq!(
        printed, tested,
        "settings printed but not tested here, or the other way round"
    );
}

#[test]
fn every_setting_by_flag_reaches_its_plane() {
    let text = print_config(|cmd| {
        for (key, _, value, _, _) in SETTINGS {
            cmd.arg(format!("--{}", key.replace('_', "-"))).arg(value);
        }
    });
    assert_all_reach_their_planes(&text, "flag");
}

#[test]
fn every_setting_by_environment_reaches_its_plane() {
    let text = print_config(|cmd| {
        for (key, _, value, _, _) in SETTINGS {
            cmd.env(format!("INTERLOCK_{}", key.to_uppercase()), value);
        }
    });
    assert_all_reach_their_planes(&text, "env");
}

#[test]
fn every_setting_by_file_reaches_its_plane() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("interlock.toml");
    let toml: String = SETTINGS.iter().map(|(k, _, _, v, _)| format!("{k} = {v}\n")).collect();
    std::fs::write(&file, toml).unwrap();
    let text = print_config(|cmd| {
        cmd.arg("--config").arg(&file);
    });
    assert_all_reach_their_planes(&text, "file");
}

#[test]
fn a_flag_wins_over_the_environment_and_the_environment_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("interlock.toml");
    std::fs::write(
        &file,
        "max_connections = 1\ndrain_grace_s = 1\nadmin = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let text = print_config(|cmd| {
        cmd.arg("--config").arg(&file).args(["--max-connections", "3"]);
        cmd.env("INTERLOCK_MAX_CONNECTIONS", "2")
            .env("INTERLOCK_DRAIN_GRACE_S", "2");
    });
    for line in [
        "max_connections = 3  # http, flag",
        "drain_grace_s = 2  # http, env",
        "admin = \"127.0.0.1:1\"  # http, file",
    ] {
        assert!(text.lines().any(|l| l == line), "expected `{line}` in:\n{text}");
    }
}

#[test]
fn a_bad_file_or_value_names_the_setting_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("interlock.toml");
    std::fs::write(&file, "max_conections = 3\n").unwrap();
    let out = run_print_config(|cmd| {
        cmd.arg("--config").arg(&file);
    });
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_conections") && err.contains("interlock.toml"),
        "{err}"
    );
    let out = run_print_config(|cmd| {
        cmd.args(["--https", "443"]);
    });
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("https"));
}
