//! `cargo xtask bench l4`, the `l4-e2e` lines: TCP throughput (iperf3) from a client namespace
//! to a backend namespace through the balancer namespace, three ways in one run: the XDP fast
//! path (`interlock l4`, native mode), the kernel's own NAT (nftables DNAT + SNAT) and
//! HAProxy in TCP mode. Same topology and same endpoint settings for all three:
//! - checksum offload off in the client and backend (the XDP path needs full checksums from
//!   local senders; a partial one cannot be told apart in XDP), which also turns TSO off;
//! - GRO on the client's and backend's veths: XDP_REDIRECT into a veth needs its peer to
//!   run XDP or to have GRO on, and GRO hands the receiving stack coalesced segments;
//! - one line at MTU 1500 and one at 9000 on every veth (`interlock_lb` is multi-buffer
//!   aware, so native XDP on veth accepts jumbo frames);
//! - each figure the best of 3 runs, the three ways taking turns.
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use interlock_tests::agent::{interlock_bin, AgentProcess};
use interlock_tests::l4::BpfFsMount;
use interlock_tests::netns::{veth_pair, NetNs};

const VIP: &str = "192.0.2.20";
const SNAT: &str = "10.232.99.1";
const BACKEND: &str = "10.232.20.2";
const PORT: u16 = 5201;
const SECONDS: &str = "5";

