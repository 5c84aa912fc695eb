//! HTTP/2 at the frame level, case by case in the manner of h2spec (its `http2` and `hpack`
//! sections), against the plain listener (h2c by prior knowledge: the lean HTTP/1.1 loop hands
//! a connection opening with the preface to hyper) and the TLS listener (ALPN h2). Every case
//! runs on both (`mod h2c`, `mod tls` at the end).
//!
//! Cases are named after h2spec's ids (which follow RFC 7540's numbering) and cite the RFC 9113
//! (or RFC 7541) section whose requirement they assert: GOAWAY with the error code and the
//! connection closed for a connection error, RST_STREAM with the code for a stream error, a
//! response where the frames are valid, and, for requests that must be refused, that the
//! backend never saw them.
//!
//! hyper's h2 (the `h2` crate, 0.4.20) is the server. Where it answers with another error code
//! than the RFC's, the case expects h2's (`Fixture::code`) and its twin in `h2c_rfc`/`tls_rfc`,
//! ignored with the reason, the RFC's; where it does something else, the case is ignored with
//! the reason. The server's behaviour, not the proxy's configuration: the proxy only sets
//! hyper's max header list size (its head limit) and max concurrent streams (256).
//!
//! The client is a few lines: frames written and parsed by hand (a 9-byte header and a
//! payload), request field blocks encoded by hand (literals without indexing, no Huffman), the
//! proxy's field blocks decoded with fluke-hpack. Every read has a timeout, so a server that
//! says nothing fails the case instead of hanging it.
mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use interlock::model::TlsMode;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a case waits for any one answer.
const WAIT: Duration = Duration::from_secs(3);
const HOST: &str = "h2.example";
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types (RFC 9113 6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

// Flags.
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;
/// A request in one HEADERS frame.
const WHOLE: u8 = END_STREAM | END_HEADERS;

// Error codes (RFC 9113 7).
const NO_ERROR: u32 = 0x0;
const PROTOCOL_ERROR: u32 = 0x1;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const STREAM_CLOSED: u32 = 0x5;
const FRAME_SIZE_ERROR: u32 = 0x6;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
const COMPRESSION_ERROR: u32 = 0x9;
const ENHANCE_YOUR_CALM: u32 = 0xb;

// SETTINGS parameters (RFC 9113 6.5.2).
const ENABLE_PUSH: u16 = 0x2;
const MAX_CONCURRENT_STREAMS: u16 = 0x3;
const INITIAL_WINDOW_SIZE: u16 = 0x4;
const MAX_FRAME_SIZE: u16 = 0x5;

fn code_name(code: u32) -> String {
    let names = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    names
        .get(code as usize)
        .map_or(format!("0x{code:x}"), |n| n.to_string())
}

// ---- Frames ----

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
    /// A HEADERS frame from the proxy: its decoded fields (with its CONTINUATIONs').
    fields: Vec<(String, String)>,
}

impl Frame {
    fn new(kind: u8, flags: u8, stream: u32, payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            kind,
            flags,
            stream,
            payload: payload.into(),
            fields: Vec::new(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let len = self.payload.len() as u32;
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.extend([self.kind, self.flags]);
        out.extend(self.stream.to_be_bytes());
        out.extend(&self.payload);
        out
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }

    /// GOAWAY's and RST_STREAM's error code.
    fn code(&self) -> u32 {
        self.u32_at(if self.kind == GOAWAY { 4 } else { 0 })
    }

    fn status(&self) -> Option<u16> {
        self.fields
            .iter()
            .find(|(n, _)| n == ":status")
            .and_then(|(_, v)| v.parse().ok())
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, flags, len) = (self.stream, self.flags, self.payload.len());
        match self.kind {
            GOAWAY => write!(f, "GOAWAY({}, last {})", code_name(self.code()), self.u32_at(0)),
            RST_STREAM => write!(f, "RST_STREAM({s}, {})", code_name(self.code())),
            HEADERS => write!(f, "HEADERS({s}, {:?}, flags {flags:#x})", self.status()),
            DATA => write!(f, "DATA({s}, {len} bytes, flags {flags:#x})"),
            SETTINGS if flags & ACK != 0 => write!(f, "SETTINGS(ACK)"),
            SETTINGS => write!(f, "SETTINGS({len} bytes)"),
            PING => write!(f, "PING(flags {flags:#x})"),
            WINDOW_UPDATE => write!(f, "WINDOW_UPDATE({s}, +{})", self.u32_at(0)),
            k => write!(f, "frame(type {k:#x}, stream {s}, flags {flags:#x}, {len} bytes)"),
        }
    }
}

fn headers(stream: u32, flags: u8, fields: &Fields) -> Frame {
    Frame::new(HEADERS, flags, stream, block(fields))
}

fn continuation(stream: u32, flags: u8, block: &[u8]) -> Frame {
    Frame::new(CONTINUATION, flags, stream, block)
}

fn data(stream: u32, flags: u8, payload: &[u8]) -> Frame {
    Frame::new(DATA, flags, stream, payload)
}

fn settings(params: &[(u16, u32)]) -> Frame {
    let payload: Vec<u8> = params
        .iter()
        .flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes()))
        .collect();
    Frame::new(SETTINGS, 0, 0, payload)
}

fn ping(flags: u8, payload: &[u8; 8]) -> Frame {
    Frame::new(PING, flags, 0, *payload)
}

fn window_update(stream: u32, increment: u32) -> Frame {
    Frame::new(WINDOW_UPDATE, 0, stream, increment.to_be_bytes())
}

fn rst_stream(stream: u32, code: u32) -> Frame {
    Frame::new(RST_STREAM, 0, stream, code.to_be_bytes())
}

/// PRIORITY: `stream` depends (non-exclusively) on `on`.
fn priority(stream: u32, on: u32) -> Frame {
    let mut payload = on.to_be_bytes().to_vec();
    payload.push(15);
    Frame::new(PRIORITY, 0, stream, payload)
}

fn goaway(last: u32, code: u32) -> Frame {
    let mut payload = last.to_be_bytes().to_vec();
    payload.extend(code.to_be_bytes());
    Frame::new(GOAWAY, 0, 0, payload)
}

// ---- HPACK, by hand (RFC 7541) ----

type Fields = Vec<(String, String)>;

/// An integer with an N-bit prefix (RFC 7541 5.1); `first` holds the representation's bits.
fn hpack_int(out: &mut Vec<u8>, prefix_bits: u8, first: u8, value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A string literal without Huffman coding (RFC 7541 5.2).
fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 7, 0x00, s.len());
    out.extend(s);
}

/// Literal header field without indexing, new name (RFC 7541 6.2.2): `0x00`, name, value.
fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    hpack_str(out, name);
    hpack_str(out, value);
}

/// A field block of `fields`, each a literal without indexing.
fn block(fields: &Fields) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in fields {
        literal(&mut out, n.as_bytes(), v.as_bytes());
    }
    out
}

/// A request's fields from `(name, value)` pairs.
fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

/// `fields` with `name: value` appended.
fn with(mut fields: Fields, name: &str, value: &str) -> Fields {
    fields.push((name.into(), value.into()));
    fields
}

/// `fields` without `name`.
fn without(mut fields: Fields, name: &str) -> Fields {
    fields.retain(|(n, _)| n != name);
    fields
}

// ---- The proxy and connections to it ----

#[derive(Clone, Copy, Debug, PartialEq)]
enum Via {
    /// The plain listener, HTTP/2 by prior knowledge.
    H2c,
    /// The TLS listener, HTTP/2 by ALPN.
    Tls,
}

