//! The XDP balancer on hand-built frames through BPF_PROG_TEST_RUN, inside a namespace whose
//! FIB and neighbour table give the next hops (see `interlock_tests::l4::PacketLab`).
use std::net::Ipv4Addr;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::Ebpf;
use interlock::l4::{L4Sync, LbMaps};
use interlock::model::{L4Protocol, L4Service};
use interlock_common::lb::{DropReason, SNAT_PORT_MAX, SNAT_PORT_MIN};
use interlock_tests::l4::*;
use interlock_tests::require_root;

const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

struct Lb {
    ebpf: Ebpf,
    sync: L4Sync,
}

impl Lb {
    fn new(services: &[L4Service]) -> Lb {
        let mut ebpf = interlock::bpf::load().unwrap();
        let mut maps = LbMaps::take(&mut ebpf).unwrap();
        let hz = interlock::l4::clock::kernel_hz(&mut ebpf).unwrap();
        maps.set_config(SNAT, hz).unwrap();
        let mut sync = L4Sync::new(maps, None).unwrap();
        sync.apply(services).unwrap();
        let prog: &mut Xdp = ebpf.program_mut("interlock_lb").unwrap().try_into().unwrap();
        prog.load().unwrap();
        Lb { ebpf, sync }
    }

    fn try_run(&mut self, frame: &[u8]) -> Result<(u32, Vec<u8>), String> {
        let prog: &mut Xdp = self.ebpf.program_mut("interlock_lb").unwrap().try_into().unwrap();
        let mut out = vec![0u8; frame.len() + 512];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::new()
            })
            .map_err(|e| e.to_string())?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }

    fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.try_run(frame).unwrap()
    }

    fn drops(&self, reason: DropReason) -> u64 {
        self.sync
            .maps()
            .drops()
            .unwrap()
            .into_iter()
            .find(|(r, _)| *r == reason)
            .unwrap()
            .1
    }
}

fn syn(sport: u16) -> Vec<u8> {
    frame([2, 0, 0, 0, 0, 1], CLIENT, sport, VIP, 80, 6, SYN, b"hello")
}

/// Checks a client->VIP frame translated towards a backend; returns its fields.
fn assert_forwarded(lab_backend_mac: [u8; 6], input: &[u8], action: u32, out: &[u8]) -> Fields {
    assert_eq!(action, XDP_REDIRECT, "a new flow is redirected to the backend side");
    assert_eq!(out.len(), input.len());
    let f = fields(out);
    let backend = BACKENDS
        .iter()
        .position(|b| *b == f.dst)
        .unwrap_or_else(|| panic!("destination {} is one of the backends", f.dst));
    assert_eq!(f.dst_mac, backend_mac(backend), "next-hop MAC of the backend");
    assert_eq!(f.src_mac, lab_backend_mac, "source MAC of the egress interface");
    assert_eq!(f.src, SNAT, "source rewritten to the balancer's address");
    assert_eq!(f.dport, BACKEND_PORT);
    assert!((SNAT_PORT_MIN..=SNAT_PORT_MAX).contains(&f.sport), "{}", f.sport);
    assert_eq!(f.ttl, fields(input).ttl);
    assert!(ip_csum_ok(out), "IPv4 checksum verifies after the rewrite");
    assert!(l4_csum_ok(out), "L4 checksum verifies after the rewrite");
    assert_eq!(out[out.len() - 5..], input[input.len() - 5..], "payload untouched");
    f
}

