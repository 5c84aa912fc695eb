//! The XDP balancer end to end: a client, the balancer and three backends in namespaces
//! joined by veth pairs; real TCP servers behind the VIP; the agent as a child process.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use interlock_tests::agent::{interlock_bin, AgentProcess};
use interlock_tests::l4::{spawn_in_ns, BpfFsMount};
use interlock_tests::netns::{veth_pair, NetNs};
use interlock_tests::require_root;

const VIP: &str = "192.0.2.10";
const SNAT: &str = "10.231.99.1";
const PORT: u16 = 8080;
const MIB: usize = 1024 * 1024;
const CHUNK: usize = 64 * 1024;

struct Lab {
    client: NetNs,
    lb: NetNs,
    backends: Vec<NetNs>,
    ifaces: Vec<String>,
    pins: BpfFsMount,
    config: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let client = NetNs::new().unwrap();
        let lb = NetNs::new().unwrap();
        let (c, l) = veth_pair(&client, "10.231.11.2", &lb, "10.231.11.1").unwrap();
        client
            .ip(&["route", "add", "192.0.2.0/24", "via", "10.231.11.1"])
            .unwrap();
        client.sh(&format!("ethtool -K {} tx off", c.iface)).unwrap();
        let mut ifaces = vec![l.iface.clone()];
        let mut backends = Vec::new();
        for i in 0..3 {
            let b = NetNs::new().unwrap();
            let (lb_end, b_end) = veth_pair(&lb, &format!("10.231.2{i}.1"), &b, &format!("10.231.2{i}.2")).unwrap();
            b.ip(&["route", "add", "default", "via", &format!("10.231.2{i}.1")])
                .unwrap();
            b.sh(&format!("ethtool -K {} tx off", b_end.iface)).unwrap();
            ifaces.push(lb_end.iface);
            backends.push(b);
        }
        lb.ip(&["addr", "add", &format!("{SNAT}/32"), "dev", "lo"]).unwrap();
        lb.sh("sysctl -qw net.ipv4.ip_forward=1").unwrap();
        // The balancer forwards with the kernel's neighbour entries: resolve them first.
        lb.sh("ping -c1 -W1 10.231.11.2 && ping -c1 -W1 10.231.20.2 && ping -c1 -W1 10.231.21.2 && ping -c1 -W1 10.231.22.2")
            .unwrap();
        let pins = BpfFsMount::new().unwrap();
        let config = pins.dir.with_extension("json");
        Lab {
            client,
            lb,
            backends,
            ifaces,
            pins,
            config,
        }
    }

    fn write_config(&self, backends: &[usize]) {
        let list: Vec<String> = backends
            .iter()
            .map(|i| format!(r#"{{"addr":"10.231.2{i}.2:{PORT}","weight":1,"id":"b{i}"}}"#))
            .collect();
        let json = format!(
            r#"[{{"service":{{"id":"s","name":"echo"}},"vip":"{VIP}","port":80,"protocol":"Tcp","backends":[{}]}}]"#,
            list.join(",")
        );
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, json).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    fn agent(&self) -> AgentProcess {
        let mut cmd = self.lb.command(interlock_bin());
        cmd.args(["l4", "--skb", "--stats-interval", "2", "--snat-addr", SNAT])
            .arg("--config")
            .arg(&self.config)
            .arg("--pin-dir")
            .arg(self.pins.dir.join("interlock"));
        for i in &self.ifaces {
            cmd.args(["--iface", i]);
        }
        let mut agent = AgentProcess::spawn(cmd).unwrap();
        agent.wait_for_line("l4 applied", Duration::from_secs(20)).unwrap();
        for i in &self.ifaces {
            agent
                .wait_for_line(&format!("to {i} ("), Duration::from_secs(10))
                .unwrap();
        }
        agent
    }

    /// Starts the echo servers: each answers with its name, then echoes until EOF.
    fn start_backends(&self) {
        for (i, ns) in self.backends.iter().enumerate() {
            let (tx, rx) = std::sync::mpsc::channel();
            spawn_in_ns(ns, move || {
                let listener = TcpListener::bind(("0.0.0.0", PORT)).unwrap();
                tx.send(()).unwrap();
                for conn in listener.incoming().map_while(Result::ok) {
                    std::thread::spawn(move || serve(conn, i));
                }
            })
            .unwrap();
            rx.recv_timeout(Duration::from_secs(5)).unwrap();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

fn serve(mut conn: TcpStream, i: usize) {
    if conn.write_all(format!("backend-{i}\n").as_bytes()).is_err() {
        return;
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// A client connection through the VIP that knows which backend answered.
struct Conn {
    reader: BufReader<TcpStream>,
    backend: String,
}

impl Conn {
    fn open() -> std::io::Result<Conn> {
        let addr: SocketAddr = format!("{VIP}:80").parse().unwrap();
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut reader = BufReader::new(stream);
        let mut backend = String::new();
        reader.read_line(&mut backend)?;
        Ok(Conn {
            reader,
            backend: backend.trim().to_string(),
        })
    }

    /// Sends `len` bytes (a pattern unique to `seed`) and checks they come back intact.
    fn echo(&mut self, len: usize, seed: usize) -> std::io::Result<()> {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 + seed * 7 + i / 251) as u8).collect();
        let mut back = vec![0u8; CHUNK];
        for chunk in data.chunks(CHUNK) {
            self.reader.get_mut().write_all(chunk)?;
            self.reader.read_exact(&mut back[..chunk.len()])?;
            if back[..chunk.len()] != *chunk {
                return Err(std::io::Error::other("echoed data differs"));
            }
        }
        Ok(())
    }
}

/// Opens `n` connections from `workers` threads in the client namespace, each echoing
/// `bytes`; returns the backend of each.
fn run_connections(client: &NetNs, n: usize, workers: usize, bytes: usize) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (next, seen) = (next.clone(), seen.clone());
            spawn_in_ns(client, move || loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    return;
                }
                let mut c = Conn::open().unwrap_or_else(|e| panic!("connection {k}: {e}"));
                c.echo(bytes, k)
                    .unwrap_or_else(|e| panic!("connection {k} via {}: {e}", c.backend));
                let _ = c.reader.get_ref().shutdown(Shutdown::Both);
                seen.lock().unwrap().push(c.backend);
            })
            .unwrap()
        })
        .collect();
    for h in handles {
        h.join().expect("a client worker failed");
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), n);
    seen
}

