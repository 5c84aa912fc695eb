//! The authority a request is for (RFC 3986 3.2): `host[:port]`, where host is a
//! registered name, an IPv4 address or a bracketed IPv6 address, and port is digits up to
//! 65535. No userinfo, no quotes or markup: what is routed, logged, sent as Host and as
//! X-Forwarded-Host is always one of these.
use super::path::Refusal;

/// The longest host name DNS allows, plus room for a port.
const MAX_AUTHORITY: usize = 255 + 6;

/// Bytes of a registered name or an IPv4 address (RFC 3986 3.2.2; `_` as DNS allows it).
static NAME_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_';
        b += 1;
    }
    table
};

/// Checks `authority` (a Host header, an absolute-form target's or h2's `:authority`).
/// One table lookup a byte on the usual `name[:port]` (once per request).
pub fn check(authority: &[u8]) -> Result<(), Refusal> {
    if authority.is_empty() {
        return Err("an empty Host");
    }
    if authority.len() > MAX_AUTHORITY {
        return Err("a Host longer than 261 bytes");
    }
    if authority[0] == b'[' {
        return check_ipv6(authority);
    }
    let name_end = authority
        .iter()
        .position(|b| !NAME_BYTE[*b as usize])
        .unwrap_or(authority.len());
    if name_end == 0 {
        return Err("an invalid host name in Host");
    }
    match &authority[name_end..] {
        [] => Ok(()),
        [b':', port @ ..] => check_port(port),
        _ => Err("an invalid host name in Host"),
    }
}

fn check_ipv6(authority: &[u8]) -> Result<(), Refusal> {
    let close = authority
        .iter()
        .position(|b| *b == b']')
        .ok_or("an unclosed [ in Host")?;
    let address = &authority[1..close];
    if address.is_empty()
        || !address
            .iter()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
    {
        return Err("an invalid host name in Host");
    }
    match &authority[close + 1..] {
        [] => Ok(()),
        [b':', port @ ..] => check_port(port),
        _ => Err("bytes after ] in Host"),
    }
}

/// Digits up to 65535; empty is allowed by RFC 3986 (the default port).
fn check_port(port: &[u8]) -> Result<(), Refusal> {
    if port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
        return Err("an invalid port in Host");
    }
    if port_value(port) > 65535 {
        return Err("a port over 65535 in Host");
    }
    Ok(())
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