#[test]
fn l4_new_flow_is_translated_and_the_reply_comes_back_as_the_vip() {
    require_root();
    let lab = PacketLab::new().unwrap();
    let (cmac, bmac) = (lab.client_side_mac, lab.backend_side_mac);
    lab.run_inside(move || {
        let mut lb = Lb::new(&[service(VIP, 80, L4Protocol::Tcp, &BACKENDS)]);
        let input = syn(40000);
        let (action, out) = lb.run(&input);
        let f = assert_forwarded(bmac, &input, action, &out);

        // The backend's reply to the balancer's address and allocated port.
        let reply = frame(bmac, f.dst, BACKEND_PORT, SNAT, f.sport, 6, SYN | ACK, b"world");
        let (action, back) = lb.run(&reply);
        assert_eq!(action, XDP_REDIRECT, "the reply goes out on the client side");
        let r = fields(&back);
        assert_eq!((r.src, r.sport), (VIP, 80), "the reply comes from the VIP");
        assert_eq!((r.dst, r.dport), (CLIENT, 40000), "to the client's address and port");
        assert_eq!(r.dst_mac, CLIENT_MAC);
        assert_eq!(r.src_mac, cmac);
        assert!(ip_csum_ok(&back) && l4_csum_ok(&back), "checksums verify");

        // The same flow again: same backend, same source port (the connection table decides).
        let (_, again) = lb.run(&frame([2, 0, 0, 0, 0, 1], CLIENT, 40000, VIP, 80, 6, ACK, b"x"));
        let a = fields(&again);
        assert_eq!((a.dst, a.sport), (f.dst, f.sport));
        assert!(l4_csum_ok(&again));
    })
    .unwrap();
}

#[test]
fn l4_udp_flows_are_translated_with_valid_checksums() {
    require_root();
    let lab = PacketLab::new().unwrap();
    let bmac = lab.backend_side_mac;
    lab.run_inside(move || {
        let mut lb = Lb::new(&[service(VIP, 53, L4Protocol::Udp, &BACKENDS)]);
        let input = frame([2, 0, 0, 0, 0, 1], CLIENT, 5353, VIP, 53, 17, 0, b"query");
        let (action, out) = lb.run(&input);
        assert_eq!(action, XDP_REDIRECT);
        let f = fields(&out);
        assert!(BACKENDS.contains(&f.dst) && f.src == SNAT && f.dport == BACKEND_PORT);
        assert_eq!(f.src_mac, bmac);
        assert!(ip_csum_ok(&out) && l4_csum_ok(&out), "UDP checksum verifies");
    })
    .unwrap();
}

#[test]
fn l4_established_flows_stick_when_the_backend_set_changes() {
    require_root();
    let lab = PacketLab::new().unwrap();
    let bmac = lab.backend_side_mac;
    lab.run_inside(move || {
        let mut lb = Lb::new(&[service(VIP, 80, L4Protocol::Tcp, &BACKENDS)]);
        // Open 30 flows, remember where each went.
        let mut chosen = Vec::new();
        for port in 41000..41030 {
            let input = syn(port);
            let (action, out) = lb.run(&input);
            chosen.push((port, assert_forwarded(bmac, &input, action, &out)));
        }
        let removed = chosen[0].1.dst;
        let rest: Vec<Ipv4Addr> = BACKENDS.iter().copied().filter(|b| *b != removed).collect();
        let r = lb.sync.apply(&[service(VIP, 80, L4Protocol::Tcp, &rest)]).unwrap();
        assert_eq!(r.updated, 1);
        // Every established flow, including those on the removed backend, keeps its backend.
        for (port, before) in &chosen {
            let input = frame([2, 0, 0, 0, 0, 1], CLIENT, *port, VIP, 80, 6, ACK, b"hello");
            let (action, out) = lb.run(&input);
            let after = assert_forwarded(bmac, &input, action, &out);
            assert_eq!((after.dst, after.sport), (before.dst, before.sport), "port {port}");
        }
        // New flows avoid the removed backend.
        for port in 42000..42100 {
            let input = syn(port);
            let (action, out) = lb.run(&input);
            let f = assert_forwarded(bmac, &input, action, &out);
            assert_ne!(f.dst, removed, "a new flow went to the removed backend");
        }
    })
    .unwrap();
}