/// A proxy routing `HOST` (plain and TLS) to one backend.
struct Fixture {
    via: Via,
    /// Expect the RFC's error codes where h2 answers others (see `code`).
    strict: bool,
    proxy: TestProxy,
    backend: TestBackend,
    tls: tokio_rustls::TlsConnector,
    /// The route's certificate and key files.
    cert: (PathBuf, PathBuf),
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start(via: Via, strict: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec![HOST.to_string()]).unwrap();
        let (crt, key): (PathBuf, PathBuf) = (dir.path().join("h2.crt"), dir.path().join("h2.key"));
        std::fs::write(&crt, cert.cert.pem()).unwrap();
        std::fs::write(&key, cert.key_pair.serialize_pem()).unwrap();
        let backend = TestBackend::start("h2-backend").await;
        let mut r = route("h2", &[HOST], "/", &[&backend]);
        r.tls = TlsMode::Terminate {
            cert: crt.clone(),
            key: key.clone(),
        };
        let proxy = TestProxy::start(&snapshot(1, vec![r])).await;
        Fixture {
            via,
            strict,
            proxy,
            backend,
            tls: connector(cert.cert.der().clone()),
            cert: (crt, key),
            _dir: dir,
        }
    }

    /// A connection to the listener (TLS handshake done, ALPN h2), nothing sent yet.
    async fn connect(&self) -> Conn {
        let io: Box<dyn Io> = match self.via {
            Via::H2c => Box::new(TcpStream::connect(self.proxy.http).await.unwrap()),
            Via::Tls => {
                let tcp = TcpStream::connect(self.proxy.https).await.unwrap();
                let tls = self
                    .tls
                    .connect(ServerName::try_from(HOST).unwrap(), tcp)
                    .await
                    .unwrap();
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "ALPN chose h2");
                Box::new(tls)
            }
        };
        Conn {
            io,
            buf: Vec::new(),
            hpack: fluke_hpack::Decoder::new(),
            server_settings: Vec::new(),
            log: Vec::new(),
        }
    }

    /// A connection past the preface and the SETTINGS exchange (ours empty).
    async fn open(&self) -> Conn {
        self.open_with(&[]).await
    }

    /// A connection past the preface and the SETTINGS exchange, ours with `params`.
    async fn open_with(&self, params: &[(u16, u32)]) -> Conn {
        let mut c = self.connect().await;
        let mut hello = PREFACE.to_vec();
        hello.extend(settings(params).bytes());
        c.send_raw(&hello).await;
        let (mut theirs, mut acked) = (false, false);
        while !(theirs && acked) {
            let f = c.next().await.expect("the proxy answers the preface");
            match (f.kind, f.flags & ACK) {
                (SETTINGS, 0) => {
                    c.server_settings = f
                        .payload
                        .chunks(6)
                        .map(|p| {
                            (
                                u16::from_be_bytes([p[0], p[1]]),
                                u32::from_be_bytes(p[2..6].try_into().unwrap()),
                            )
                        })
                        .collect();
                    c.send(&[Frame::new(SETTINGS, ACK, 0, Vec::new())]).await;
                    theirs = true;
                }
                (SETTINGS, _) => acked = true,
                _ => {}
            }
        }
        c
    }

    /// Routes `HOST` to `backend` instead.
    fn route_to(&self, backend: std::net::SocketAddr) {
        let mut r = route("h2", &[HOST], "/", &[]);
        r.backends = vec![interlock::model::Backend {
            addr: backend,
            weight: 1,
            id: "recording".into(),
        }];
        r.tls = TlsMode::Terminate {
            cert: self.cert.0.clone(),
            key: self.cert.1.clone(),
        };
        self.proxy.apply(&snapshot(2, vec![r]));
    }

    /// The error code to expect where RFC 9113 requires `rfc` and h2 answers `h2`: h2's in the
    /// case, the RFC's in its ignored twin (`h2c_rfc::`, `tls_rfc::`).
    fn code(&self, rfc: u32, h2: u32) -> u32 {
        if self.strict {
            rfc
        } else {
            h2
        }
    }

    /// The code of an HPACK decoding error. RFC 9113 4.3: a connection error of type
    /// COMPRESSION_ERROR. h2 (`codec/framed_read.rs`) sends GOAWAY with PROTOCOL_ERROR for every
    /// decoding error, COMPRESSION_ERROR only for a field block too large to skip.
    fn hpack_error(&self) -> u32 {
        self.code(COMPRESSION_ERROR, PROTOCOL_ERROR)
    }

    /// A GET of `path` from `HOST`.
    fn get(&self, path: &str) -> Fields {
        self.request("GET", path)
    }

    fn request(&self, method: &str, path: &str) -> Fields {
        let scheme = if self.via == Via::Tls { "https" } else { "http" };
        fields(&[
            (":method", method),
            (":scheme", scheme),
            (":authority", HOST),
            (":path", path),
        ])
    }

    fn backend_saw(&self, path: &str) -> bool {
        self.backend.seen.lock().unwrap().iter().any(|p| p == path)
    }

    /// The requests for paths starting with `prefix` that reached the backend, once a request
    /// on a fresh connection was answered: one forwarded before would have arrived by then.
    async fn forwarded(&self, prefix: &str) -> Vec<String> {
        let mut c = self.open().await;
        c.send(&[headers(1, WHOLE, &self.get("/after"))]).await;
        assert_eq!(c.response(1).await.0, 200, "the proxy still serves");
        assert!(self.backend_saw("/after"));
        let seen = self.backend.seen.lock().unwrap().clone();
        seen.into_iter().filter(|p| p.starts_with(prefix)).collect()
    }

    /// No request for a path starting with `prefix` reached the backend.
    async fn assert_never_forwarded(&self, prefix: &str) {
        let forwarded = self.forwarded(prefix).await;
        assert!(
            forwarded.is_empty(),
            "refused requests reached the backend: {forwarded:?}"
        );
    }
}

fn connector(cert: CertificateDer<'static>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// An HTTP/1.1 backend recording each request head as it came, answering 200 with no body.
async fn recording_backend() -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).await.is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                seen.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (addr, heads)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One client connection, speaking frames.
struct Conn {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    hpack: fluke_hpack::Decoder<'static>,
    /// The parameters of the proxy's first SETTINGS frame.
    server_settings: Vec<(u16, u32)>,
    /// The frames received, for the messages of failed cases.
    log: Vec<String>,
}

impl Conn {
    /// Writes `frames` in one write. A write the proxy no longer reads is not an error: the
    /// case looks at what the proxy answered.
    async fn send(&mut self, frames: &[Frame]) {
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::bytes).collect();
        self.send_raw(&bytes).await;
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.io.write_all(bytes).await;
        let _ = self.io.flush().await;
    }

    /// The next frame from the proxy (a HEADERS frame with its CONTINUATIONs, decoded),
    /// `None` once the connection is closed. Fails the case after `WAIT` of silence.
    async fn next(&mut self) -> Option<Frame> {
        let mut f = self.read_frame().await?;
        if f.kind == HEADERS {
            let mut at = 0;
            let mut end = f.payload.len();
            if f.flags & PADDED != 0 {
                at += 1;
                end -= f.payload[0] as usize;
            }
            if f.flags & PRIORITY_FLAG != 0 {
                at += 5;
            }
            let mut block = f.payload[at..end].to_vec();
            let mut flags = f.flags;
            while flags & END_HEADERS == 0 {
                let c = self.read_frame().await?;
                assert_eq!(c.kind, CONTINUATION, "a field block goes on in CONTINUATION frames");
                block.extend(&c.payload);
                flags = c.flags;
            }
            let decoded = self.hpack.decode(&block).expect("the proxy's field block decodes");
            f.fields = decoded
                .into_iter()
                .map(|(n, v)| {
                    (
                        String::from_utf8_lossy(&n).into_owned(),
                        String::from_utf8_lossy(&v).into_owned(),
                    )
                })
                .collect();
        }
        self.log.push(format!("{f:?}"));
        Some(f)
    }

    async fn read_frame(&mut self) -> Option<Frame> {
        if !self.fill(9).await {
            return None;
        }
        let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
        if !self.fill(9 + len).await {
            return None;
        }
        let stream = u32::from_be_bytes(self.buf[5..9].try_into().unwrap()) & 0x7fff_ffff;
        let f = Frame::new(self.buf[3], self.buf[4], stream, &self.buf[9..9 + len]);
        self.buf.drain(..9 + len);
        Some(f)
    }

    /// Reads until `n` bytes are buffered; false if the connection closed first.
    async fn fill(&mut self, n: usize) -> bool {
        let mut chunk = vec![0u8; 64 * 1024];
        while self.buf.len() < n {
            match tokio::time::timeout(WAIT, self.io.read(&mut chunk)).await {
                Err(_) => panic!("the proxy said nothing for {WAIT:?} after {:?}", self.log),
                // A TLS stream cut without close_notify, or a reset: closed all the same.
                Ok(Ok(0)) | Ok(Err(_)) => return false,
                Ok(Ok(k)) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        true
    }

    /// Reads frames until `want` takes one. A GOAWAY or RST_STREAM it does not take fails the
    /// case, as does the connection closing.
    async fn until<T>(&mut self, what: &str, mut want: impl FnMut(&Frame) -> Option<T>) -> T {
        loop {
            let Some(f) = self.next().await else {
                panic!("expected {what}; the connection closed after {:?}", self.log);
            };
            if let Some(t) = want(&f) {
                return t;
            }
            assert!(
                f.kind != GOAWAY && f.kind != RST_STREAM,
                "expected {what}, got {f:?}; received {:?}",
                self.log
            );
        }
    }

    /// A connection error: GOAWAY with `code`, then the connection closed.
    async fn expect_goaway(&mut self, code: u32) {
        let got = self
            .until(&format!("GOAWAY({})", code_name(code)), |f| {
                (f.kind == GOAWAY).then(|| f.code())
            })
            .await;
        assert_eq!(code_name(got), code_name(code), "GOAWAY's error code");
        self.expect_closed().await;
    }

    /// A stream error: RST_STREAM on `stream` with `code`.
    async fn expect_rst(&mut self, stream: u32, code: u32) {
        let got = self
            .until(&format!("RST_STREAM({stream}, {})", code_name(code)), |f| {
                (f.kind == RST_STREAM && f.stream == stream).then(|| f.code())
            })
            .await;
        assert_eq!(code_name(got), code_name(code), "RST_STREAM's error code");
    }

    /// A stream error: RST_STREAM on `stream` with `code`, or a connection error with `code`
    /// (RFC 9113 5.4: "an endpoint MAY choose to treat a stream error as a connection error").
    async fn expect_stream_error(&mut self, stream: u32, code: u32) {
        let (kind, got) = self
            .until(&format!("a stream error {} on {stream}", code_name(code)), |f| {
                ((f.kind == RST_STREAM && f.stream == stream) || f.kind == GOAWAY).then(|| (f.kind, f.code()))
            })
            .await;
        assert_eq!(code_name(got), code_name(code), "the stream error's code");
        if kind == GOAWAY {
            self.expect_closed().await;
        }
    }

    /// The connection closes (whatever comes before).
    async fn expect_closed(&mut self) {
        while self.next().await.is_some() {}
    }

    /// The connection still works: a PING is answered.
    async fn expect_alive(&mut self) {
        let payload = *b"alive?!!";
        self.send(&[ping(0, &payload)]).await;
        self.until("PING ACK", |f| {
            (f.kind == PING && f.flags & ACK != 0 && f.payload == payload).then_some(())
        })
        .await;
    }

    /// The response on `stream`: its status, and its body once the stream ends.
    async fn response(&mut self, stream: u32) -> (u16, Vec<u8>) {
        let (status, mut ended) = self
            .until(&format!("a response on stream {stream}"), |f| {
                (f.kind == HEADERS && f.stream == stream).then(|| (f.status().unwrap(), f.flags & END_STREAM != 0))
            })
            .await;
        let mut body = Vec::new();
        while !ended {
            let (chunk, end) = self
                .until(&format!("DATA on stream {stream}"), |f| {
                    (f.kind == DATA && f.stream == stream).then(|| (f.payload.clone(), f.flags & END_STREAM != 0))
                })
                .await;
            body.extend(chunk);
            ended = end;
        }
        (status, body)
    }

    fn setting(&self, id: u16) -> Option<u32> {
        self.server_settings.iter().find(|(i, _)| *i == id).map(|(_, v)| *v)
    }
}

// ---- RFC 9113 3.4: HTTP/2 connection preface ----

/// h2spec 3.5/1. The server's preface is a SETTINGS frame, the first frame it sends.
async fn http2_3_5_1_server_preface_is_a_settings_frame(fx: Fixture) {
    let mut c = fx.connect().await;
    let mut hello = PREFACE.to_vec();
    hello.extend(settings(&[]).bytes());
    c.send_raw(&hello).await;
    let first = c.next().await.expect("a frame");
    assert_eq!((first.kind, first.flags & ACK), (SETTINGS, 0), "{first:?}");
}

/// h2spec 3.5/2. An invalid preface is a connection error PROTOCOL_ERROR: the proxy closes the
/// connection, at most after its own SETTINGS and a GOAWAY. On the plain listener a connection
/// that does not open with the preface is HTTP/1.1, so an HTTP/1.1 error status is right there;
/// with ALPN h2 the connection is HTTP/2 from its first byte, and an HTTP/1.1 answer is wrong.
async fn http2_3_5_2_invalid_preface(fx: Fixture) {
    for (i, bad) in [
        &b"INVALID CONNECTION PREFACE\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = fx.connect().await;
        c.send_raw(bad).await;
        // Everything until the close.
        while c.fill(c.buf.len() + 1).await {}
        let text = String::from_utf8_lossy(&c.buf).into_owned();
        if fx.via == Via::H2c && text.starts_with("HTTP/1.1 ") {
            assert!(
                text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 5"),
                "preface {i}: {text}"
            );
            continue;
        }
        let mut frames = Vec::new();
        while let Some(f) = c.read_frame().await {
            frames.push(f);
        }
        assert!(c.buf.is_empty(), "preface {i}: not HTTP/2 frames: {text:?}");
        for f in &frames {
            assert!(
                f.kind == SETTINGS || (f.kind == GOAWAY && f.code() == PROTOCOL_ERROR),
                "preface {i}: {frames:?}"
            );
        }
    }
}

// ---- RFC 9113 4.1: frame format ----

/// h2spec 4.1/1 (and 5.5/1). Frames of an unknown type are ignored.
async fn http2_4_1_1_unknown_frame_type_is_ignored(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[Frame::new(0x16, 0, 0, *b"unknown!")]).await;
    c.expect_alive().await;
}

