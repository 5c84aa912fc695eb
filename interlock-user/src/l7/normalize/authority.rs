//! The authority a request is for (RFC 3986 3.2): `host[:port]`, where host is a
//! registered name, an IPv4 address or a bracketed IPv6 address, and port is digits up to
//! 65535. No userinfo, no quotes or markup: what is routed, logged, sent as Host and as
//! X-Forwarded-Host is always one of these.
use super::path::Refusal;

/// The longest host name DNS allows, plus room for a port.
const MAX_AUTHORITY: usize = 255 + 6;

/// Checks `authority` (a Host header, an absolute-form target's or h2's `:authority`).
pub fn check(authority: &[u8]) -> Result<(), Refusal> {
    if authority.is_empty() {
        return Err("an empty Host");
    }
    if authority.len() > MAX_AUTHORITY {
        return Err("a Host longer than 261 bytes");
    }
    let (host, port) = split(authority)?;
    let host_ok = if host.first() == Some(&b'[') {
        host.len() > 2
            && host.last() == Some(&b']')
            && host[1..host.len() - 1]
                .iter()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
    } else {
        !host.is_empty()
            && host
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    };
    if !host_ok {
        return Err("an invalid host name in Host");
    }
    match port {
        // `host:` is allowed by RFC 3986 (an empty port means the default).
        Some(port) if port.len() > 5 || !port.iter().all(u8::is_ascii_digit) => Err("an invalid port in Host"),
        Some(port) if !port.is_empty() && port_value(port) > 65535 => Err("a port over 65535 in Host"),
        _ => Ok(()),
    }
}

/// Host and port (after the last `:` outside brackets).
fn split(authority: &[u8]) -> Result<(&[u8], Option<&[u8]>), Refusal> {
    if authority.first() == Some(&b'[') {
        let close = authority
            .iter()
            .position(|b| *b == b']')
            .ok_or("an unclosed [ in Host")?;
        return match &authority[close + 1..] {
            [] => Ok((authority, None)),
            [b':', port @ ..] => Ok((&authority[..=close], Some(port))),
            _ => Err("bytes after ] in Host"),
        };
    }
    Ok(match authority.iter().rposition(|b| *b == b':') {
        Some(colon) => (&authority[..colon], Some(&authority[colon + 1..])),
        None => (authority, None),
    })
}

fn port_value(digits: &[u8]) -> u32 {
    digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'))
}

/// True when two authorities name the same host and port (host names ignore case).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_authorities() {
        for a in [
            "a.example",
            "a.example:8080",
            "A.Example.",
            "a.example:",
            "10.0.0.1:80",
            "[::1]",
            "[2001:db8::1]:443",
            "under_score.example",
            "localhost:65535",
        ] {
            assert_eq!(check(a.as_bytes()), Ok(()), "{a}");
        }
    }

    #[test]
    fn invalid_authorities() {
        for a in [
            "",
            "a.example:evil",
            "a.example:65536",
            "a.example:123456",
            "a.example:80:80",
            "user@a.example",
            "x\"><script>",
            "a example",
            ":80",
            "[::1",
            "[::1]x",
            "[]",
            "[zz::1]",
            "a.example/x",
        ] {
            assert!(check(a.as_bytes()).is_err(), "{a}");
        }
        assert!(check("a".repeat(300).as_bytes()).is_err());
    }
}