#[test]
fn l4_traffic_not_for_a_vip_passes_unchanged() {
    require_root();
    let lab = PacketLab::new().unwrap();
    lab.run_inside(move || {
        let mut lb = Lb::new(&[service(VIP, 80, L4Protocol::Tcp, &BACKENDS)]);
        let mac = [2, 0, 0, 0, 0, 1];
        let other = Ipv4Addr::new(192, 0, 2, 99);
        let mut ipv6 = syn(40000);
        ipv6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        let mut arp = vec![0xffu8; 6];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        arp.extend_from_slice(&[0u8; 28]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("other address", frame(mac, CLIENT, 40000, other, 80, 6, SYN, b"x")),
            ("other port", frame(mac, CLIENT, 40000, VIP, 81, 6, SYN, b"x")),
            ("UDP to a TCP VIP", frame(mac, CLIENT, 40000, VIP, 80, 17, 0, b"x")),
            ("IPv6", ipv6),
            ("ARP", arp),
        ];
        for (what, input) in cases {
            let (action, out) = lb.run(&input);
            assert_eq!(action, XDP_PASS, "{what}");
            assert_eq!(out, input, "{what}: frame unchanged");
        }
        assert!(lb.sync.maps().flows().unwrap().is_empty(), "no flow recorded");
    })
    .unwrap();
}

#[test]
fn l4_every_truncation_of_a_tcp_frame_is_handled() {
    require_root();
    let lab = PacketLab::new().unwrap();
    lab.run_inside(move || {
        let mut lb = Lb::new(&[service(VIP, 80, L4Protocol::Tcp, &BACKENDS)]);
        let full = syn(43000);
        for len in 0..=full.len() {
            match lb.try_run(&full[..len]) {
                // The kernel itself refuses frames shorter than an Ethernet header.
                Err(e) => assert!(len < ETH, "len {len}: {e}"),
                Ok((action, out)) => {
                    assert_ne!(action, XDP_ABORTED, "len {len}");
                    if len < ETH + IP + 20 {
                        assert_eq!(action, XDP_PASS, "len {len}: incomplete headers pass");
                        assert_eq!(out, &full[..len], "len {len}: untouched");
                    } else {
                        assert_eq!(action, XDP_REDIRECT, "len {len}: full headers translate");
                    }
                }
            }
        }
    })
    .unwrap();
}

#[test]
fn l4_fragments_and_ip_options_to_a_vip_are_dropped_and_counted() {
    require_root();
    let lab = PacketLab::new().unwrap();
    lab.run_inside(move || {
        let mut lb = Lb::new(&[service(VIP, 80, L4Protocol::Tcp, &BACKENDS)]);
        let mut frag = syn(44000);
        frag[ETH + 6] |= 0x20; // more fragments
        let (action, _) = lb.run(&frag);
        assert_eq!(action, XDP_DROP);
        assert_eq!(lb.drops(DropReason::Fragment), 1);

        let mut later = syn(44000);
        later[ETH + 6..ETH + 8].copy_from_slice(&0x0010u16.to_be_bytes()); // offset 128
        assert_eq!(lb.run(&later).0, XDP_DROP);
        assert_eq!(lb.drops(DropReason::Fragment), 2);

        let mut opts = syn(44001);
        opts[ETH] = 0x46; // IHL 6: one word of options
        assert_eq!(lb.run(&opts).0, XDP_DROP);
        assert_eq!(lb.drops(DropReason::IpOptions), 1);

        // Fragments to other addresses are none of our business.
        let mut other = frame([2; 6], CLIENT, 1, Ipv4Addr::new(192, 0, 2, 99), 80, 6, SYN, b"");
        other[ETH + 6] |= 0x20;
        assert_eq!(lb.run(&other).0, XDP_PASS);
        assert_eq!(lb.drops(DropReason::Fragment), 2);
    })
    .unwrap();
}

#[test]
fn l4_a_vip_without_backends_drops_new_flows_and_counts_them() {
    require_root();
    let lab = PacketLab::new().unwrap();
    lab.run_inside(move || {
        let mut lb = Lb::new(&[service(VIP, 80, L4Protocol::Tcp, &[])]);
        assert_eq!(lb.run(&syn(45000)).0, XDP_DROP);
        assert_eq!(lb.drops(DropReason::NoBackend), 1);
    })
    .unwrap();
}

