//! The `interlock proxy` binary with one worker thread, where it runs tokio's current-thread
//! scheduler (`interlock::runtime`): it serves a routes file, follows a rewritten one, and
//! exits cleanly on SIGTERM. A bad worker count is refused, naming the variable.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use interlock::model::{Backend, HttpRoute, ServiceRef, Snapshot};
use interlock_tests::agent::{interlock_bin, AgentProcess};
use interlock_tests::wait_until;

/// A keep-alive HTTP/1.1 backend answering every request with `200` and its name.
fn backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    // A request head ends with an empty line (the proxy sends no body here).
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}", name.len());
                    if writer.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The proxy's routes file (a snapshot): `bench.example` to `backend`.
fn write_routes(path: &Path, version: u64, backend: SocketAddr) {
    let service = ServiceRef {
        id: "one".into(),
        name: "one".into(),
    };
    let id = format!("b{version}");
    let backends = vec![Backend {
        addr: backend,
        weight: 1,
        id,
    }];
    let snapshot = Snapshot {
        version,
        http: vec![HttpRoute::plain(service, vec!["bench.example".into()], "/", backends)],
        ..Snapshot::default()
    };
    // Replaced in one step, so the proxy never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&snapshot).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `GET /` for `bench.example`: the status code and the body.
fn get(proxy: SocketAddr) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(proxy)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: bench.example\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let status = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Ok((status, body))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A directory of its own, removed however the test ends.
struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn one_worker_serves_follows_the_routes_file_and_stops_on_sigterm() {
    let scratch = Scratch(std::env::temp_dir().join(format!("ilt-one-worker-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).unwrap();
    let routes = scratch.0.join("routes.json");
    let (first, second) = (backend("first"), backend("second"));
    write_routes(&routes, 1, first);

    let proxy: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(interlock_bin());
    cmd.env("TOKIO_WORKER_THREADS", "1")
        .arg("proxy")
        .args(["--http", &proxy.to_string(), "--admin", &admin, "--routes"])
        .arg(&routes);
    let mut agent = AgentProcess::spawn(cmd).unwrap();

    let answers = |want: &str| get(proxy).map(|answer| answer == (200, want.to_string()));
    wait_until("200 from the first backend", Duration::from_secs(15), || {
        Ok(answers("first")?)
    })
    .unwrap();
    write_routes(&routes, 2, second);
    wait_until("200 from the second backend", Duration::from_secs(15), || {
        Ok(answers("second")?)
    })
    .unwrap();
    // 200 more, each on a connection of its own, all answered by the one thread.
    for _ in 0..200 {
        assert_eq!(get(proxy).unwrap(), (200, "second".to_string()));
    }
    agent.terminate(Duration::from_secs(15)).unwrap();
}

#[test]
fn a_bad_worker_count_is_refused_by_name() {
    let out = Command::new(interlock_bin())
        .env("TOKIO_WORKER_THREADS", "0")
        .args(["proxy", "--http", "127.0.0.1:0", "--routes", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with TOKIO_WORKER_THREADS=0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TOKIO_WORKER_THREADS=\"0\""),
        "the error does not name the variable: {stderr}"
    );
}