/// h2spec 4.1/2. Undefined flags are ignored: a PING with flags 0x16 (ACK unset) is answered.
async fn http2_4_1_2_undefined_flags_are_ignored(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[ping(0x16, b"flags!!!")]).await;
    let ack = c
        .until("PING ACK", |f| (f.kind == PING).then(|| (f.flags, f.payload.clone())))
        .await;
    assert_eq!(ack, (ACK, b"flags!!!".to_vec()));
}

/// h2spec 4.1/3. The reserved bit of the stream identifier is ignored.
async fn http2_4_1_3_reserved_bit_is_ignored(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[headers(1 | 0x8000_0000, WHOLE, &fx.get("/ok"))]).await;
    assert_eq!(c.response(1).await.0, 200);
}

// ---- RFC 9113 4.2: frame size ----

/// h2spec 4.2/1. A DATA frame of 2^14 octets (the initial SETTINGS_MAX_FRAME_SIZE) is fine.
async fn http2_4_2_1_data_of_the_max_frame_size(fx: Fixture) {
    let mut c = fx.open().await;
    let body = vec![b'x'; 16_384];
    c.send(&[
        headers(
            1,
            END_HEADERS,
            &with(fx.request("POST", "/ok"), "content-length", "16384"),
        ),
        data(1, END_STREAM, &body),
    ])
    .await;
    let (status, echoed) = c.response(1).await;
    assert_eq!((status, echoed.len()), (200, body.len()), "the backend echoes the body");
}

/// h2spec 4.2/2. A frame over SETTINGS_MAX_FRAME_SIZE is a FRAME_SIZE_ERROR; h2 makes it a
/// connection error (allowed for DATA, which may also be a stream error).
async fn http2_4_2_2_data_over_the_max_frame_size(fx: Fixture) {
    let mut c = fx.open().await;
    assert_eq!(c.setting(MAX_FRAME_SIZE).unwrap_or(16_384), 16_384);
    c.send(&[
        headers(1, END_HEADERS, &fx.request("POST", "/refused")),
        data(1, END_STREAM, &vec![b'x'; 16_385]),
    ])
    .await;
    c.expect_goaway(FRAME_SIZE_ERROR).await;
}

/// h2spec 4.2/3. A frame carrying a field block over the max size is a connection error
/// FRAME_SIZE_ERROR, and the request is not served.
async fn http2_4_2_3_headers_over_the_max_frame_size(fx: Fixture) {
    let mut c = fx.open().await;
    let big = with(fx.get("/refused"), "x-big", &"a".repeat(16_400));
    c.send(&[headers(1, WHOLE, &big)]).await;
    c.expect_goaway(FRAME_SIZE_ERROR).await;
    fx.assert_never_forwarded("/refused").await;
}

// ---- RFC 9113 4.3: field section compression ----

/// h2spec 4.3/1. A field block that does not decode is a connection error COMPRESSION_ERROR
/// (h2: PROTOCOL_ERROR, see `Fixture::hpack_error`): here a literal cut short.
async fn http2_4_3_1_invalid_field_block(fx: Fixture) {
    let mut c = fx.open().await;
    let mut b = block(&fx.get("/refused"));
    b.extend([0x00, 0x05, b'x']);
    c.send(&[Frame::new(HEADERS, WHOLE, 1, b)]).await;
    c.expect_goaway(fx.hpack_error()).await;
    fx.assert_never_forwarded("/refused").await;
}

/// h2spec 4.3/2. A field block is contiguous: a PRIORITY frame inside one is a connection
/// error PROTOCOL_ERROR (RFC 9113 4.3, 6.10).
async fn http2_4_3_2_priority_inside_a_field_block(fx: Fixture) {
    let mut c = fx.open().await;
    let b = block(&fx.get("/refused"));
    let (first, rest) = b.split_at(5);
    c.send(&[
        Frame::new(HEADERS, END_STREAM, 1, first),
        priority(1, 0),
        continuation(1, END_HEADERS, rest),
    ])
    .await;
    c.expect_goaway(PROTOCOL_ERROR).await;
    fx.assert_never_forwarded("/refused").await;
}

/// h2spec 4.3/3. HEADERS of another stream inside a field block: PROTOCOL_ERROR.
async fn http2_4_3_3_headers_of_another_stream_inside_a_field_block(fx: Fixture) {
    let mut c = fx.open().await;
    let b = block(&fx.get("/refused"));
    let (first, rest) = b.split_at(5);
    c.send(&[
        Frame::new(HEADERS, END_STREAM, 1, first),
        headers(3, WHOLE, &fx.get("/refused-3")),
        continuation(1, END_HEADERS, rest),
    ])
    .await;
    c.expect_goaway(PROTOCOL_ERROR).await;
    fx.assert_never_forwarded("/refused").await;
}

// ---- RFC 9113 5.1: stream states ----

/// h2spec 5.1/1. DATA on an idle stream: connection error PROTOCOL_ERROR.
async fn http2_5_1_1_data_on_an_idle_stream(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[data(1, END_STREAM, b"idle")]).await;
    c.expect_goaway(PROTOCOL_ERROR).await;
}

/// h2spec 5.1/2 (and 6.4/2). RST_STREAM on an idle stream: connection error PROTOCOL_ERROR.
async fn http2_5_1_2_rst_stream_on_an_idle_stream(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[rst_stream(1, CANCEL)]).await;
    c.expect_goaway(PROTOCOL_ERROR).await;
}

/// h2spec 5.1/3. WINDOW_UPDATE on an idle stream: connection error PROTOCOL_ERROR.
async fn http2_5_1_3_window_update_on_an_idle_stream(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[window_update(1, 100)]).await;
    c.expect_goaway(PROTOCOL_ERROR).await;
}

/// h2spec 5.1/4. CONTINUATION on an idle stream: connection error PROTOCOL_ERROR.
async fn http2_5_1_4_continuation_on_an_idle_stream(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[continuation(1, END_HEADERS, &block(&fx.get("/refused")))])
        .await;
    c.expect_goaway(PROTOCOL_ERROR).await;
    fx.assert_never_forwarded("/refused").await;
}

/// h2spec 5.1/5. DATA on a half-closed (remote) stream: stream error STREAM_CLOSED. h2 makes
/// it a connection error PROTOCOL_ERROR ("unexpected DATA frame").
async fn http2_5_1_5_data_on_a_half_closed_stream(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[headers(1, WHOLE, &fx.get("/ok")), data(1, END_STREAM, b"late")])
        .await;
    c.expect_stream_error(1, fx.code(STREAM_CLOSED, PROTOCOL_ERROR)).await;
}

/// h2spec 5.1/6. HEADERS on a half-closed (remote) stream: stream error STREAM_CLOSED. h2:
/// connection error PROTOCOL_ERROR (`recv_close` in an unexpected state).
async fn http2_5_1_6_headers_on_a_half_closed_stream(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[
        headers(1, WHOLE, &fx.get("/ok")),
        headers(1, WHOLE, &fields(&[("x-late", "1")])),
    ])
    .await;
    c.expect_stream_error(1, fx.code(STREAM_CLOSED, PROTOCOL_ERROR)).await;
}

/// h2spec 5.1/8. DATA after the client reset the stream: stream error STREAM_CLOSED
/// ("any frame other than PRIORITY after receiving a RST_STREAM").
async fn http2_5_1_8_data_after_rst_stream(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[
        headers(1, END_HEADERS, &fx.request("POST", "/reset")),
        rst_stream(1, CANCEL),
        data(1, END_STREAM, b"late"),
    ])
    .await;
    c.expect_stream_error(1, STREAM_CLOSED).await;
}

/// h2spec 5.1/11. DATA on a closed stream (both sides sent END_STREAM): STREAM_CLOSED, a
/// connection error by 5.1 ("any frames after receiving a frame with the END_STREAM flag"), a
/// stream error by 6.1; h2 answers RST_STREAM.
async fn http2_5_1_11_data_on_a_closed_stream(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[headers(1, WHOLE, &fx.get("/ok"))]).await;
    assert_eq!(c.response(1).await.0, 200);
    c.send(&[data(1, END_STREAM, b"late")]).await;
    c.expect_stream_error(1, STREAM_CLOSED).await;
}

/// h2spec 5.1/12. HEADERS on a closed stream: STREAM_CLOSED (as 5.1/11). h2 takes it for a
/// new stream with a used identifier: connection error PROTOCOL_ERROR.
async fn http2_5_1_12_headers_on_a_closed_stream(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[headers(1, WHOLE, &fx.get("/ok"))]).await;
    assert_eq!(c.response(1).await.0, 200);
    c.send(&[headers(1, WHOLE, &fx.get("/refused"))]).await;
    c.expect_stream_error(1, fx.code(STREAM_CLOSED, PROTOCOL_ERROR)).await;
    fx.assert_never_forwarded("/refused").await;
}

