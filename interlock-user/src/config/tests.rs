use std::collections::BTreeSet;

use super::*;

fn resolve(args: RunArgs, file: RunArgs) -> anyhow::Result<Settings> {
    Settings::resolve(args, file, &Given::default())
}

#[test]
fn defaults_when_nothing_is_given() {
    let s = resolve(RunArgs::default(), RunArgs::default()).unwrap();
    assert_eq!(s.control.role, Role::Auto);
    assert_eq!(s.http.http, "0.0.0.0:80".parse().unwrap());
    assert_eq!(s.http.admin, "127.0.0.1:9090".parse().unwrap());
    assert_eq!(s.http.https, None);
    assert!(s.http.handover, "listening sockets are handed over by default");
    assert_eq!(s.http.listen_netns, None);
    assert_eq!(s.http.max_connections, 20_000);
    assert_eq!(s.control.poll.as_millis(), 1000);
    assert_eq!(s.control.secrets_dir, std::path::PathBuf::from("/run/secrets"));
    assert!(s.l4.interfaces.is_empty());
    assert_eq!(s.l4.mode, XdpMode::Skb);
    assert!(!s.agent.join_networks);
    assert_eq!(s.origins.of("http"), Source::Default);
}

#[test]
fn flags_win_over_the_file_and_the_file_over_defaults() {
    let file = parse_file(
        "http = \"0.0.0.0:8080\"\nadmin = \"0.0.0.0:9100\"\nxdp_interfaces = [\"eth0\"]\nrole = \"follower\"\n\
         join_networks = true\nlog_format = \"json\"\npoll_ms = 250\n",
    )
    .unwrap();
    let mut args = RunArgs::default();
    args.http.http = Some("127.0.0.1:8000".parse().unwrap());
    args.http.https = Some("0.0.0.0:8443".into());
    let s = resolve(args, file).unwrap();
    assert_eq!(s.http.http, "127.0.0.1:8000".parse().unwrap());
    assert_eq!(s.origins.of("http"), Source::Flag);
    assert_eq!(s.http.https, Some("0.0.0.0:8443".parse().unwrap()));
    assert_eq!(s.http.admin, "0.0.0.0:9100".parse().unwrap());
    assert_eq!(s.origins.of("admin"), Source::File);
    assert_eq!(s.l4.interfaces, vec!["eth0".to_string()]);
    assert_eq!(s.control.role, Role::Follower);
    assert_eq!(s.control.poll.as_millis(), 250);
    assert!(s.agent.join_networks);
    assert_eq!(s.agent.log_format, LogFormat::Json);
}

#[test]
fn bad_values_name_the_setting() {
    let typo = parse_file("htp = \"0.0.0.0:80\"").unwrap_err();
    assert!(format!("{typo:#}").contains("htp"), "{typo:#}");
    let wrong_type = parse_file("max_connections = \"many\"").unwrap_err();
    assert!(format!("{wrong_type:#}").contains("max_connections"), "{wrong_type:#}");
    let mut args = RunArgs::default();
    args.http.https = Some("443".into());
    let e = resolve(args, RunArgs::default()).unwrap_err();
    assert!(format!("{e:#}").contains("https"), "{e:#}");
    let mut args = RunArgs::default();
    args.control.poll_ms = Some(5);
    let e = resolve(args, RunArgs::default()).unwrap_err();
    assert!(format!("{e:#}").contains("poll_ms"), "{e:#}");
    let zero = parse_file("client_body_timeout_s = 0").unwrap();
    let e = resolve(RunArgs::default(), zero).unwrap_err();
    assert!(format!("{e:#}").contains("client_body_timeout_s"), "{e:#}");
}

#[test]
fn empty_interface_list_means_no_fast_path() {
    let mut args = RunArgs::default();
    args.l4.xdp_interfaces = Some(vec!["".into()]);
    args.http.https = Some("off".into());
    let s = resolve(args, RunArgs::default()).unwrap();
    assert!(s.l4.interfaces.is_empty());
    assert_eq!(s.http.https, None);
}

#[test]
fn the_network_allow_list_is_all_by_default_and_when_empty() {
    let s = resolve(RunArgs::default(), RunArgs::default()).unwrap();
    assert_eq!(s.agent.allowed_networks, None, "default: every network");
    let mut args = RunArgs::default();
    // What the stack passes when INTERLOCK_ALLOWED_NETWORKS is unset.
    args.agent.allowed_networks = Some(vec!["".into()]);
    let s = resolve(args, RunArgs::default()).unwrap();
    assert_eq!(s.agent.allowed_networks, None, "empty: every network, not none");
    let file = parse_file("allowed_networks = [\"front\", \" app_net \"]").unwrap();
    let s = resolve(RunArgs::default(), file).unwrap();
    let want: BTreeSet<String> = ["app_net", "front"].iter().map(|n| n.to_string()).collect();
    assert_eq!(s.agent.allowed_networks, Some(want));
    assert!(
        s.render()
            .contains("allowed_networks = [\"app_net\", \"front\"]  # node, file"),
        "{}",
        s.render()
    );
}

/// `--print-config` reads every setting back from the plane configs: none is left out, and
/// none is shown that `interlock run` does not take.
#[test]
fn every_setting_is_shown_from_its_plane() {
    let s = resolve(RunArgs::default(), RunArgs::default()).unwrap();
    let shown: BTreeSet<String> = s.entries().iter().map(|e| e.key.to_string()).collect();
    let keys: BTreeSet<String> = args::run_keys().into_iter().collect();
    assert_eq!(shown, keys);
    // The printed defaults are themselves a valid settings file.
    let text = s.render();
    let again = resolve(RunArgs::default(), parse_file(&text).unwrap()).unwrap();
    assert_eq!(again.http, s.http);
    assert_eq!(again.control, s.control);
}

