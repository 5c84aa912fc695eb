//! The L4 fast path of the deployed stack: a client in its own namespace reaches an
//! `com.docker.lb.l4.port` service through XDP on the host side of its link; the agent's task
//! is killed and replaced by swarm while connections are open: they keep echoing, and new
//! ones work with the new agent.
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use interlock_tests::docker::{docker, ensure_backend_image, Network, Service};
use interlock_tests::l4::spawn_in_ns;
use interlock_tests::netns::{ip, NetNs};
use interlock_tests::stack::Stack;
use interlock_tests::{report, require_root};

const VIP: &str = "10.97.0.1";
const PORT: u16 = 9000;

/// A connection to the VIP, opened from the client namespace.
struct Echo {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Echo {
    fn open(client: &NetNs) -> Result<Echo> {
        let stream = spawn_in_ns(client, || {
            TcpStream::connect_timeout(&format!("{VIP}:{PORT}").parse().expect("addr"), Duration::from_secs(2))
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("connect thread panicked"))?
        .context("connecting to the VIP")?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        Ok(Echo {
            reader: BufReader::new(stream.try_clone()?),
            stream,
        })
    }

    fn ping(&mut self, text: &str) -> Result<()> {
        writeln!(self.stream, "{text}")?;
        let mut line = String::new();
        self.reader.read_line(&mut line).context("reading the echo")?;
        if line.trim_end() != text {
            bail!("sent {text:?}, got {line:?}");
        }
        Ok(())
    }
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("{what} within {timeout:?}: {e:#}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[test]
fn l4_flows_go_through_xdp_and_survive_the_agent_being_replaced() {
    require_root();
    ensure_backend_image().unwrap();
    // The client's link: its host side plays the node's NIC (the XDP interface, VIP on it).
    let client = NetNs::new().unwrap();
    let host_if = format!("ilv{}", std::process::id() % 100_000);
    ip(&[
        "link",
        "add",
        &host_if,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &client.name,
    ])
    .unwrap();
    ip(&["addr", "add", &format!("{VIP}/24"), "dev", &host_if]).unwrap();
    ip(&["link", "set", &host_if, "up"]).unwrap();
    client.ip(&["addr", "add", "10.97.0.2/24", "dev", "eth0"]).unwrap();
    client.ip(&["link", "set", "eth0", "up"]).unwrap();
    // Full checksums from the client: XDP rewrites them incrementally.
    client.sh("ethtool -K eth0 tx off >/dev/null").unwrap();

    let net = Network::new().unwrap();
    let stack = Stack::deploy(&host_if).unwrap();
    let _echo = Service::create_cmd(
        &[
            "--network",
            &net.name,
            "--replicas",
            "2",
            "--label",
            &format!("com.docker.lb.l4.port={PORT}"),
            "--entrypoint",
            "/busybox",
        ],
        &["nc", "-ll", "-p", &PORT.to_string(), "-e", "/busybox", "cat"],
    )
    .unwrap();

    let mut first = wait_for("the L4 service answering", Duration::from_secs(60), || {
        let mut e = Echo::open(&client)?;
        e.ping("hello")?;
        Ok(e)
    });
    let mut conns: Vec<Echo> = (0..20).map(|_| Echo::open(&client).unwrap()).collect();
    conns.push(Echo::open(&client).unwrap());
    for (i, c) in conns.iter_mut().enumerate() {
        c.ping(&format!("before-{i}")).unwrap();
    }
    let table = stack.status().unwrap();
    assert!(
        table.contains(&format!("{VIP}:{PORT}/tcp")),
        "status lists the L4 service:\n{table}"
    );
    let metrics = wait_for("the L4 counters on /metrics", Duration::from_secs(5), || {
        let m = stack.metrics()?;
        match m.contains(&format!("interlock_l4_new_flows_total{{listener=\"{VIP}:{PORT}/tcp\"")) {
            true => Ok(m),
            false => bail!("not yet:\n{m}"),
        }
    });
    assert!(
        metrics.contains("interlock_l4_drops_total{reason=\"flow_table\"}"),
        "{metrics}"
    );

    // The agent's task killed: swarm starts a new one. The pinned XDP path keeps forwarding.
    let old = stack.agent_container().unwrap();
    docker(&["kill", &old]).unwrap();
    for (i, c) in conns.iter_mut().enumerate() {
        c.ping(&format!("agent-gone-{i}")).unwrap();
    }
    let new = wait_for("a new agent container", Duration::from_secs(60), || {
        let id = stack.agent_container()?;
        if id == old {
            bail!("still the old one");
        }
        Ok(id)
    });
    wait_for("the new agent took over the maps", Duration::from_secs(30), || {
        let t = stack.status()?;
        if !t.contains(&format!("{VIP}:{PORT}/tcp")) {
            bail!("no L4 service yet:\n{t}");
        }
        Ok(())
    });
    for (i, c) in conns.iter_mut().enumerate() {
        c.ping(&format!("agent-back-{i}")).unwrap();
    }
    first.ping("still here").unwrap();
    let mut fresh = Echo::open(&client).unwrap();
    fresh.ping("new after restart").unwrap();

    // Pins removed under the running agent: it pins the maps again (they lived on, so flows
    // go on), and attaches again where a removed link pin had detached the program.
    let pins = stack.bpffs().to_path_buf();
    for name in ["LB_FLOWS", "LB_VIPS", "LB_MAGLEV"] {
        std::fs::remove_file(pins.join(name)).unwrap();
    }
    wait_for("the map pins back", Duration::from_secs(10), || {
        if ["LB_FLOWS", "LB_VIPS", "LB_MAGLEV"]
            .iter()
            .all(|n| pins.join(n).exists())
        {
            Ok(())
        } else {
            bail!("not yet")
        }
    });
    for (i, c) in conns.iter_mut().enumerate() {
        c.ping(&format!("pins-back-{i}")).unwrap();
    }
    std::fs::remove_file(pins.join(format!("link-{host_if}"))).unwrap();
    wait_for("the link pinned again", Duration::from_secs(10), || {
        if pins.join(format!("link-{host_if}")).exists() {
            Ok(())
        } else {
            bail!("not yet")
        }
    });
    let mut after_link = wait_for("a new connection after the re-attach", Duration::from_secs(10), || {
        let mut e = Echo::open(&client)?;
        e.ping("re-attached")?;
        Ok(e)
    });
    after_link.ping("again").unwrap();
    let table = stack.status().unwrap();
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("{VIP}:{PORT}/tcp")))
        .unwrap_or_default()
        .to_string();
    let packets: u64 = line
        .split_whitespace()
        .rev()
        .nth(2)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    assert!(packets > 0, "the XDP counters saw the traffic: {line}");
    report(&format!(
        "swarm_l4: {} connections kept echoing while the agent {} was killed and replaced by {}; \
         map and link pins removed and restored; counters: {line}",
        conns.len() + 1,
        &old[..12],
        &new[..12]
    ));
}