fn count(seen: &[String], name: &str) -> usize {
    seen.iter().filter(|b| *b == name).count()
}

/// Opens connections in the client namespace and keeps them (sockets stay in their namespace).
fn hold(client: &NetNs, n: usize) -> Vec<Conn> {
    spawn_in_ns(client, move || {
        (0..n)
            .map(|k| Conn::open().unwrap_or_else(|e| panic!("held connection {k}: {e}")))
            .collect()
    })
    .unwrap()
    .join()
    .unwrap()
}

fn echo_all(conns: &mut [Conn], round: usize, what: &str) {
    for (k, c) in conns.iter_mut().enumerate() {
        c.echo(16 * 1024, round * 1000 + k)
            .unwrap_or_else(|e| panic!("{what}: held connection {k} via {}: {e}", c.backend));
    }
}

#[test]
fn l4_a_thousand_connections_spread_evenly_and_echo_a_mib_each() {
    require_root();
    let lab = Lab::new();
    lab.start_backends();
    lab.write_config(&[0, 1, 2]);
    let _agent = lab.agent();
    let seen = run_connections(&lab.client, 1000, 16, MIB);
    let counts: Vec<usize> = (0..3).map(|i| count(&seen, &format!("backend-{i}"))).collect();
    eprintln!("connections per backend: {counts:?}");
    for (i, c) in counts.iter().enumerate() {
        let dev = (*c as f64 - 1000.0 / 3.0).abs() / (1000.0 / 3.0);
        assert!(dev <= 0.15, "backend-{i} got {c} of 1000 connections");
    }
}