// ---- RFC 9113 5.1.1: stream identifiers ----

/// h2spec 5.1.1/1. A client's stream identifiers are odd: an even one is a connection error
/// PROTOCOL_ERROR.
async fn http2_5_1_1_1_even_stream_identifier(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[headers(2, WHOLE, &fx.get("/refused"))]).await;
    c.expect_goaway(PROTOCOL_ERROR).await;
    fx.assert_never_forwarded("/refused").await;
}

/// h2spec 5.1.1/2. Stream identifiers only grow: a smaller one is a connection error
/// PROTOCOL_ERROR.
async fn http2_5_1_1_2_smaller_stream_identifier(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[
        headers(5, WHOLE, &fx.get("/ok")),
        headers(3, WHOLE, &fx.get("/refused")),
    ])
    .await;
    c.expect_goaway(PROTOCOL_ERROR).await;
    fx.assert_never_forwarded("/refused").await;
}

// ---- RFC 9113 5.1.2: stream concurrency ----

/// h2spec 5.1.2/1. A stream over the advertised SETTINGS_MAX_CONCURRENT_STREAMS is refused:
/// stream error PROTOCOL_ERROR or REFUSED_STREAM (the latter says it may be retried).
async fn http2_5_1_2_1_streams_over_the_concurrency_limit(fx: Fixture) {
    let mut c = fx.open().await;
    let max = c
        .setting(MAX_CONCURRENT_STREAMS)
        .expect("the proxy limits concurrent streams");
    assert_eq!(max, 256);
    // Open streams: POSTs whose bodies never end.
    let frames: Vec<Frame> = (0..max)
        .map(|i| headers(1 + 2 * i, END_HEADERS, &fx.request("POST", &format!("/open/{i}"))))
        .collect();
    c.send(&frames).await;
    let over = 1 + 2 * max;
    c.send(&[headers(over, END_HEADERS, &fx.request("POST", "/refused"))])
        .await;
    c.expect_rst(over, REFUSED_STREAM).await;
    fx.assert_never_forwarded("/refused").await;
}

// ---- RFC 9113 5.3.1: stream dependencies ----

/// h2spec 5.3.1/1. A stream cannot depend on itself: HEADERS saying so is a stream error
/// PROTOCOL_ERROR.
async fn http2_5_3_1_1_headers_depending_on_itself(fx: Fixture) {
    let mut c = fx.open().await;
    let mut payload = 1u32.to_be_bytes().to_vec();
    payload.push(15);
    payload.extend(block(&fx.get("/refused")));
    c.send(&[Frame::new(HEADERS, WHOLE | PRIORITY_FLAG, 1, payload)]).await;
    c.expect_stream_error(1, PROTOCOL_ERROR).await;
    fx.assert_never_forwarded("/refused").await;
}

/// h2spec 5.3.1/2. The same for a PRIORITY frame.
async fn http2_5_3_1_2_priority_depending_on_itself(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[priority(1, 1)]).await;
    c.expect_stream_error(1, PROTOCOL_ERROR).await;
}

// ---- RFC 9113 5.5: extending HTTP/2 ----

/// h2spec 5.5/2. An unknown frame inside a field block is a connection error PROTOCOL_ERROR
/// (a field block allows only CONTINUATION frames of its stream).
async fn http2_5_5_2_unknown_frame_inside_a_field_block(fx: Fixture) {
    let mut c = fx.open().await;
    let b = block(&fx.get("/refused"));
    let (first, rest) = b.split_at(5);
    c.send(&[
        Frame::new(HEADERS, END_STREAM, 1, first),
        Frame::new(0x16, 0, 0, *b"unknown!"),
        continuation(1, END_HEADERS, rest),
    ])
    .await;
    c.expect_goaway(PROTOCOL_ERROR).await;
    fx.assert_never_forwarded("/refused").await;
}

// ---- RFC 9113 6.1: DATA ----

/// h2spec 6.1/1. DATA on stream 0: connection error PROTOCOL_ERROR.
async fn http2_6_1_1_data_on_stream_0(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[data(0, END_STREAM, b"zero")]).await;
    c.expect_goaway(PROTOCOL_ERROR).await;
}

/// h2spec 6.1/3. Padding as long as the payload or longer: connection error PROTOCOL_ERROR.
async fn http2_6_1_3_data_with_an_invalid_pad_length(fx: Fixture) {
    let mut c = fx.open().await;
    let mut payload = vec![6u8];
    payload.extend(b"short");
    c.send(&[
        headers(1, END_HEADERS, &fx.request("POST", "/padded")),
        Frame::new(DATA, END_STREAM | PADDED, 1, payload),
    ])
    .await;
    c.expect_goaway(PROTOCOL_ERROR).await;
}

// ---- RFC 9113 6.2: HEADERS ----

/// RFC 9113 6.2. Padding and a priority block in HEADERS are removed, the request served.
async fn http2_6_2_padded_headers_with_priority(fx: Fixture) {
    let mut c = fx.open().await;
    let mut payload = vec![4u8];
    payload.extend(0u32.to_be_bytes());
    payload.push(15);
    payload.extend(block(&fx.get("/ok")));
    payload.extend([0; 4]);
    c.send(&[Frame::new(HEADERS, WHOLE | PADDED | PRIORITY_FLAG, 1, payload)])
        .await;
    assert_eq!(c.response(1).await.0, 200);
    assert!(fx.backend_saw("/ok"));
}

/// h2spec 6.2/3. HEADERS on stream 0: connection error PROTOCOL_ERROR.
async fn http2_6_2_3_headers_on_stream_0(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[headers(0, WHOLE, &fx.get("/refused"))]).await;
    c.expect_goaway(PROTOCOL_ERROR).await;
    fx.assert_never_forwarded("/refused").await;
}

/// h2spec 6.2/4. HEADERS padding over the payload: connection error PROTOCOL_ERROR.
async fn http2_6_2_4_headers_with_an_invalid_pad_length(fx: Fixture) {
    let mut c = fx.open().await;
    let b = block(&fx.get("/refused"));
    let mut payload = vec![(b.len() + 1) as u8];
    payload.extend(b);
    c.send(&[Frame::new(HEADERS, WHOLE | PADDED, 1, payload)]).await;
    c.expect_goaway(PROTOCOL_ERROR).await;
    fx.assert_never_forwarded("/refused").await;
}

// ---- RFC 9113 6.3: PRIORITY ----

/// h2spec 6.3/1. PRIORITY on stream 0: connection error PROTOCOL_ERROR.
async fn http2_6_3_1_priority_on_stream_0(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[priority(0, 1)]).await;
    c.expect_goaway(PROTOCOL_ERROR).await;
}

/// h2spec 6.3/2. PRIORITY of a length other than 5: stream error FRAME_SIZE_ERROR. h2 answers
/// every frame it cannot load (a wrong length included) with a connection error
/// PROTOCOL_ERROR (`codec/framed_read.rs`).
async fn http2_6_3_2_priority_of_a_wrong_length(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[Frame::new(PRIORITY, 0, 1, [0, 0, 0, 0])]).await;
    c.expect_stream_error(1, fx.code(FRAME_SIZE_ERROR, PROTOCOL_ERROR))
        .await;
}

// ---- RFC 9113 6.4: RST_STREAM ----

/// h2spec 6.4/1. RST_STREAM on stream 0: connection error PROTOCOL_ERROR.
async fn http2_6_4_1_rst_stream_on_stream_0(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[rst_stream(0, CANCEL)]).await;
    c.expect_goaway(PROTOCOL_ERROR).await;
}

/// h2spec 6.4/3. RST_STREAM of a length other than 4: connection error FRAME_SIZE_ERROR.
/// h2: PROTOCOL_ERROR, as for 6.3/2.
async fn http2_6_4_3_rst_stream_of_a_wrong_length(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[
        headers(1, END_HEADERS, &fx.request("POST", "/reset")),
        Frame::new(RST_STREAM, 0, 1, [0, 0, 0]),
    ])
    .await;
    c.expect_goaway(fx.code(FRAME_SIZE_ERROR, PROTOCOL_ERROR)).await;
}

// ---- RFC 9113 6.5: SETTINGS ----

/// h2spec 6.5/1. SETTINGS with ACK and a payload: connection error FRAME_SIZE_ERROR.
/// h2: PROTOCOL_ERROR, as for 6.3/2.
async fn http2_6_5_1_settings_ack_with_a_payload(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[Frame::new(SETTINGS, ACK, 0, [0, 4, 0, 0, 0, 1])]).await;
    c.expect_goaway(fx.code(FRAME_SIZE_ERROR, PROTOCOL_ERROR)).await;
}

/// h2spec 6.5/2. SETTINGS on a stream: connection error PROTOCOL_ERROR.
async fn http2_6_5_2_settings_on_a_stream(fx: Fixture) {
    let mut c = fx.open().await;
    let mut f = settings(&[(INITIAL_WINDOW_SIZE, 100)]);
    f.stream = 1;
    c.send(&[f]).await;
    c.expect_goaway(PROTOCOL_ERROR).await;
}

/// h2spec 6.5/3. SETTINGS whose length is not a multiple of 6: connection error
/// FRAME_SIZE_ERROR. h2: PROTOCOL_ERROR, as for 6.3/2.
async fn http2_6_5_3_settings_of_a_wrong_length(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[Frame::new(SETTINGS, 0, 0, [0, 4, 0, 0, 1])]).await;
    c.expect_goaway(fx.code(FRAME_SIZE_ERROR, PROTOCOL_ERROR)).await;
}

/// h2spec 6.5.2/1. SETTINGS_ENABLE_PUSH other than 0 or 1: connection error PROTOCOL_ERROR.
async fn http2_6_5_2_1_enable_push_out_of_range(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[settings(&[(ENABLE_PUSH, 2)])]).await;
    c.expect_goaway(PROTOCOL_ERROR).await;
}

