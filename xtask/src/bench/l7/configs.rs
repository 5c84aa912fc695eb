//! What each server of the bench is given: the same route (Host `bench.example`, path `/`)
//! to the same backend, one worker each, access logs written to a file as each server does
//! by default in production (interlock's one line per request on stderr, nginx's
//! `access_log`, HAProxy's `option httplog`).
use std::path::Path;
use std::process::Command;

use anyhow::Result;

use super::process::{Placement, WORKERS};

pub const BACKEND_PORT: u16 = 18180;

/// nginx's own files, and whether it runs as one process (under valgrind) or master + workers.
pub struct Nginx<'a> {
    pub dir: &'a Path,
    pub name: &'a str,
    pub single_process: bool,
    pub worker_connections: u32,
}

impl Nginx<'_> {
    pub fn command(&self, placement: Placement, http: &str) -> Command {
        let prefix = self.dir.join(self.name);
        let _ = std::fs::create_dir_all(&prefix);
        let p = prefix.to_string_lossy();
        let process = if self.single_process {
            "master_process off;\n"
        } else {
            ""
        };
        let connections = self.worker_connections;
        let conf = format!(
            "daemon off;\n{process}worker_processes {WORKERS};\nerror_log {p}/error.log;\npid {p}/nginx.pid;\n\
             events {{ worker_connections {connections}; }}\nhttp {{\nclient_body_temp_path {p}/body;\nproxy_temp_path {p}/proxy;\n\
             fastcgi_temp_path {p}/fastcgi;\nuwsgi_temp_path {p}/uwsgi;\nscgi_temp_path {p}/scgi;\n\
             keepalive_requests 1000000;\n{http}\n}}\n"
        );
        let conf_path = self.dir.join(format!("{}.conf", self.name));
        let _ = std::fs::write(&conf_path, conf);
        let mut c = placement.command("nginx");
        c.arg("-p").arg(&prefix).arg("-c").arg(&conf_path);
        c
    }
}

/// The backend: nginx answering a fixed body, no log.
pub fn backend_http() -> String {
    format!("access_log off;\nserver {{ listen 127.0.0.1:{BACKEND_PORT}; location / {{ return 200 \"ok\\n\"; }} }}")
}

/// What a reference proxy is asked to do besides forwarding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// What NGINX-based Interlock did and interlock does: X-Forwarded-For/-Proto/-Host to
    /// the backend; `x-upstream-addr`, `x-upstream-response-time`, `x-request-id` (random,
    /// 32 hex digits) and `x-proxy-id` to the client; an access line with the same fields
    /// as interlock's. The like-for-like reference.
    LikeInterlock,
    /// Only Host and X-Forwarded-For, nginx's default log line: less work than interlock
    /// does, kept as a second reference.
    Plain,
}

/// nginx as the proxy: upstream keep-alive, the headers and log line `work` says.
pub fn nginx_proxy_http(dir: &Path, port: u16, work: Work) -> String {
    let log = dir.join(format!("nginx-access-{port}.log"));
    let log = log.display();
    let (log, extra) = match work {
        Work::LikeInterlock => (
            format!(
                "log_format interlock '$time_iso8601 INFO interlock::access: client=$remote_addr \
                 method=$request_method host=$host path=$uri route=bench upstream=$upstream_addr \
                 status=$status s=$request_time request_id=$request_id';\naccess_log {log} interlock;"
            ),
            "proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Forwarded-Host $host;\n\
             add_header x-upstream-addr $upstream_addr always; \
             add_header x-upstream-response-time $upstream_response_time always;\n\
             add_header x-request-id $request_id always; add_header x-proxy-id bench always;",
        ),
        Work::Plain => (format!("access_log {log};"), ""),
    };
    format!(
        "{log}\n\
         upstream backend {{ server 127.0.0.1:{BACKEND_PORT}; keepalive 128; }}\n\
         server {{ listen 127.0.0.1:{port}; server_name bench.example;\n\
         location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\";\n\
         proxy_set_header Host $host; proxy_set_header X-Forwarded-For $remote_addr;\n{extra} }} }}"
    )
}

/// HAProxy with the same route and the same added headers as [`Work::LikeInterlock`]; its
/// log lines go to its stdout, which the bench sends to a file.
pub fn haproxy(dir: &Path, port: u16) -> Result<Command> {
    let conf = format!(
        "global\n  nbthread {WORKERS}\n  maxconn 4096\n  log stdout format raw local0\ndefaults\n  mode http\n  log global\n\
         option httplog\n  timeout connect 3s\n  timeout client 60s\n  timeout server 60s\n  option forwardfor\n\
         http-reuse always\nfrontend fe\n  bind 127.0.0.1:{port}\n  unique-id-format %[uuid]\n\
         http-request set-header X-Forwarded-Proto http\n  http-request set-header X-Forwarded-Host %[req.hdr(host)]\n\
         acl host_bench hdr(host) -i bench.example\n  use_backend be if host_bench\nbackend be\n\
         http-response set-header x-upstream-addr %si:%sp\n  http-response set-header x-upstream-response-time %Tr\n\
         http-response set-header x-request-id %[unique-id]\n  http-response set-header x-proxy-id bench\n\
         server s1 127.0.0.1:{BACKEND_PORT}\n"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf)?;
    let mut c = Placement::Proxy.command("haproxy");
    c.arg("-db").arg("-f").arg(&path);
    Ok(c)
}

/// interlock with its default settings (access log at info), its log in a file.
pub fn interlock(placement: Placement, program: &Path, routes: &Path, port: u16, admin: u16) -> Command {
    let mut c = placement.command(&program.to_string_lossy());
    c.args(["proxy", "--http", &format!("127.0.0.1:{port}")])
        .args([
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--proxy-id",
            "bench",
            "--routes",
        ])
        .arg(routes)
        .env("TOKIO_WORKER_THREADS", WORKERS.to_string())
        .env_remove("RUST_LOG");
    c
}

/// The route file interlock reads (and re-reads when it changes).
pub fn write_routes(path: &Path, version: u64) -> Result<()> {
    let json = format!(
        r#"{{"version":{version},"http":[{{"service":{{"id":"bench","name":"bench"}},"hosts":["bench.example"],
        "path_prefix":"/","strip_prefix":false,"tls":"None","ssl_only":false,"websocket_endpoints":[],
        "stickiness":"None","redirects":[],"default_backend":false,"health_check":null,
        "backends":[{{"addr":"127.0.0.1:{BACKEND_PORT}","weight":1,"id":"backend"}}]}}],"l4":[],"networks":[]}}"#
    );
    // Atomic replace: the proxy never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