/// Ages every recorded entry by `ticks` (the connection table's clock: jiffies), then lets
/// the per-CPU flow caches' copies lapse (they serve a flow only in the jiffy they read it).
fn age_flows(lb: &mut Lb, ticks: u32) {
    for (k, mut v) in lb.sync.maps().flows().unwrap() {
        v.last_seen = v.last_seen.wrapping_sub(ticks);
        lb.sync.maps_mut().insert_flow(k, v).unwrap();
    }
    next_jiffy(lb);
}

/// Sleeps past the current jiffy (two of them, to be sure).
fn next_jiffy(lb: &Lb) {
    let hz = lb.sync.maps().config().unwrap().hz;
    std::thread::sleep(std::time::Duration::from_millis(u64::from(2000 / hz + 1)));
}

fn new_flows(lb: &Lb) -> u64 {
    lb.sync
        .stats()
        .unwrap()
        .iter()
        .filter(|(w, _)| w.starts_with("vip="))
        .map(|(_, s)| s.new_flows)
        .sum()
}

#[test]
fn l4_fin_shortens_a_flows_life_and_idle_udp_flows_expire() {
    require_root();
    let lab = PacketLab::new().unwrap();
    lab.run_inside(move || {
        let mut lb = Lb::new(&[
            service(VIP, 80, L4Protocol::Tcp, &BACKENDS),
            service(VIP, 53, L4Protocol::Udp, &BACKENDS),
        ]);
        let mac = [2, 0, 0, 0, 0, 1];
        let (a, b) = (46000, 46001);
        // Two TCP flows; one sees a FIN.
        lb.run(&syn(a));
        lb.run(&syn(b));
        lb.run(&frame(mac, CLIENT, b, VIP, 80, 6, 0x11, b"")); // FIN|ACK
        assert_eq!(new_flows(&lb), 2);
        // Older than the closing timeout, younger than the idle one.
        let cfg = lb.sync.maps().config().unwrap();
        age_flows(&mut lb, cfg.tcp_closing + 100);
        lb.run(&frame(mac, CLIENT, a, VIP, 80, 6, ACK, b""));
        assert_eq!(new_flows(&lb), 2, "the open flow is still established");
        lb.run(&frame(mac, CLIENT, b, VIP, 80, 6, ACK, b""));
        assert_eq!(new_flows(&lb), 3, "the closed flow expired: its tuple starts anew");

        // UDP: idle past the timeout, the next datagram is a new flow.
        let dgram = frame(mac, CLIENT, 5353, VIP, 53, 17, 0, b"q");
        lb.run(&dgram);
        assert_eq!(new_flows(&lb), 4);
        lb.run(&dgram);
        assert_eq!(new_flows(&lb), 4, "a live UDP flow is established");
        age_flows(&mut lb, cfg.udp_idle + 100);
        lb.run(&dgram);
        assert_eq!(new_flows(&lb), 5, "an idle UDP flow expired");
    })
    .unwrap();
}

#[test]
fn l4_the_flow_cache_never_hides_a_fin_nor_outlives_its_jiffy() {
    require_root();
    let lab = PacketLab::new().unwrap();
    lab.run_inside(move || {
        use interlock_common::lb::{FLOW_CLOSING, FLOW_REVERSE};
        let mut lb = Lb::new(&[service(VIP, 80, L4Protocol::Tcp, &BACKENDS)]);
        let mac = [2, 0, 0, 0, 0, 1];
        let port = 47000;
        let ack = frame(mac, CLIENT, port, VIP, 80, 6, ACK, b"x");
        lb.run(&syn(port));
        // Established packets: the second and later ones of this jiffy come from the cache.
        for _ in 0..3 {
            assert_eq!(lb.run(&ack).0, XDP_REDIRECT);
        }
        assert_eq!(new_flows(&lb), 1);
        // A FIN right after: it must reach the connection table and mark the flow closing.
        lb.run(&frame(mac, CLIENT, port, VIP, 80, 6, 0x11, b""));
        let flows = lb.sync.maps().flows().unwrap();
        let (_, forward) = flows
            .iter()
            .find(|(k, v)| k.sport == port.to_be() && v.flags & FLOW_REVERSE == 0)
            .expect("the forward entry");
        assert_ne!(
            forward.flags & FLOW_CLOSING,
            0,
            "the FIN marked the table entry closing"
        );

        // The table forgets the flow; a jiffy later no CPU may still serve its copy.
        for (k, _) in flows {
            lb.sync.maps_mut().remove_flow(&k).unwrap();
        }
        next_jiffy(&lb);
        assert_eq!(lb.run(&ack).0, XDP_REDIRECT);
        assert_eq!(new_flows(&lb), 2, "a packet of a forgotten flow starts a new one");
    })
    .unwrap();
}