/// h2spec 6.5.2/2 (and 6.9.2/3). SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1: connection error
/// FLOW_CONTROL_ERROR. h2 rejects the value when it loads the frame: PROTOCOL_ERROR, as for
/// 6.3/2.
async fn http2_6_5_2_2_initial_window_size_out_of_range(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[settings(&[(INITIAL_WINDOW_SIZE, 1 << 31)])]).await;
    c.expect_goaway(fx.code(FLOW_CONTROL_ERROR, PROTOCOL_ERROR)).await;
}

/// h2spec 6.5.2/3. SETTINGS_MAX_FRAME_SIZE under 2^14: connection error PROTOCOL_ERROR.
async fn http2_6_5_2_3_max_frame_size_too_small(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[settings(&[(MAX_FRAME_SIZE, 16_383)])]).await;
    c.expect_goaway(PROTOCOL_ERROR).await;
}

/// h2spec 6.5.2/4. SETTINGS_MAX_FRAME_SIZE over 2^24-1: connection error PROTOCOL_ERROR.
async fn http2_6_5_2_4_max_frame_size_too_large(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[settings(&[(MAX_FRAME_SIZE, 1 << 24)])]).await;
    c.expect_goaway(PROTOCOL_ERROR).await;
}

/// h2spec 6.5.2/5. An unknown setting is ignored (and the frame acknowledged).
async fn http2_6_5_2_5_unknown_setting_is_ignored(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[settings(&[(0xff, 1)])]).await;
    c.until("SETTINGS ACK", |f| {
        (f.kind == SETTINGS && f.flags & ACK != 0).then_some(())
    })
    .await;
    c.expect_alive().await;
}

/// h2spec 6.5.3/1. The values of a SETTINGS frame are applied in order: the last
/// SETTINGS_INITIAL_WINDOW_SIZE, 1, holds and the response body comes a byte at a time.
async fn http2_6_5_3_1_settings_are_applied_in_order(fx: Fixture) {
    let mut c = fx
        .open_with(&[(INITIAL_WINDOW_SIZE, 100), (INITIAL_WINDOW_SIZE, 1)])
        .await;
    c.send(&[headers(1, WHOLE, &fx.get("/ok"))]).await;
    assert_eq!(
        c.until("a response", |f| (f.kind == HEADERS).then(|| f.status())).await,
        Some(200)
    );
    let first = c.until("DATA", |f| (f.kind == DATA).then_some(f.payload.len())).await;
    assert_eq!(first, 1, "a window of one byte");
}

/// h2spec 6.5.3/2. SETTINGS is acknowledged.
async fn http2_6_5_3_2_settings_are_acknowledged(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[settings(&[(INITIAL_WINDOW_SIZE, 100_000)])]).await;
    c.until("SETTINGS ACK", |f| {
        (f.kind == SETTINGS && f.flags & ACK != 0).then_some(())
    })
    .await;
}

// ---- RFC 9113 6.7: PING ----

/// h2spec 6.7/1. A PING is answered with an ACK carrying the same payload.
async fn http2_6_7_1_ping_is_answered(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[ping(0, b"h2frames")]).await;
    let ack = c
        .until("PING ACK", |f| (f.kind == PING).then(|| (f.flags, f.payload.clone())))
        .await;
    assert_eq!(ack, (ACK, b"h2frames".to_vec()));
}

/// h2spec 6.7/2. A PING ACK is not answered: only the later PING's ACK comes back.
async fn http2_6_7_2_ping_ack_is_not_answered(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[ping(ACK, b"unasked!"), ping(0, b"asked!!!")]).await;
    let payload = c
        .until("PING ACK", |f| (f.kind == PING).then(|| f.payload.clone()))
        .await;
    assert_eq!(payload, b"asked!!!");
}

/// h2spec 6.7/3. PING on a stream: connection error PROTOCOL_ERROR (h2spec 5.4.1/1 and
/// 5.4.1/2 too: a connection error is a GOAWAY, then the connection closed).
async fn http2_6_7_3_ping_on_a_stream(fx: Fixture) {
    let mut c = fx.open().await;
    let mut f = ping(0, b"stream 1");
    f.stream = 1;
    c.send(&[f]).await;
    c.expect_goaway(PROTOCOL_ERROR).await;
}

/// h2spec 6.7/4. PING of a length other than 8: connection error FRAME_SIZE_ERROR.
/// h2: PROTOCOL_ERROR, as for 6.3/2.
async fn http2_6_7_4_ping_of_a_wrong_length(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[Frame::new(PING, 0, 0, *b"short!")]).await;
    c.expect_goaway(fx.code(FRAME_SIZE_ERROR, PROTOCOL_ERROR)).await;
}

// ---- RFC 9113 6.8: GOAWAY ----

/// h2spec 6.8/1. GOAWAY on a stream: connection error PROTOCOL_ERROR.
async fn http2_6_8_1_goaway_on_a_stream(fx: Fixture) {
    let mut c = fx.open().await;
    let mut f = goaway(0, NO_ERROR);
    f.stream = 1;
    c.send(&[f]).await;
    c.expect_goaway(PROTOCOL_ERROR).await;
}

// ---- RFC 9113 6.9: WINDOW_UPDATE and flow control ----

/// h2spec 6.9/1. A zero increment for the connection: connection error PROTOCOL_ERROR.
async fn http2_6_9_1_zero_increment_for_the_connection(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[window_update(0, 0)]).await;
    c.expect_goaway(PROTOCOL_ERROR).await;
}

/// h2spec 6.9/2. A zero increment for a stream: stream error PROTOCOL_ERROR (h2: GOAWAY).
async fn http2_6_9_2_zero_increment_for_a_stream(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[
        headers(1, END_HEADERS, &fx.request("POST", "/zero")),
        window_update(1, 0),
    ])
    .await;
    c.expect_stream_error(1, PROTOCOL_ERROR).await;
}

/// h2spec 6.9/3. WINDOW_UPDATE of a length other than 4: connection error FRAME_SIZE_ERROR.
/// h2: PROTOCOL_ERROR, as for 6.3/2.
async fn http2_6_9_3_window_update_of_a_wrong_length(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[Frame::new(WINDOW_UPDATE, 0, 0, [0, 0, 1])]).await;
    c.expect_goaway(fx.code(FRAME_SIZE_ERROR, PROTOCOL_ERROR)).await;
}

/// h2spec 6.9.1/1. With SETTINGS_INITIAL_WINDOW_SIZE 1 the body comes one byte per window
/// update.
async fn http2_6_9_1_1_a_window_of_one_byte(fx: Fixture) {
    let mut c = fx.open_with(&[(INITIAL_WINDOW_SIZE, 1)]).await;
    c.send(&[headers(1, WHOLE, &fx.get("/ok"))]).await;
    let first = c.until("DATA", |f| (f.kind == DATA).then_some(f.payload.len())).await;
    assert_eq!(first, 1);
    c.send(&[window_update(1, 1)]).await;
    let second = c.until("DATA", |f| (f.kind == DATA).then_some(f.payload.len())).await;
    assert_eq!(second, 1);
}

/// h2spec 6.9.1/2. A connection window over 2^31-1: connection error FLOW_CONTROL_ERROR.
async fn http2_6_9_1_2_connection_window_overflow(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[window_update(0, 0x7fff_ffff)]).await;
    c.expect_goaway(FLOW_CONTROL_ERROR).await;
}

/// h2spec 6.9.1/3. A stream window over 2^31-1: stream error FLOW_CONTROL_ERROR.
async fn http2_6_9_1_3_stream_window_overflow(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[
        headers(1, END_HEADERS, &fx.request("POST", "/overflow")),
        window_update(1, 0x7fff_ffff),
    ])
    .await;
    c.expect_stream_error(1, FLOW_CONTROL_ERROR).await;
}

/// h2spec 6.9.2/1. A change of SETTINGS_INITIAL_WINDOW_SIZE applies to open streams: with a
/// window of 0 no DATA comes; raised to 1, one byte does.
async fn http2_6_9_2_1_initial_window_change_applies_to_open_streams(fx: Fixture) {
    let mut c = fx.open_with(&[(INITIAL_WINDOW_SIZE, 0)]).await;
    c.send(&[headers(1, WHOLE, &fx.get("/ok"))]).await;
    assert_eq!(
        c.until("a response", |f| (f.kind == HEADERS).then(|| f.status())).await,
        Some(200)
    );
    // A PING round trip: no DATA with a payload comes before its ACK.
    c.send(&[ping(0, b"window 0")]).await;
    c.until("PING ACK", |f| {
        assert!(
            f.kind != DATA || f.payload.is_empty(),
            "DATA beyond a window of 0: {f:?}"
        );
        (f.kind == PING && f.flags & ACK != 0).then_some(())
    })
    .await;
    c.send(&[settings(&[(INITIAL_WINDOW_SIZE, 1)])]).await;
    let first = c.until("DATA", |f| (f.kind == DATA).then_some(f.payload.len())).await;
    assert_eq!(first, 1);
}

// ---- RFC 9113 6.10: CONTINUATION ----

/// h2spec 6.10/1. A field block in HEADERS and several CONTINUATION frames is served.
async fn http2_6_10_1_continuations_make_one_field_block(fx: Fixture) {
    let mut c = fx.open().await;
    let b = block(&with(fx.get("/ok"), "x-long", &"v".repeat(100)));
    let parts: Vec<&[u8]> = b.chunks(30).collect();
    let last = parts.len() - 1;
    let mut frames = vec![Frame::new(HEADERS, END_STREAM, 1, parts[0])];
    for (i, p) in parts.iter().enumerate().skip(1) {
        frames.push(continuation(1, if i == last { END_HEADERS } else { 0 }, p));
    }
    c.send(&frames).await;
    assert_eq!(c.response(1).await.0, 200);
    assert!(fx.backend_saw("/ok"));
}

/// h2spec 6.10/2. A frame other than CONTINUATION inside a field block: connection error
/// PROTOCOL_ERROR.
async fn http2_6_10_2_other_frame_between_continuations(fx: Fixture) {
    let mut c = fx.open().await;
    let b = block(&fx.get("/refused"));
    c.send(&[
        Frame::new(HEADERS, END_STREAM, 1, &b[..5]),
        continuation(1, 0, &b[5..10]),
        data(1, 0, b"x"),
        continuation(1, END_HEADERS, &b[10..]),
    ])
    .await;
    c.expect_goaway(PROTOCOL_ERROR).await;
    fx.assert_never_forwarded("/refused").await;
}