#[test]
fn l4_backend_removal_and_agent_restart_keep_established_connections() {
    require_root();
    let lab = Lab::new();
    lab.start_backends();
    lab.write_config(&[0, 1, 2]);
    let mut agent = lab.agent();
    let mut held = hold(&lab.client, 30);
    for i in 0..3 {
        assert!(
            held.iter().any(|c| c.backend == format!("backend-{i}")),
            "30 connections reach every backend"
        );
    }
    echo_all(&mut held, 0, "before any change");

    // Take backend-0 out: new connections avoid it, established ones all go on.
    lab.write_config(&[1, 2]);
    agent.wait_for_line("updated=1", Duration::from_secs(10)).unwrap();
    echo_all(&mut held, 1, "after removing backend-0");
    let seen = run_connections(&lab.client, 60, 4, 4096);
    assert_eq!(count(&seen, "backend-0"), 0, "new connections avoid backend-0");

    // Kill the agent (no cleanup) and start another: the pinned program goes on meanwhile.
    agent.kill();
    echo_all(&mut held, 2, "while no agent runs");
    let mut agent = lab.agent();
    agent
        .wait_for_line("took over the pinned link", Duration::from_secs(5))
        .unwrap();
    echo_all(&mut held, 3, "after the agent restarted");
    let seen = run_connections(&lab.client, 30, 4, 4096);
    assert_eq!(count(&seen, "backend-0"), 0, "the restarted agent kept backend-0 out");
    agent.terminate(Duration::from_secs(10)).unwrap();
    assert!(
        agent
            .output()
            .iter()
            .any(|l| l.starts_with("stats vip=192.0.2.10:80/tcp") && !l.contains("new_flows=0")),
        "the agent prints per-VIP stats"
    );
}

#[test]
fn l4_a_bad_config_is_named_and_changes_nothing() {
    require_root();
    let lab = Lab::new();
    lab.start_backends();
    std::fs::write(&lab.config, "[{\"service\": 42}]").unwrap();
    let mut cmd = lab.lb.command(interlock_bin());
    cmd.args(["l4", "--skb", "--snat-addr", SNAT, "--iface", &lab.ifaces[0]])
        .arg("--config")
        .arg(&lab.config)
        .arg("--pin-dir")
        .arg(lab.pins.dir.join("interlock"));
    let mut broken = AgentProcess::spawn(cmd).unwrap();
    assert!(
        broken.wait_exit(Duration::from_secs(10)).is_err(),
        "a broken first config fails"
    );
    let config_name = lab.config.display().to_string();
    assert!(
        broken
            .output()
            .iter()
            .any(|l| l.contains(&config_name) && l.contains("not a JSON array of L4 services")),
        "the error names the file: {:?}",
        broken.output()
    );
    assert!(
        !lab.pins
            .dir
            .join("interlock")
            .join(format!("link-{}", lab.ifaces[0]))
            .exists(),
        "nothing was attached"
    );

    // A running agent keeps its last good config when the file turns bad.
    lab.write_config(&[0, 1, 2]);
    let mut agent = lab.agent();
    let mut held = hold(&lab.client, 3);
    std::fs::write(
        &lab.config,
        "[{\"service\": {\"id\": \"s\", \"name\": \"echo\"}, \"port\": 80, \"protocol\": \"Tcp\", \"backends\": []}]",
    )
    .unwrap();
    let line = agent
        .wait_for_line("config not applied", Duration::from_secs(10))
        .unwrap();
    assert!(line.contains("no VIP given"), "{line}");
    echo_all(&mut held, 0, "after a bad config");
    let seen = run_connections(&lab.client, 10, 2, 4096);
    assert_eq!(seen.len(), 10, "new connections still balanced by the last good config");
}