/// Packets served from the per-CPU flow cache (the second and later ones of a flow in a
/// jiffy, rewritten with checksum changes and a next hop computed when the entry was written)
/// come out exactly as the connection table's path makes them: same addresses, ports and
/// MACs, checksums that verify whatever the payload, a UDP checksum of 0 left at 0.
#[test]
fn l4_cached_packets_are_translated_like_the_first() {
    require_root();
    let lab = PacketLab::new().unwrap();
    let (cmac, bmac) = (lab.client_side_mac, lab.backend_side_mac);
    lab.run_inside(move || {
        let mut lb = Lb::new(&[
            service(VIP, 80, L4Protocol::Tcp, &BACKENDS),
            service(VIP, 53, L4Protocol::Udp, &BACKENDS),
        ]);
        let mac = [2, 0, 0, 0, 0, 1];
        let input = syn(41000);
        let (action, out) = lb.run(&input);
        let first = assert_forwarded(bmac, &input, action, &out);
        for i in 0..20u8 {
            let payload = [i, 0x5a ^ i, i.wrapping_mul(37), 0xff - i, i];
            let ack = frame(mac, CLIENT, 41000, VIP, 80, 6, ACK, &payload);
            let (action, out) = lb.run(&ack);
            assert_eq!(assert_forwarded(bmac, &ack, action, &out), first, "packet {i}");
            // The backend's replies, cached the same way.
            let reply = frame(bmac, first.dst, BACKEND_PORT, SNAT, first.sport, 6, ACK, &payload);
            let (action, back) = lb.run(&reply);
            assert_eq!(action, XDP_REDIRECT);
            let r = fields(&back);
            assert_eq!((r.src, r.sport, r.dst, r.dport), (VIP, 80, CLIENT, 41000), "reply {i}");
            assert_eq!((r.dst_mac, r.src_mac), (CLIENT_MAC, cmac));
            assert!(ip_csum_ok(&back) && l4_csum_ok(&back), "reply {i} checksums verify");
        }

        let udp = |payload: &[u8], zero_check: bool| {
            let mut f = frame(mac, CLIENT, 5400, VIP, 53, 17, 0, payload);
            if zero_check {
                f[ETH + IP + 6..ETH + IP + 8].fill(0);
            }
            f
        };
        let (_, out) = lb.run(&udp(b"q0", false));
        let first = fields(&out);
        for i in 0..20u8 {
            let (action, out) = lb.run(&udp(&[b'q', i], i % 2 == 0));
            assert_eq!(action, XDP_REDIRECT);
            assert_eq!(fields(&out), first, "datagram {i}");
            assert!(ip_csum_ok(&out), "datagram {i}: IPv4 checksum verifies");
            if i % 2 == 0 {
                assert_eq!(out[ETH + IP + 6..ETH + IP + 8], [0, 0], "no UDP checksum stays none");
            } else {
                assert!(l4_csum_ok(&out), "datagram {i}: UDP checksum verifies");
            }
        }
    })
    .unwrap();
}