/// h2spec 6.10/3. CONTINUATION on stream 0: connection error PROTOCOL_ERROR.
async fn http2_6_10_3_continuation_on_stream_0(fx: Fixture) {
    let mut c = fx.open().await;
    let b = block(&fx.get("/refused"));
    c.send(&[
        Frame::new(HEADERS, END_STREAM, 1, &b[..5]),
        continuation(0, END_HEADERS, &b[5..]),
    ])
    .await;
    c.expect_goaway(PROTOCOL_ERROR).await;
    fx.assert_never_forwarded("/refused").await;
}

/// h2spec 6.10/4. CONTINUATION after a HEADERS with END_HEADERS: connection error
/// PROTOCOL_ERROR.
async fn http2_6_10_4_continuation_after_end_headers(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[
        headers(1, END_HEADERS, &fx.request("POST", "/cont")),
        continuation(1, END_HEADERS, &block(&fields(&[("x-late", "1")]))),
    ])
    .await;
    c.expect_goaway(PROTOCOL_ERROR).await;
}

/// h2spec 6.10/5. CONTINUATION after the CONTINUATION that ended the field block:
/// connection error PROTOCOL_ERROR.
async fn http2_6_10_5_continuation_after_the_last_continuation(fx: Fixture) {
    let mut c = fx.open().await;
    let b = block(&fx.request("POST", "/cont"));
    c.send(&[
        Frame::new(HEADERS, 0, 1, &b[..5]),
        continuation(1, END_HEADERS, &b[5..]),
        continuation(1, END_HEADERS, &block(&fields(&[("x-late", "1")]))),
    ])
    .await;
    c.expect_goaway(PROTOCOL_ERROR).await;
}

/// h2spec 6.10/6. CONTINUATION after DATA: connection error PROTOCOL_ERROR.
async fn http2_6_10_6_continuation_after_data(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[
        headers(1, END_HEADERS, &fx.request("POST", "/cont")),
        data(1, 0, b"body"),
        continuation(1, END_HEADERS, &block(&fields(&[("x-late", "1")]))),
    ])
    .await;
    c.expect_goaway(PROTOCOL_ERROR).await;
}

/// A CONTINUATION flood (a field block that never ends) is cut off: GOAWAY, the connection
/// closed, nothing forwarded (RFC 9113 10.5; h2 counts the frames: ENHANCE_YOUR_CALM).
async fn extra_continuation_flood_is_bounded(fx: Fixture) {
    let mut c = fx.open().await;
    let mut frames = vec![Frame::new(HEADERS, END_STREAM, 1, block(&fx.get("/refused")))];
    for _ in 0..100 {
        frames.push(continuation(1, 0, &block(&fields(&[("x-flood", &"f".repeat(100))]))));
    }
    c.send(&frames).await;
    c.expect_goaway(ENHANCE_YOUR_CALM).await;
    fx.assert_never_forwarded("/refused").await;
}

// ---- RFC 9113 7: error codes ----

/// h2spec 7/1. An unknown error code in GOAWAY triggers nothing special: the stream the
/// client opened before it is still answered.
async fn http2_7_1_unknown_error_code_in_goaway(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[headers(1, WHOLE, &fx.get("/ok")), goaway(0, 0xff)]).await;
    assert_eq!(c.response(1).await.0, 200);
}

/// h2spec 7/2. An unknown error code in RST_STREAM triggers nothing special.
async fn http2_7_2_unknown_error_code_in_rst_stream(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[
        headers(1, END_HEADERS, &fx.request("POST", "/reset")),
        rst_stream(1, 0xff),
    ])
    .await;
    c.expect_alive().await;
    c.send(&[headers(3, WHOLE, &fx.get("/ok"))]).await;
    assert_eq!(c.response(3).await.0, 200);
}

// ---- RFC 9113 8.1: HTTP message framing ----

/// h2spec 8.1/1. A second HEADERS (trailers) without END_STREAM: stream error
/// PROTOCOL_ERROR. The request head was forwarded already (bodies stream), so the backend may
/// have seen it; its body never ends well.
async fn http2_8_1_1_trailers_without_end_stream(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[
        headers(1, END_HEADERS, &fx.request("POST", "/trailers")),
        data(1, 0, b"body"),
        headers(1, END_HEADERS, &fields(&[("x-trailer", "1")])),
    ])
    .await;
    c.expect_stream_error(1, PROTOCOL_ERROR).await;
}

/// h2spec 8.1.2.6/1 (RFC 9113 8.1.1). DATA over the content-length: the request is malformed,
/// a stream error PROTOCOL_ERROR. (The head may have been forwarded, as above.)
async fn http2_8_1_2_6_1_data_over_the_content_length(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[
        headers(
            1,
            END_HEADERS,
            &with(fx.request("POST", "/length"), "content-length", "2"),
        ),
        data(1, END_STREAM, b"longer"),
    ])
    .await;
    c.expect_stream_error(1, PROTOCOL_ERROR).await;
}

/// h2spec 8.1.2.6/2 (RFC 9113 8.1.1). DATA frames short of the content-length: PROTOCOL_ERROR.
async fn http2_8_1_2_6_2_data_short_of_the_content_length(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[
        headers(
            1,
            END_HEADERS,
            &with(fx.request("POST", "/length"), "content-length", "10"),
        ),
        data(1, 0, b"abc"),
        data(1, END_STREAM, b"de"),
    ])
    .await;
    c.expect_stream_error(1, PROTOCOL_ERROR).await;
}

// ---- RFC 9113 8.2 and 8.3: field validity, pseudo-header fields ----

/// Each request of `rows`, on a connection of its own, is malformed: a stream error
/// PROTOCOL_ERROR (RFC 9113 8.1.1), and never reaches the backend. Paths start with `/refused`.
async fn refused_rows(fx: &Fixture, rows: Vec<(&str, Fields)>) {
    for (what, fields) in rows {
        let mut c = fx.open().await;
        c.send(&[headers(1, WHOLE, &fields)]).await;
        let (kind, code) = c
            .until(&format!("a stream error for {what}"), |f| {
                ((f.kind == RST_STREAM && f.stream == 1) || f.kind == GOAWAY).then(|| (f.kind, f.code()))
            })
            .await;
        assert_eq!(code_name(code), code_name(PROTOCOL_ERROR), "{what}: {kind:?}");
    }
    fx.assert_never_forwarded("/refused").await;
}

/// h2spec 8.1.2/1 (RFC 9113 8.2.1). Field names and values: uppercase in a name, a name with a
/// colon or a space, NUL, CR or LF in a value: the request is malformed, a stream error
/// PROTOCOL_ERROR. h2 checks them as it decodes, and fails the connection (GOAWAY).
async fn http2_8_1_2_1_invalid_field_names_and_values(fx: Fixture) {
    let get = |p: &str| fx.get(p);
    refused_rows(
        &fx,
        vec![
            ("8.1.2/1 uppercase name", with(get("/refused/1"), "X-Upper", "1")),
            ("name with a colon", with(get("/refused/2"), "x:colon", "1")),
            ("name with a space", with(get("/refused/3"), "x space", "1")),
            ("value with LF", with(get("/refused/4"), "x-lf", "a\nb")),
            ("value with CR", with(get("/refused/5"), "x-cr", "a\rb")),
            ("value with NUL", with(get("/refused/6"), "x-nul", "a\0b")),
        ],
    )
    .await;
}

/// RFC 9113 8.2.1: "A field value MUST NOT start or end with an ASCII whitespace character";
/// such a request is malformed, and an intermediary MUST NOT forward it (8.1.1). h2 does not
/// check (the http crate's `HeaderValue` allows it); the proxy's normalisation answers `400`
/// (8.1.1: a server MAY send a response to a malformed request).
async fn rfc_8_2_1_field_value_with_surrounding_whitespace(fx: Fixture) {
    for (stream, value) in [(1, " a"), (3, "a\t")] {
        let mut c = fx.open().await;
        c.send(&[headers(stream, WHOLE, &with(fx.get("/refused/ws"), "x-ws", value))])
            .await;
        assert_eq!(c.response(stream).await.0, 400, "{value:?}");
    }
    fx.assert_never_forwarded("/refused").await;
}

/// h2spec 8.1.2.2/1 and 8.1.2.2/2 (RFC 9113 8.2.2). Connection-specific fields are malformed
/// in HTTP/2, and TE may only say `trailers`: stream error PROTOCOL_ERROR. `te: trailers` is
/// served.
async fn http2_8_1_2_2_connection_specific_fields(fx: Fixture) {
    let get = |p: &str| fx.get(p);
    refused_rows(
        &fx,
        vec![
            (
                "connection: keep-alive",
                with(get("/refused/1"), "connection", "keep-alive"),
            ),
            ("keep-alive", with(get("/refused/2"), "keep-alive", "timeout=5")),
            (
                "proxy-connection",
                with(get("/refused/3"), "proxy-connection", "keep-alive"),
            ),
            (
                "transfer-encoding",
                with(get("/refused/4"), "transfer-encoding", "chunked"),
            ),
            ("upgrade", with(get("/refused/5"), "upgrade", "websocket")),
            ("8.1.2.2/2 te: gzip", with(get("/refused/6"), "te", "gzip")),
            ("te: trailers, gzip", with(get("/refused/7"), "te", "trailers, gzip")),
        ],
    )
    .await;
    let mut c = fx.open().await;
    c.send(&[headers(1, WHOLE, &with(fx.get("/te"), "te", "trailers"))])
        .await;
    assert_eq!(c.response(1).await.0, 200, "te: trailers is allowed");
}

/// h2spec 8.1.2.1 (RFC 9113 8.3). Pseudo-header fields: only the defined ones, only request
/// ones in a request, all before the regular fields: otherwise stream error PROTOCOL_ERROR.
async fn http2_8_1_2_1_pseudo_header_fields(fx: Fixture) {
    let get = |p: &str| fx.get(p);
    let mut after = fields(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/refused/3"),
        ("x-a", "1"),
    ]);
    after.push((":authority".into(), HOST.into()));
    refused_rows(
        &fx,
        vec![
            (
                "8.1.2.1/1 unknown pseudo-header",
                with(get("/refused/1"), ":foo", "bar"),
            ),
            (
                "8.1.2.1/2 :status in a request",
                with(get("/refused/2"), ":status", "200"),
            ),
            ("8.1.2.1/4 pseudo-header after a regular field", after),
        ],
    )
    .await;
}

