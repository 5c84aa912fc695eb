//! `interlock run --print-config`: the effective settings, read back from the configs the
//! planes are started with (so what it shows is what each plane gets), with the plane each
//! configures and where each value came from. The output is TOML: usable as a `--config` file.
use std::fmt::Write;
use std::path::Path;

use clap::ValueEnum;

use super::resolve::Settings;
use crate::access_log::Destination;

/// One effective setting: its key, the plane it configures and its value (`None`: unset).
pub struct Entry {
    pub key: &'static str,
    pub plane: &'static str,
    pub value: Option<String>,
}

fn quoted(s: &str) -> String {
    // TOML basic strings escape as JSON strings do.
    serde_json::to_string(s).unwrap_or_default()
}

fn path(p: &Path) -> String {
    quoted(&p.to_string_lossy())
}

fn name(v: impl ValueEnum) -> String {
    quoted(
        v.to_possible_value()
            .map(|p| p.get_name().to_string())
            .unwrap_or_default()
            .as_str(),
    )
}

impl Settings {
    /// Every setting, read back from the plane configs.
    pub fn entries(&self) -> Vec<Entry> {
        let (c, h, l, a) = (&self.control, &self.http, &self.l4, &self.agent);
        let e = |key, plane, value: Option<String>| Entry { key, plane, value };
        let s = |v: &dyn ToString| Some(quoted(&v.to_string()));
        vec![
            e("role", "control", Some(name(c.role))),
            e("leader", "control", c.leader.as_deref().map(quoted)),
            e("snapshot_listen", "control", c.snapshot_listen.and_then(|v| s(&v))),
            e("stream_tls_dir", "control", c.stream_tls_dir.as_deref().map(path)),
            e("poll_ms", "control", Some(c.poll.as_millis().to_string())),
            e("reconcile_s", "control", Some(c.reconcile.as_secs().to_string())),
            e("service_cluster", "control", c.service_cluster.as_deref().map(quoted)),
            e("secrets_dir", "control", Some(path(&c.secrets_dir))),
            e("http", "http", s(&h.http)),
            e(
                "https",
                "http",
                Some(h.https.map_or_else(|| quoted("off"), |v| quoted(&v.to_string()))),
            ),
            e("admin", "http", s(&h.admin)),
            e("listen_netns", "http", h.listen_netns.as_deref().map(path)),
            e("handover", "http", Some(h.handover.to_string())),
            e("proxy_id", "http", Some(quoted(&h.proxy_id))),
            e("max_connections", "http", Some(h.max_connections.to_string())),
            e("max_backend_requests", "http", Some(h.max_backend_requests.to_string())),
            e(
                "header_read_timeout_s",
                "http",
                Some(h.header_read_timeout.as_secs().to_string()),
            ),
            e(
                "client_body_timeout_s",
                "http",
                Some(h.client_body_timeout.as_secs().to_string()),
            ),
            e(
                "max_request_body_bytes",
                "http",
                Some(h.max_request_body.unwrap_or(0).to_string()),
            ),
            e(
                "connect_timeout_ms",
                "http",
                Some(h.connect_timeout.as_millis().to_string()),
            ),
            e("backend_attempts", "http", Some(h.backend_attempts.to_string())),
            e("eject_after_failures", "http", Some(h.ejection.after.to_string())),
            e("eject_base_ms", "http", Some(h.ejection.base.as_millis().to_string())),
            e("eject_max_ms", "http", Some(h.ejection.max.as_millis().to_string())),
            e(
                "health_timeout_ms",
                "http",
                Some(h.health_timeout.as_millis().to_string()),
            ),
            e(
                "upstream_timeout_s",
                "http",
                Some(h.upstream_timeout.as_secs().to_string()),
            ),
            e("drain_grace_s", "http", Some(h.drain_grace.as_secs().to_string())),
            e(
                "trusted_proxies",
                "http",
                Some(format!(
                    "[{}]",
                    h.trusted_proxies
                        .entries()
                        .map(|n| quoted(&n))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ),
            e(
                "first_routes_wait_s",
                "http",
                Some(h.first_routes_wait.as_secs().to_string()),
            ),
            e("tls_min_version", "http", Some(name(h.tls.min_version))),
            e(
                "tls_ciphers",
                "http",
                Some(format!(
                    "[{}]",
                    h.tls.ciphers.iter().map(|c| quoted(c)).collect::<Vec<_>>().join(", ")
                )),
            ),
            e(
                "access_log",
                "http",
                Some(quoted(match &h.access_log {
                    Destination::Stderr => "stderr",
                    Destination::Off => "off",
                    Destination::File(p) => p.to_str().unwrap_or_default(),
                })),
            ),
            e("access_log_format", "http", Some(name(h.access_log_format))),
            e(
                "xdp_interfaces",
                "l4",
                Some(format!(
                    "[{}]",
                    l.interfaces.iter().map(|i| quoted(i)).collect::<Vec<_>>().join(", ")
                )),
            ),
            e("xdp_mode", "l4", Some(name(l.mode))),
            e("l4_vip", "l4", l.vip.and_then(|v| s(&v))),
            e("bpffs", "l4", Some(path(&l.bpffs))),
            e("host_netns", "l4", l.host_netns.as_deref().map(path)),
            e("docker_host", "agent", a.docker_host.as_deref().map(quoted)),
            e("join_networks", "node", Some(a.join_networks.to_string())),
            e(
                "allowed_networks",
                "node",
                a.allowed_networks
                    .as_ref()
                    .map(|l| format!("[{}]", l.iter().map(|n| quoted(n)).collect::<Vec<_>>().join(", "))),
            ),
            e("log_format", "agent", Some(name(a.log_format))),
        ]
    }

    /// The `--print-config` text: `key = value  # plane, source`, unset keys commented out.
    pub fn render(&self) -> String {
        let mut out =
            String::from("# interlock run: effective settings (plane it configures, where the value came from)\n");
        for e in self.entries() {
            let source = self.origins.of(e.key).name();
            let _ = match &e.value {
                Some(v) => writeln!(out, "{} = {v}  # {}, {source}", e.key, e.plane),
                None => writeln!(out, "# {} unset  # {}, {source}", e.key, e.plane),
            };
        }
        out
    }
}
