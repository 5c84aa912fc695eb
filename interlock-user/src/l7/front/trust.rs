//! `--trusted-proxies`: the balancers in front of this one (a cloud load balancer, a CDN)
//! whose word about the client is taken: their PROXY protocol header (`proxy_protocol`)
//! and their X-Forwarded-* headers (`normalize`). Anybody else's are replaced.
use std::net::IpAddr;

use ipnet::IpNet;

/// CIDRs (or single addresses) of trusted peers; empty: nobody is trusted (the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// From `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32` ...; an error names the bad value.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for value in values.iter().map(|v| v.as_ref().trim()).filter(|v| !v.is_empty()) {
            let net = match value.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => value
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| format!("trusted_proxies: {value:?} is not an address or CIDR (e.g. 10.0.0.0/8)"))?,
            };
            nets.push(net.trunc());
        }
        Ok(TrustedProxies(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `ip` is one of them (an IPv4-mapped IPv6 peer counts as its IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// As written in the configuration (`--print-config`).
    pub fn entries(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|n| n.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_and_addresses() {
        let t = TrustedProxies::parse(&["10.0.0.0/8", " 192.0.2.7 ", "2001:db8::/32", ""]).unwrap();
        assert!(t.contains("10.1.2.3".parse().unwrap()));
        assert!(t.contains("192.0.2.7".parse().unwrap()));
        assert!(t.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(t.contains("2001:db8::5".parse().unwrap()));
        assert!(!t.contains("192.0.2.8".parse().unwrap()));
        assert!(!TrustedProxies::default().contains("127.0.0.1".parse().unwrap()));
        let e = TrustedProxies::parse(&["10.0.0.0/33"]).unwrap_err();
        assert!(e.contains("\"10.0.0.0/33\""), "{e}");
        assert_eq!(
            TrustedProxies::parse(&["10.1.2.3/8"])
                .unwrap()
                .entries()
                .next()
                .unwrap(),
            "10.0.0.0/8"
        );
    }
}
