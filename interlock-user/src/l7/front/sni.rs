//! Reads the server name (SNI) from a TLS ClientHello without terminating TLS, for
//! passthrough routing. Written by hand: a bounds-checked walk over a few length-prefixed
//! fields; every read goes through `Reader`, which never indexes past the input.

/// Largest ClientHello we wait for (a handshake message up to 16 KiB plus record headers).
pub const MAX_HELLO: usize = 16 * 1024 + 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// More bytes are needed.
    Incomplete,
    /// A complete ClientHello; the SNI host name when it carries one.
    Complete(Option<String>),
    /// Not a TLS ClientHello.
    Invalid(&'static str),
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }
    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<usize> {
        self.bytes(2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn u24(&mut self) -> Option<usize> {
        self.bytes(3)
            .map(|b| ((b[0] as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize)
    }
}

/// Parses what has arrived so far: TLS records of type handshake, joined, holding a ClientHello.
pub fn parse(buf: &[u8]) -> Hello {
    // Join the fragments of the handshake records.
    let mut handshake = Vec::new();
    let mut records = Reader::new(buf);
    while let Some(header) = records.bytes(5) {
        if header[0] != 22 {
            return Hello::Invalid("not a TLS handshake record");
        }
        if header[1] != 3 {
            return Hello::Invalid("not a TLS record version");
        }
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        if len == 0 || len > 16 * 1024 + 256 {
            return Hello::Invalid("bad TLS record length");
        }
        match records.bytes(len) {
            Some(fragment) => handshake.extend_from_slice(fragment),
            None => return Hello::Incomplete,
        }
        if let Some(result) = parse_handshake(&handshake) {
            return result;
        }
    }
    if buf.len() >= MAX_HELLO {
        return Hello::Invalid("ClientHello too large");
    }
    Hello::Incomplete
}

/// `None` when the handshake message is not complete yet.
fn parse_handshake(data: &[u8]) -> Option<Hello> {
    let mut r = Reader::new(data);
    let kind = r.u8()?;
    if kind != 1 {
        return Some(Hello::Invalid("first handshake message is not a ClientHello"));
    }
    let len = r.u24()?;
    let body = r.bytes(len)?;
    Some(match client_hello_sni(body) {
        Some(sni) => Hello::Complete(sni),
        None => Hello::Invalid("malformed ClientHello"),
    })
}

/// The SNI of a complete ClientHello body; `None` when malformed.
fn client_hello_sni(body: &[u8]) -> Option<Option<String>> {
    let mut r = Reader::new(body);
    r.bytes(2 + 32)?; // version, random
    let session = r.u8()? as usize;
    r.bytes(session)?;
    let suites = r.u16()?;
    r.bytes(suites)?;
    let compression = r.u8()? as usize;
    r.bytes(compression)?;
    if r.pos == body.len() {
        return Some(None); // no extensions
    }
    let ext_len = r.u16()?;
    let mut exts = Reader::new(r.bytes(ext_len)?);
    while exts.pos < exts.data.len() {
        let kind = exts.u16()?;
        let len = exts.u16()?;
        let ext = exts.bytes(len)?;
        if kind == 0 {
            let mut names = Reader::new(ext);
            let list_len = names.u16()?;
            let mut list = Reader::new(names.bytes(list_len)?);
            while list.pos < list.data.len() {
                let name_type = list.u8()?;
                let name_len = list.u16()?;
                let name = list.bytes(name_len)?;
                if name_type == 0 {
                    let name = std::str::from_utf8(name).ok()?;
                    return Some(Some(name.to_ascii_lowercase()));
                }
            }
        }
    }
    Some(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ClientHello, produced by rustls for `sni`.
    pub fn client_hello(sni: &str) -> Vec<u8> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_sni_from_a_real_client_hello() {
        let hello = client_hello("App.Example.org");
        assert_eq!(parse(&hello), Hello::Complete(Some("app.example.org".into())));
    }

    #[test]
    fn every_prefix_is_incomplete_never_a_panic() {
        let hello = client_hello("a.example");
        for n in 0..hello.len() {
            assert_eq!(parse(&hello[..n]), Hello::Incomplete, "prefix of {n} bytes");
        }
    }

    #[test]
    fn garbage_is_invalid() {
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n\r\n"), Hello::Invalid(_)));
        let mut hello = client_hello("a.example");
        hello[5] = 2; // a ServerHello type
        assert!(matches!(parse(&hello), Hello::Invalid(_)));
        // Lengths that point past the end inside a complete record.
        let mut bad = client_hello("a.example");
        let at = 5 + 4 + 34;
        bad[at] = 0xff; // session id length
        assert!(matches!(parse(&bad), Hello::Invalid(_) | Hello::Complete(_)));
    }
}
