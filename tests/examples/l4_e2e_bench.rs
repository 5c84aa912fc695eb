//! `cargo xtask bench l4`, second line: TCP throughput (iperf3) from a client namespace to a
//! backend namespace through the balancer namespace, three ways in one run: the XDP fast
//! path (`interlock l4`, native mode), the kernel's own NAT (nftables DNAT + SNAT) and
//! HAProxy in TCP mode. Same topology, same sender settings (checksum offload off in the
//! client and backend, as the XDP path needs full checksums from local senders).
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use interlock_tests::agent::{interlock_bin, AgentProcess};
use interlock_tests::l4::{spawn_in_ns, BpfFsMount};
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

fn main() -> Result<()> {
    interlock_tests::require_root();
    let client = NetNs::new()?;
    let lb = NetNs::new()?;
    let backend = NetNs::new()?;
    let (c, lc) = veth_pair(&client, "10.232.11.2", &lb, "10.232.11.1")?;
    let (lbk, b) = veth_pair(&lb, "10.232.20.1", &backend, BACKEND)?;
    client.ip(&["route", "add", "192.0.2.0/24", "via", "10.232.11.1"])?;
    backend.ip(&["route", "add", "default", "via", "10.232.20.1"])?;
    client.sh(&format!("ethtool -K {} tx off >/dev/null", c.iface))?;
    backend.sh(&format!("ethtool -K {} tx off >/dev/null", b.iface))?;
    lb.ip(&["addr", "add", &format!("{SNAT}/32"), "dev", "lo"])?;
    lb.sh("sysctl -qw net.ipv4.ip_forward=1")?;
    lb.sh(&format!(
        "ping -c1 -W1 10.232.11.2 >/dev/null && ping -c1 -W1 {BACKEND} >/dev/null"
    ))?;
    let _server = spawn(&backend, &["iperf3", "-s", "-p", &PORT.to_string()])?;

    // 1. XDP. Native mode redirects into a veth only when its peer runs XDP: a pass program.
    let xdp = {
        let mut peers = Vec::new();
        for (ns, iface) in [(&client, c.iface.clone()), (&backend, b.iface.clone())] {
            let ebpf = spawn_in_ns(ns, move || -> Result<aya::Ebpf> {
                let mut ebpf = interlock::bpf::load()?;
                interlock::bpf::attach_xdp(&mut ebpf, "interlock_pass", &iface, false)?;
                Ok(ebpf)
            })?
            .join()
            .map_err(|_| anyhow::anyhow!("attaching the pass program panicked"))??;
            peers.push(ebpf);
        }
        let pins = BpfFsMount::new()?;
        let config = pins.dir.with_extension("json");
        std::fs::write(
            &config,
            format!(
                r#"[{{"service":{{"id":"b","name":"bench"}},"vip":"{VIP}","port":{PORT},"protocol":"Tcp","backends":[{{"addr":"{BACKEND}:{PORT}","weight":1,"id":"b"}}]}}]"#
            ),
        )?;
        let mut cmd = lb.command(interlock_bin());
        cmd.args(["l4", "--snat-addr", SNAT, "--iface", &lc.iface, "--iface", &lbk.iface])
            .arg("--config")
            .arg(&config)
            .arg("--pin-dir")
            .arg(pins.dir.join("interlock"));
        let mut agent = AgentProcess::spawn(cmd)?;
        agent.wait_for_line(&format!("to {} (", lbk.iface), Duration::from_secs(20))?;
        let gbps = iperf(&client, VIP);
        agent.kill();
        drop(pins);
        let _ = std::fs::remove_file(&config);
        drop(peers);
        gbps?
    };

    // 2. nftables: DNAT to the backend, SNAT to the balancer's address.
    lb.sh(&format!(
        "nft add table ip ilbench && \
         nft add chain ip ilbench pre '{{ type nat hook prerouting priority -100; }}' && \
         nft add chain ip ilbench post '{{ type nat hook postrouting priority 100; }}' && \
         nft add rule ip ilbench pre ip daddr {VIP} tcp dport {PORT} dnat to {BACKEND}:{PORT} && \
         nft add rule ip ilbench post ip daddr {BACKEND} tcp dport {PORT} snat to {SNAT}"
    ))?;
    let nft = iperf(&client, VIP)?;
    lb.sh("nft delete table ip ilbench")?;

    // 3. HAProxy in TCP mode, listening on the VIP.
    lb.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
    let cfg = std::env::temp_dir().join(interlock_tests::netns::unique("ilbench-haproxy-"));
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             listen bench\n  bind {VIP}:{PORT}\n  server b {BACKEND}:{PORT}\n"
        ),
    )?;
    let haproxy = {
        let _h = spawn(&lb, &["haproxy", "-db", "-f", cfg.to_str().context("path")?])?;
        iperf(&client, VIP)
    };
    let _ = std::fs::remove_file(&cfg);
    let haproxy = haproxy?;

    println!("BENCH l4-e2e xdp_gbps={xdp:.2} nft_gbps={nft:.2} haproxy_gbps={haproxy:.2}");
    Ok(())
}