/// h2spec 8.1.2.1/3 (RFC 9113 8.1). Pseudo-header fields in trailers: stream error
/// PROTOCOL_ERROR. (The head may have been forwarded, as for 8.1/1.) h2 drops pseudo-header
/// fields from trailers and serves the request.
async fn http2_8_1_2_1_3_pseudo_header_in_trailers(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[
        headers(1, END_HEADERS, &fx.request("POST", "/trailers")),
        data(1, 0, b"body"),
        headers(1, WHOLE, &fields(&[(":method", "POST")])),
    ])
    .await;
    c.expect_stream_error(1, PROTOCOL_ERROR).await;
}

/// h2spec 8.1.2.3 (RFC 9113 8.3.1). A request has exactly one :method, :scheme and a
/// non-empty :path: otherwise stream error PROTOCOL_ERROR.
async fn http2_8_1_2_3_request_pseudo_header_fields(fx: Fixture) {
    let get = |p: &str| fx.get(p);
    let scheme = if fx.via == Via::Tls { "https" } else { "http" };
    refused_rows(
        &fx,
        vec![
            ("8.1.2.3/1 empty :path", get("")),
            ("8.1.2.3/2 no :method", without(get("/refused/2"), ":method")),
            ("8.1.2.3/3 no :scheme", without(get("/refused/3"), ":scheme")),
            ("8.1.2.3/4 no :path", without(get("/refused/4"), ":path")),
            ("8.1.2.3/5 two :method", with(get("/refused/5"), ":method", "GET")),
            ("8.1.2.3/6 two :scheme", with(get("/refused/6"), ":scheme", scheme)),
            ("8.1.2.3/7 two :path", with(get("/refused/7"), ":path", "/refused/7")),
        ],
    )
    .await;
}

// ---- RFC 9113 8.1-8.3: what an h2 request becomes on the way to an HTTP/1.1 backend ----

/// RFC 9113 8.3.1: an intermediary forwarding over HTTP/1.1 builds Host from :authority.
async fn rfc_8_3_1_authority_becomes_host(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[headers(1, WHOLE, &fx.get("/host"))]).await;
    let (status, body) = c.response(1).await;
    assert_eq!((status, field(&String::from_utf8_lossy(&body), "host")), (200, HOST));
}

/// RFC 9113 8.1: a body without content-length ends with END_STREAM; the proxy frames it for
/// HTTP/1.1 itself (the backend echoes it whole).
async fn rfc_8_1_body_without_content_length(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[
        headers(1, END_HEADERS, &fx.request("POST", "/echo")),
        data(1, 0, b"first "),
        data(1, END_STREAM, b"second"),
    ])
    .await;
    assert_eq!(c.response(1).await, (200, b"first second".to_vec()));
}

/// RFC 9113 8.2.3: cookie crumbs (several `cookie` fields) "MUST be concatenated into a single
/// octet string using the two-octet delimiter of 0x3b, 0x20" before an HTTP/1.1 hop (where a
/// request has one Cookie header, RFC 6265 5.4). The proxy's normalisation joins them.
async fn rfc_8_2_3_cookie_crumbs_are_joined(fx: Fixture) {
    let (addr, heads) = recording_backend().await;
    fx.route_to(addr);
    let mut c = fx.open().await;
    let crumbs = with(with(fx.get("/cookies"), "cookie", "a=1"), "cookie", "b=2");
    c.send(&[headers(1, WHOLE, &crumbs)]).await;
    assert_eq!(c.response(1).await.0, 200);
    let head = heads.lock().unwrap()[0].to_ascii_lowercase();
    let cookies: Vec<&str> = head.lines().filter(|l| l.starts_with("cookie:")).collect();
    assert_eq!(cookies, ["cookie: a=1; b=2"], "{head}");
}

// ---- RFC 9113 8.4: server push ----

/// h2spec 8.2/1 (RFC 9113 8.4). A client cannot push: PUSH_PROMISE from it is a connection
/// error PROTOCOL_ERROR.
async fn http2_8_2_1_push_promise_from_the_client(fx: Fixture) {
    let mut c = fx.open().await;
    c.send(&[headers(1, END_HEADERS, &fx.request("POST", "/push"))]).await;
    let mut payload = 2u32.to_be_bytes().to_vec();
    payload.extend(block(&fx.get("/refused")));
    c.send(&[Frame::new(PUSH_PROMISE, END_HEADERS, 1, payload)]).await;
    c.expect_goaway(PROTOCOL_ERROR).await;
    fx.assert_never_forwarded("/refused").await;
}

// ---- RFC 7541 (HPACK): decoding errors are connection errors ----

/// A request whose field block is `fx.get("/refused")` then `extra`.
async fn hpack_refused(fx: &Fixture, extra: &[u8]) {
    let mut c = fx.open().await;
    let mut b = block(&fx.get("/refused"));
    b.extend(extra);
    c.send(&[Frame::new(HEADERS, WHOLE, 1, b)]).await;
    c.expect_goaway(fx.hpack_error()).await;
    fx.assert_never_forwarded("/refused").await;
}

/// hpack 2.3.3/1. An index past the static and dynamic tables is a decoding error.
async fn hpack_2_3_3_1_indexed_field_past_the_tables(fx: Fixture) {
    hpack_refused(&fx, &[0x80 | 70]).await;
}

/// hpack 2.3.3/2. A literal whose name index is past the tables is a decoding error.
async fn hpack_2_3_3_2_literal_name_index_past_the_tables(fx: Fixture) {
    hpack_refused(&fx, &[0x40 | 63, 0x01, b'x']).await;
}

/// hpack 4.2/1. A dynamic table size update must start a field block (RFC 7541 4.2).
async fn hpack_4_2_1_table_size_update_after_a_field(fx: Fixture) {
    hpack_refused(&fx, &[0x20 | 0x10]).await;
}

/// hpack 5.2/1. A Huffman string holding EOS is a decoding error.
async fn hpack_5_2_1_huffman_string_with_eos(fx: Fixture) {
    let mut b = vec![0x00];
    hpack_str(&mut b, b"x-eos");
    b.extend([0x84, 0xff, 0xff, 0xff, 0xff]);
    hpack_refused(&fx, &b).await;
}

/// hpack 5.2/2. Huffman padding over 7 bits is a decoding error.
async fn hpack_5_2_2_huffman_padding_over_7_bits(fx: Fixture) {
    let mut b = vec![0x00];
    hpack_str(&mut b, b"x-pad");
    // 'a' (00011) and 11 bits of padding.
    b.extend([0x82, 0x1f, 0xff]);
    hpack_refused(&fx, &b).await;
}

/// hpack 5.2/3. Huffman padding that is not the start of EOS (all ones) is a decoding error.
async fn hpack_5_2_3_huffman_padding_not_eos(fx: Fixture) {
    let mut b = vec![0x00];
    hpack_str(&mut b, b"x-pad");
    // 'a' (00011) and padding 000.
    b.extend([0x81, 0x18]);
    hpack_refused(&fx, &b).await;
}

/// hpack 6.1/1. Index 0 is not used: a decoding error.
async fn hpack_6_1_1_index_0(fx: Fixture) {
    hpack_refused(&fx, &[0x80]).await;
}

/// hpack 6.3/1. A dynamic table size update over SETTINGS_HEADER_TABLE_SIZE (4,096) is a
/// decoding error.
async fn hpack_6_3_1_table_size_update_over_the_setting(fx: Fixture) {
    let mut c = fx.open().await;
    let mut b = Vec::new();
    hpack_int(&mut b, 5, 0x20, 4097);
    b.extend(block(&fx.get("/refused")));
    c.send(&[Frame::new(HEADERS, WHOLE, 1, b)]).await;
    c.expect_goaway(fx.hpack_error()).await;
    fx.assert_never_forwarded("/refused").await;
}

/// RFC 7541 2.3: the dynamic table is the connection's: a field indexed on one stream is
/// found by its index on the next.
async fn hpack_dynamic_table_spans_streams(fx: Fixture) {
    let mut c = fx.open().await;
    // Literal with incremental indexing, new name: x-indexed: 1 becomes index 62.
    let mut first = block(&fx.get("/ok"));
    first.push(0x40);
    hpack_str(&mut first, b"x-indexed");
    hpack_str(&mut first, b"1");
    c.send(&[Frame::new(HEADERS, WHOLE, 1, first)]).await;
    assert_eq!(c.response(1).await.0, 200);
    let mut second = block(&fx.get("/ok2"));
    second.push(0x80 | 62);
    c.send(&[Frame::new(HEADERS, WHOLE, 3, second)]).await;
    assert_eq!(c.response(3).await.0, 200);
}

// ---- Bounds on abuse (RFC 9113 10.5) ----

/// RFC 9113 10.5.1. A field section over the advertised SETTINGS_MAX_HEADER_LIST_SIZE
/// (the proxy's 64 KiB head limit) is answered 431 and not forwarded.
async fn extra_field_section_over_the_header_list_size(fx: Fixture) {
    let mut c = fx.open().await;
    let max = c.setting(0x6).expect("SETTINGS_MAX_HEADER_LIST_SIZE") as usize;
    assert_eq!(max, 64 * 1024);
    let b = block(&with(fx.get("/refused"), "x-big", &"b".repeat(max)));
    let parts: Vec<&[u8]> = b.chunks(16_384).collect();
    let last = parts.len() - 1;
    let mut frames = vec![Frame::new(HEADERS, END_STREAM, 1, parts[0])];
    for (i, p) in parts.iter().enumerate().skip(1) {
        frames.push(continuation(1, if i == last { END_HEADERS } else { 0 }, p));
    }
    c.send(&frames).await;
    assert_eq!(c.response(1).await.0, 431);
    fx.assert_never_forwarded("/refused").await;
}