/// A child process killed on drop.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A file removed on drop (also when a step fails).
struct TempFile(std::path::PathBuf);
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn spawn(ns: &NetNs, args: &[&str]) -> Result<Killed> {
    let child = ns
        .command(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", args[0]))?;
    std::thread::sleep(Duration::from_millis(500));
    Ok(Killed(child))
}

/// Gbit/s received by the server, from iperf3's JSON report.
fn iperf(client: &NetNs, target: &str) -> Result<f64> {
    let out = client.sh(&format!("iperf3 -c {target} -p {PORT} -t {SECONDS} -P 2 -J"))?;
    let key = "\"sum_received\"";
    let at = out.find(key).context("no sum_received in iperf3's report")?;
    let bps_key = "\"bits_per_second\":";
    let rest = &out[at..];
    let b = rest.find(bps_key).context("no bits_per_second")? + bps_key.len();
    let num: String = rest[b..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '+')
        .collect();
    let bps: f64 = num.parse().context("bits_per_second")?;
    if bps <= 0.0 {
        bail!("iperf3 moved no data through {target}");
    }
    Ok(bps / 1e9)
}

/// MTUs measured, one `BENCH l4-e2e` line each.
const MTUS: [u32; 2] = [1500, 9000];
/// Each figure is the best of this many runs, the three ways taking turns: the machine is
/// shared, and turns spread its load over all three alike.
const ROUNDS: usize = 3;

fn main() -> Result<()> {
    interlock_tests::require_root();
    for mtu in MTUS {
        let topo = Topology::new(mtu)?;
        let _server = spawn(&topo.backend, &["iperf3", "-s", "-p", &PORT.to_string()])?;
        let (mut xdp, mut nft, mut haproxy) = (0f64, 0f64, 0f64);
        for _ in 0..ROUNDS {
            xdp = xdp.max(topo.through_xdp()?);
            nft = nft.max(topo.through_nft()?);
            haproxy = haproxy.max(topo.through_haproxy()?);
        }
        println!("BENCH l4-e2e mtu={mtu} xdp_gbps={xdp:.2} nft_gbps={nft:.2} haproxy_gbps={haproxy:.2}");
    }
    Ok(())
}

/// Client, balancer and backend namespaces joined by two veth pairs, all at one MTU.
struct Topology {
    client: NetNs,
    lb: NetNs,
    backend: NetNs,
    /// The balancer's veths towards the client and towards the backend.
    lb_client_side: String,
    lb_backend_side: String,
}

impl Topology {
    fn new(mtu: u32) -> Result<Topology> {
        let client = NetNs::new()?;
        let lb = NetNs::new()?;
        let backend = NetNs::new()?;
        let (c, lc) = veth_pair(&client, "10.232.11.2", &lb, "10.232.11.1")?;
        let (lbk, b) = veth_pair(&lb, "10.232.20.1", &backend, BACKEND)?;
        client.ip(&["route", "add", "192.0.2.0/24", "via", "10.232.11.1"])?;
        backend.ip(&["route", "add", "default", "via", "10.232.20.1"])?;
        for (ns, iface) in [(&client, &c.iface), (&backend, &b.iface)] {
            ns.sh(&format!("ethtool -K {iface} tx off gro on >/dev/null"))?;
        }
        for (ns, iface) in [
            (&client, &c.iface),
            (&lb, &lc.iface),
            (&lb, &lbk.iface),
            (&backend, &b.iface),
        ] {
            ns.ip(&["link", "set", "dev", iface, "mtu", &mtu.to_string()])?;
        }
        lb.ip(&["addr", "add", &format!("{SNAT}/32"), "dev", "lo"])?;
        // HAProxy listens on the VIP; XDP and nftables translate before local delivery.
        lb.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
        lb.sh("sysctl -qw net.ipv4.ip_forward=1")?;
        lb.sh(&format!(
            "ping -c1 -W1 10.232.11.2 >/dev/null && ping -c1 -W1 {BACKEND} >/dev/null"
        ))?;
        Ok(Topology {
            client,
            lb,
            backend,
            lb_client_side: lc.iface,
            lb_backend_side: lbk.iface,
        })
    }

    /// The XDP fast path (native mode; the peers' GRO lets redirected frames into their veths).
    fn through_xdp(&self) -> Result<f64> {
        let pins = BpfFsMount::new()?;
        let config = TempFile(pins.dir.with_extension("json"));
        std::fs::write(
            &config.0,
            format!(
                r#"[{{"service":{{"id":"b","name":"bench"}},"vip":"{VIP}","port":{PORT},"protocol":"Tcp","backends":[{{"addr":"{BACKEND}:{PORT}","weight":1,"id":"b"}}]}}]"#
            ),
        )?;
        let mut cmd = self.lb.command(interlock_bin());
        cmd.args(["l4", "--snat-addr", SNAT])
            .args(["--iface", &self.lb_client_side, "--iface", &self.lb_backend_side])
            .arg("--config")
            .arg(&config.0)
            .arg("--pin-dir")
            .arg(pins.dir.join("interlock"));
        let mut agent = AgentProcess::spawn(cmd)?;
        agent.wait_for_line(&format!("to {} (", self.lb_backend_side), Duration::from_secs(20))?;
        let gbps = iperf(&self.client, VIP);
        agent.kill();
        // Dropping the bpffs mount unpins the links: the program detaches.
        gbps
    }

    /// The kernel's own NAT: DNAT to the backend, SNAT to the balancer's address.
    fn through_nft(&self) -> Result<f64> {
        self.lb.sh(&format!(
            "nft add table ip ilbench && \
             nft add chain ip ilbench pre '{{ type nat hook prerouting priority -100; }}' && \
             nft add chain ip ilbench post '{{ type nat hook postrouting priority 100; }}' && \
             nft add rule ip ilbench pre ip daddr {VIP} tcp dport {PORT} dnat to {BACKEND}:{PORT} && \
             nft add rule ip ilbench post ip daddr {BACKEND} tcp dport {PORT} snat to {SNAT}"
        ))?;
        let gbps = iperf(&self.client, VIP);
        self.lb.sh("nft delete table ip ilbench")?;
        gbps
    }

    /// HAProxy in TCP mode, listening on the VIP.
    fn through_haproxy(&self) -> Result<f64> {
        let cfg = TempFile(std::env::temp_dir().join(interlock_tests::netns::unique("ilbench-haproxy-")));
        std::fs::write(
            &cfg.0,
            format!(
                "global\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
                 listen bench\n  bind {VIP}:{PORT}\n  server b {BACKEND}:{PORT}\n"
            ),
        )?;
        let _haproxy = spawn(&self.lb, &["haproxy", "-db", "-f", cfg.0.to_str().context("path")?])?;
        iperf(&self.client, VIP)
    }
}