/// Random and mutated frames through the program, checked against what must hold for any
/// input: never aborted; a passed frame is unchanged; a frame not for the VIP always passes;
/// a redirected frame goes to a backend from the balancer's address, with checksums that
/// verify when the input's did. `INTERLOCK_FUZZ_FRAMES` sets how many (default 20,000).
#[test]
fn l4_random_frames_keep_the_programs_invariants() {
    require_root();
    let frames: usize = std::env::var("INTERLOCK_FUZZ_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let lab = PacketLab::new().unwrap();
    let report = lab
        .run_inside(move || {
            let mut lb = Lb::new(&[
                service(VIP, 80, L4Protocol::Tcp, &BACKENDS),
                service(VIP, 53, L4Protocol::Udp, &BACKENDS),
            ]);
            // Seeded: the same frames every run.
            let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
            let mac = [2, 0, 0, 0, 0, 1];
            let other = Ipv4Addr::new(192, 0, 2, 99);
            let mut counts = std::collections::BTreeMap::<u32, usize>::new();
            for i in 0..frames {
                let payload: Vec<u8> = (0..rng.usize(..48)).map(|_| rng.u8(..)).collect();
                let sport = 1024 + rng.usize(..60_000) as u16;
                let flags = [SYN, ACK, 0x11, 0x04, rng.u8(..)][rng.usize(..5)];
                let mut f = match rng.usize(..5) {
                    0 => frame(mac, CLIENT, sport, VIP, 80, 6, flags, &payload),
                    1 => frame(mac, CLIENT, sport, VIP, 53, 17, 0, &payload),
                    2 => frame(mac, CLIENT, sport, other, 80, 6, flags, &payload),
                    3 => frame(
                        mac,
                        BACKENDS[rng.usize(..3)],
                        BACKEND_PORT,
                        SNAT,
                        sport,
                        6,
                        flags,
                        &payload,
                    ),
                    _ => (0..ETH + rng.usize(..80)).map(|_| rng.u8(..)).collect(),
                };
                for _ in 0..rng.usize(..4) {
                    let at = rng.usize(..f.len());
                    f[at] = rng.u8(..);
                }
                if rng.usize(..4) == 0 {
                    f.truncate(ETH + rng.usize(..f.len() - ETH + 1));
                }
                let checksums_ok = f.len() >= ETH + IP + 8
                    && f[12..14] == [8, 0]
                    && f[ETH] == 0x45
                    && usize::from(u16::from_be_bytes([f[ETH + 2], f[ETH + 3]])) == f.len() - ETH
                    && ip_csum_ok(&f)
                    && l4_csum_ok(&f);
                let for_vip = f.len() >= ETH + IP && f[12..14] == [8, 0] && f[ETH + 16..ETH + 20] == VIP.octets();
                let for_snat = f.len() >= ETH + IP && f[12..14] == [8, 0] && f[ETH + 16..ETH + 20] == SNAT.octets();
                let (action, out) = lb.run(&f);
                let case = format!("frame {i}: {f:02x?}");
                *counts.entry(action).or_default() += 1;
                assert!(
                    [XDP_DROP, XDP_PASS, 3, XDP_REDIRECT].contains(&action),
                    "{case}: action {action}"
                );
                if action == XDP_PASS {
                    assert_eq!(out, f, "{case}: a passed frame is unchanged");
                }
                if !for_vip && !for_snat {
                    assert_eq!(action, XDP_PASS, "{case}: not for the balancer, so passed");
                }
                if action == XDP_REDIRECT && for_vip {
                    let o = fields(&out);
                    assert!(BACKENDS.contains(&o.dst), "{case}: to a backend, not {}", o.dst);
                    assert_eq!(o.src, SNAT, "{case}");
                    assert_eq!(out.len(), f.len(), "{case}");
                    if checksums_ok {
                        assert!(ip_csum_ok(&out) && l4_csum_ok(&out), "{case}: checksums verify");
                    }
                }
            }
            counts
        })
        .unwrap();
    interlock_tests::report(&format!(
        "l4_fuzz: {frames} random frames, verdicts (action: count) {report:?}"
    ));
}