/// README's settings table lists every setting with its flag, variable and default, and
/// nothing else.
#[test]
fn readme_settings_table_matches() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("### `interlock run` settings")
        .expect("README has the settings section");
    let rows: Vec<Vec<String>> = readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    let defaults = resolve(RunArgs::default(), RunArgs::default()).unwrap();
    let mut listed = BTreeSet::new();
    for row in &rows {
        let key = row[0].trim_matches('`').trim_start_matches("--").replace('-', "_");
        assert_eq!(
            row[1],
            format!("`INTERLOCK_{}`", key.to_uppercase()),
            "README row {key}: its variable"
        );
        let entry = defaults.entries().into_iter().find(|e| e.key == key);
        let entry = entry.unwrap_or_else(|| panic!("README lists {key}, which interlock run does not take"));
        // Defaults that are values (not "the host name") are written as --print-config shows them.
        if let Some(value) = &entry.value {
            if key != "proxy_id" {
                let plain = value.trim_matches('"');
                let written = if plain == "[]" {
                    "none".to_string()
                } else {
                    format!("`{plain}`")
                };
                assert!(
                    row[2].contains(&written),
                    "README row {key}: default {plain}, table says {}",
                    row[2]
                );
            }
        }
        listed.insert(key);
    }
    let keys: BTreeSet<String> = args::run_keys().into_iter().collect();
    assert_eq!(
        listed, keys,
        "README's settings table and interlock run's settings differ"
    );
}

#[test]
fn access_log_settings() {
    let s = resolve(RunArgs::default(), RunArgs::default()).unwrap();
    assert_eq!(s.http.access_log, crate::access_log::Destination::Stderr);
    assert_eq!(s.http.access_log_format, AccessLogFormat::Text);
    assert_eq!(s.http.max_request_body, None, "no body limit by default");
    // JSON logs: JSON access lines, unless a format is given.
    let json = parse_file("log_format = \"json\"\naccess_log = \"off\"\nmax_request_body_bytes = 1024\n").unwrap();
    let s = resolve(RunArgs::default(), json.clone()).unwrap();
    assert_eq!(s.http.access_log_format, AccessLogFormat::Json);
    assert_eq!(s.http.access_log, crate::access_log::Destination::Off);
    assert_eq!(s.http.max_request_body, Some(1024));
    let mut args = RunArgs::default();
    args.http.access_log_format = Some(AccessLogFormat::Combined);
    args.http.access_log = Some("/var/log/a.log".into());
    let s = resolve(args, json).unwrap();
    assert_eq!(s.http.access_log_format, AccessLogFormat::Combined);
    assert_eq!(
        s.http.access_log,
        crate::access_log::Destination::File("/var/log/a.log".into())
    );
    let bad = parse_file("access_log_format = \"xml\"").unwrap_err();
    assert!(format!("{bad:#}").contains("access_log_format"), "{bad:#}");
}

#[test]
fn tls_settings_are_checked_at_start() {
    let s = resolve(RunArgs::default(), RunArgs::default()).unwrap();
    assert_eq!(s.http.tls, crate::l7::front::tls::TlsPolicy::default());
    let file = parse_file("tls_min_version = \"1.3\"\ntls_ciphers = [\"tls13_aes_256_gcm_sha384\"]\n").unwrap();
    let s = resolve(RunArgs::default(), file).unwrap();
    assert_eq!(s.http.tls.min_version, crate::l7::front::tls::TlsMinVersion::Tls13);
    assert_eq!(s.http.tls.ciphers, vec!["TLS13_AES_256_GCM_SHA384".to_string()]);
    let bad = parse_file("tls_ciphers = [\"TLS13_AES_256_GCM_SHA384\", \"DES-CBC3-SHA\"]").unwrap();
    let e = format!("{:#}", resolve(RunArgs::default(), bad).unwrap_err());
    assert!(
        e.contains("tls_ciphers") && e.contains("DES-CBC3-SHA") && e.contains("TLS13_CHACHA20_POLY1305_SHA256"),
        "{e}"
    );
    let bad = parse_file("tls_min_version = \"1.1\"").unwrap_err();
    assert!(format!("{bad:#}").contains("tls_min_version"), "{bad:#}");
}

#[test]
fn backend_settings_are_bounded() {
    let s = resolve(RunArgs::default(), RunArgs::default()).unwrap();
    assert_eq!(s.http.connect_timeout.as_millis(), 3000);
    assert_eq!(s.http.backend_attempts, 3);
    assert_eq!(s.http.health_timeout.as_millis(), 2000);
    for bad in [
        "backend_attempts = 0",
        "backend_attempts = 6",
        "connect_timeout_ms = 0",
        "health_timeout_ms = 0",
    ] {
        let key = bad.split(' ').next().unwrap();
        let e = resolve(RunArgs::default(), parse_file(bad).unwrap()).unwrap_err();
        assert!(format!("{e:#}").contains(key), "{e:#}");
    }
}

#[test]
fn ejection_settings_are_checked() {
    let s = resolve(RunArgs::default(), RunArgs::default()).unwrap();
    assert_eq!(s.http.ejection, crate::l7::route::balance::Ejection::default());
    let e = resolve(
        RunArgs::default(),
        parse_file("eject_base_ms = 5000\neject_max_ms = 100").unwrap(),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("eject_max_ms"), "{e:#}");
    let e = resolve(RunArgs::default(), parse_file("eject_base_ms = 0").unwrap()).unwrap_err();
    assert!(format!("{e:#}").contains("eject_base_ms"), "{e:#}");
}