/// Rapid reset (CVE-2023-44487): streams opened and reset at once, by the hundred, end with
/// GOAWAY ENHANCE_YOUR_CALM (h2 allows 20 streams reset before they are accepted), and the
/// backend sees few of them if any (none, as measured).
async fn extra_rapid_reset_is_bounded(fx: Fixture) {
    let mut c = fx.open().await;
    let n = 500;
    let mut frames = Vec::new();
    for i in 0..n {
        let stream = 1 + 2 * i;
        frames.push(headers(stream, WHOLE, &fx.get(&format!("/rapid/{i}"))));
        frames.push(rst_stream(stream, CANCEL));
    }
    c.send(&frames).await;
    c.until("GOAWAY", |f| {
        (f.kind == GOAWAY).then(|| assert_eq!(code_name(f.code()), "ENHANCE_YOUR_CALM"))
    })
    .await;
    c.expect_closed().await;
    let forwarded = fx.forwarded("/rapid").await.len();
    assert!(forwarded < 50, "{forwarded} of {n} reset requests reached the backend");
}

/// "MadeYouReset" (CVE-2025-8671): streams the server itself must reset (malformed requests
/// here), by the thousand, end with GOAWAY ENHANCE_YOUR_CALM once h2's budget of 1,024 resets
/// per connection is spent; none reaches the backend.
async fn extra_server_resets_are_bounded(fx: Fixture) {
    let mut c = fx.open().await;
    let n = 1100;
    let frames: Vec<Frame> = (0..n)
        .map(|i| headers(1 + 2 * i, WHOLE, &with(fx.get("/refused"), "connection", "keep-alive")))
        .collect();
    c.send(&frames).await;
    let mut resets = 0;
    let code = loop {
        let f = c.next().await.expect("a GOAWAY before the close");
        match f.kind {
            RST_STREAM => resets += 1,
            GOAWAY => break f.code(),
            _ => {}
        }
    };
    assert_eq!(code_name(code), "ENHANCE_YOUR_CALM");
    // Not all of the RST_STREAMs need leave before the GOAWAY does.
    assert!(resets <= 1024, "{resets} resets");
    c.expect_closed().await;
    fx.assert_never_forwarded("/refused").await;
}

// ---- The cases, on each listener ----

/// `name;` runs `name` on each listener (`h2c::name`, `tls::name`); `rfc: "why"` adds its
/// twin expecting the RFC's codes, ignored (`h2c_rfc::name`, `tls_rfc::name`); `tls: #[..]`
/// adds an attribute to the TLS run only.
macro_rules! cases {
    ($( $(#[$meta:meta])* $name:ident $(, tls: #[$tls_meta:meta])? $(, rfc: $why:literal)? ; )*) => {
        /// The plain listener, h2c by prior knowledge.
        mod h2c {
            $(
                $(#[$meta])*
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Fixture::start(super::Via::H2c, false).await).await
                }
            )*
        }
        /// The TLS listener, h2 by ALPN.
        mod tls {
            $(
                $(#[$meta])*
                $(#[$tls_meta])?
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Fixture::start(super::Via::Tls, false).await).await
                }
            )*
        }
        /// Where h2 answers with other codes than the RFC's: the RFC's.
        mod h2c_rfc {
            $($(
                #[ignore = $why]
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Fixture::start(super::Via::H2c, true).await).await
                }
            )?)*
        }
        mod tls_rfc {
            $($(
                #[ignore = $why]
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Fixture::start(super::Via::Tls, true).await).await
                }
            )?)*
        }
    };
}

cases! {
    http2_3_5_1_server_preface_is_a_settings_frame;
    http2_3_5_2_invalid_preface;
    http2_4_1_1_unknown_frame_type_is_ignored;
    http2_4_1_2_undefined_flags_are_ignored;
    http2_4_1_3_reserved_bit_is_ignored;
    http2_4_2_1_data_of_the_max_frame_size;
    http2_4_2_2_data_over_the_max_frame_size;
    http2_4_2_3_headers_over_the_max_frame_size;
    http2_4_3_1_invalid_field_block, rfc: "h2 0.4.20: PROTOCOL_ERROR for HPACK decoding errors";
    http2_4_3_2_priority_inside_a_field_block;
    http2_4_3_3_headers_of_another_stream_inside_a_field_block;
    http2_5_1_1_data_on_an_idle_stream;
    http2_5_1_2_rst_stream_on_an_idle_stream;
    http2_5_1_3_window_update_on_an_idle_stream;
    http2_5_1_4_continuation_on_an_idle_stream;
    http2_5_1_5_data_on_a_half_closed_stream, rfc: "h2 0.4.20: GOAWAY PROTOCOL_ERROR, not STREAM_CLOSED";
    http2_5_1_6_headers_on_a_half_closed_stream, rfc: "h2 0.4.20: GOAWAY PROTOCOL_ERROR, not STREAM_CLOSED";
    http2_5_1_8_data_after_rst_stream;
    http2_5_1_11_data_on_a_closed_stream;
    http2_5_1_12_headers_on_a_closed_stream, rfc: "h2 0.4.20: GOAWAY PROTOCOL_ERROR, not STREAM_CLOSED";
    http2_5_1_1_1_even_stream_identifier;
    http2_5_1_1_2_smaller_stream_identifier;
    http2_5_1_2_1_streams_over_the_concurrency_limit;
    http2_5_3_1_1_headers_depending_on_itself;
    http2_5_3_1_2_priority_depending_on_itself;
    http2_5_5_2_unknown_frame_inside_a_field_block;
    http2_6_1_1_data_on_stream_0;
    http2_6_1_3_data_with_an_invalid_pad_length;
    http2_6_2_padded_headers_with_priority;
    http2_6_2_3_headers_on_stream_0;
    http2_6_2_4_headers_with_an_invalid_pad_length;
    http2_6_3_1_priority_on_stream_0;
    http2_6_3_2_priority_of_a_wrong_length, rfc: "h2 0.4.20: GOAWAY PROTOCOL_ERROR for frames of a wrong length";
    http2_6_4_1_rst_stream_on_stream_0;
    http2_6_4_3_rst_stream_of_a_wrong_length, rfc: "h2 0.4.20: GOAWAY PROTOCOL_ERROR for frames of a wrong length";
    http2_6_5_1_settings_ack_with_a_payload, rfc: "h2 0.4.20: GOAWAY PROTOCOL_ERROR for frames of a wrong length";
    http2_6_5_2_settings_on_a_stream;
    http2_6_5_3_settings_of_a_wrong_length, rfc: "h2 0.4.20: GOAWAY PROTOCOL_ERROR for frames of a wrong length";
    http2_6_5_2_1_enable_push_out_of_range;
    http2_6_5_2_2_initial_window_size_out_of_range, rfc: "h2 0.4.20: PROTOCOL_ERROR for invalid SETTINGS values";
    http2_6_5_2_3_max_frame_size_too_small;
    http2_6_5_2_4_max_frame_size_too_large;
    http2_6_5_2_5_unknown_setting_is_ignored;
    http2_6_5_3_1_settings_are_applied_in_order;
    http2_6_5_3_2_settings_are_acknowledged;
    http2_6_7_1_ping_is_answered;
    http2_6_7_2_ping_ack_is_not_answered;
    http2_6_7_3_ping_on_a_stream;
    http2_6_7_4_ping_of_a_wrong_length, rfc: "h2 0.4.20: GOAWAY PROTOCOL_ERROR for frames of a wrong length";
    http2_6_8_1_goaway_on_a_stream;
    http2_6_9_1_zero_increment_for_the_connection;
    http2_6_9_2_zero_increment_for_a_stream;
    http2_6_9_3_window_update_of_a_wrong_length, rfc: "h2 0.4.20: GOAWAY PROTOCOL_ERROR for frames of a wrong length";
    http2_6_9_1_1_a_window_of_one_byte;
    http2_6_9_1_2_connection_window_overflow;
    http2_6_9_1_3_stream_window_overflow;
    http2_6_9_2_1_initial_window_change_applies_to_open_streams;
    http2_6_10_1_continuations_make_one_field_block;
    http2_6_10_2_other_frame_between_continuations;
    http2_6_10_3_continuation_on_stream_0;
    http2_6_10_4_continuation_after_end_headers;
    http2_6_10_5_continuation_after_the_last_continuation;
    http2_6_10_6_continuation_after_data;
    extra_continuation_flood_is_bounded;
    http2_7_1_unknown_error_code_in_goaway;
    http2_7_2_unknown_error_code_in_rst_stream;
    http2_8_1_1_trailers_without_end_stream;
    http2_8_1_2_6_1_data_over_the_content_length;
    http2_8_1_2_6_2_data_short_of_the_content_length;
    http2_8_1_2_1_invalid_field_names_and_values;
    rfc_8_2_1_field_value_with_surrounding_whitespace;
    http2_8_1_2_2_connection_specific_fields;
    http2_8_1_2_1_pseudo_header_fields;
    #[ignore = "h2 0.4.20 drops pseudo-header fields from trailers instead of refusing the request"]
    http2_8_1_2_1_3_pseudo_header_in_trailers;
    http2_8_1_2_3_request_pseudo_header_fields;
    http2_8_2_1_push_promise_from_the_client;
    rfc_8_3_1_authority_becomes_host;
    rfc_8_1_body_without_content_length;
    rfc_8_2_3_cookie_crumbs_are_joined;
    hpack_2_3_3_1_indexed_field_past_the_tables, rfc: "h2 0.4.20: PROTOCOL_ERROR for HPACK decoding errors";
    hpack_2_3_3_2_literal_name_index_past_the_tables, rfc: "h2 0.4.20: PROTOCOL_ERROR for HPACK decoding errors";
    hpack_4_2_1_table_size_update_after_a_field, rfc: "h2 0.4.20: PROTOCOL_ERROR for HPACK decoding errors";
    hpack_5_2_1_huffman_string_with_eos, rfc: "h2 0.4.20: PROTOCOL_ERROR for HPACK decoding errors";
    hpack_5_2_2_huffman_padding_over_7_bits, rfc: "h2 0.4.20: PROTOCOL_ERROR for HPACK decoding errors";
    hpack_5_2_3_huffman_padding_not_eos, rfc: "h2 0.4.20: PROTOCOL_ERROR for HPACK decoding errors";
    hpack_6_1_1_index_0, rfc: "h2 0.4.20: PROTOCOL_ERROR for HPACK decoding errors";
    hpack_6_3_1_table_size_update_over_the_setting, rfc: "h2 0.4.20: PROTOCOL_ERROR for HPACK decoding errors";
    hpack_dynamic_table_spans_streams;
    extra_field_section_over_the_header_list_size;
    extra_rapid_reset_is_bounded;
    extra_server_resets_are_bounded;
}
