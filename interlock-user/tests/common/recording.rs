//! A raw TCP backend that records exactly the bytes of each request it receives (head and
//! body, as they came), and a raw HTTP/1 client to drive the proxy with bytes.
//!
//! The backend answers every request with one fixed response (`Reply`: `200`, body `ok`,
//! extra header lines when asked); a request carrying `Upgrade` is answered `101` and the
//! connection then echoes what it gets, so a test sees whether the proxy tunnelled it.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The head, request line to the empty line, byte for byte.
    pub head: Vec<u8>,
    /// The body bytes as they came (still chunked when the request was).
    pub raw_body: Vec<u8>,
    /// The head parsed and the body read to its end as its framing says.
    pub complete: bool,
}

impl Recorded {
    /// The request line without its line end (`GET /x HTTP/1.1`).
    pub fn request_line(&self) -> String {
        let end = self.head.iter().position(|b| *b == b'\n').unwrap_or(self.head.len());
        String::from_utf8_lossy(&self.head[..end])
            .trim_end_matches('\r')
            .to_string()
    }

    /// The values of header `name` (any case), in order.
    pub fn headers(&self, name: &str) -> Vec<String> {
        let mut slots = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut slots);
        if req.parse(&self.head).is_err() {
            return Vec::new();
        }
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
            .collect()
    }

    /// The header names, in order, as sent.
    pub fn names(&self) -> Vec<String> {
        let mut slots = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut slots);
        if req.parse(&self.head).is_err() {
            return Vec::new();
        }
        req.headers.iter().map(|h| h.name.to_string()).collect()
    }

    /// The body, with a chunked transfer coding undone.
    pub fn body(&self) -> Vec<u8> {
        let chunked = self
            .headers("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        if !chunked {
            return self.raw_body.clone();
        }
        let mut out = Vec::new();
        let mut rest = &self.raw_body[..];
        while let Some((size, after)) = chunk_size_line(rest) {
            if size == 0 || after.len() < size {
                break;
            }
            out.extend_from_slice(&after[..size]);
            rest = after[size..].strip_prefix(b"\r\n").unwrap_or(&after[size..]);
        }
        out
    }
}

/// What the backend answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Header lines added to the `200` (`Name: value`, no line end).
    pub extra: Vec<String>,
    /// Answer a request with `Upgrade` by `101` and echo.
    pub upgrade: bool,
}

impl Default for Reply {
    fn default() -> Reply {
        Reply {
            extra: Vec::new(),
            upgrade: true,
        }
    }
}

impl Reply {
    pub fn with_header(mut self, line: &str) -> Reply {
        self.extra.push(line.to_string());
        self
    }
}

pub struct RecordingBackend {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecordingBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingBackend {
    pub async fn start(reply: Reply) -> RecordingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (reqs, reply) = (requests.clone(), Arc::new(reply));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, reqs.clone(), reply.clone()));
            }
        });
        RecordingBackend { addr, requests, task }
    }

    /// The requests received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Forgets what it has received.
    pub fn clear(&self) {
        self.requests.lock().unwrap().clear();
    }
}

async fn serve(mut s: tokio::net::TcpStream, requests: Arc<Mutex<Vec<Recorded>>>, reply: Arc<Reply>) {
    let mut buf = Vec::new();
    loop {
        // The head.
        let (head_len, length, chunked, upgrade, close) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 128];
            let mut req = httparse::Request::new(&mut slots);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let headers = &*req.headers;
                    let has = |name: &'static str| headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name));
                    let length = has("content-length")
                        .next()
                        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok());
                    let chunked = has("transfer-encoding").any(|h| {
                        String::from_utf8_lossy(h.value)
                            .to_ascii_lowercase()
                            .trim_end()
                            .ends_with("chunked")
                    });
                    let upgrade = has("upgrade").next().is_some();
                    let close = has("connection")
                        .any(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase().contains("close"))
                        || req.version == Some(0);
                    break (len, length, chunked, upgrade, close);
                }
                Ok(httparse::Status::Partial) => {}
                Err(_) => {
                    // Not HTTP the backend understands: kept as it came, and the end.
                    record(&requests, buf, Vec::new(), false);
                    return;
                }
            }
            if !read_more(&mut s, &mut buf).await {
                if !buf.is_empty() {
                    record(&requests, buf, Vec::new(), false);
                }
                return;
            }
        };
        let head: Vec<u8> = buf.drain(..head_len).collect();
        // The body, as its framing says.
        let body_len = loop {
            let end = if chunked {
                chunked_end(&buf)
            } else {
                let n = length.unwrap_or(0);
                (buf.len() >= n).then_some(n)
            };
            if let Some(end) = end {
                break end;
            }
            if !read_more(&mut s, &mut buf).await {
                record(&requests, head, std::mem::take(&mut buf), false);
                return;
            }
        };
        let body: Vec<u8> = buf.drain(..body_len).collect();
        record(&requests, head.clone(), body, true);
        if upgrade && reply.upgrade {
            let protocol = Recorded {
                head: head.clone(),
                raw_body: Vec::new(),
                complete: true,
            }
            .headers("upgrade")
            .join(", ");
            let answer =
                format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n");
            if s.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            // Bytes already read past the request start the tunnel.
            if !buf.is_empty() && s.write_all(&buf).await.is_err() {
                return;
            }
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
            return;
        }
        let mut answer = String::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Recorded: 1\r\n");
        for line in &reply.extra {
            answer.push_str(line);
            answer.push_str("\r\n");
        }
        // A HEAD gets the length of the body it would have had, not the body.
        answer.push_str(if head.starts_with(b"HEAD ") { "\r\n" } else { "\r\nok" });
        if s.write_all(answer.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

fn record(requests: &Mutex<Vec<Recorded>>, head: Vec<u8>, raw_body: Vec<u8>, complete: bool) {
    requests.lock().unwrap().push(Recorded {
        head,
        raw_body,
        complete,
    });
}

async fn read_more(s: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match s.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// A chunk-size line at the start of `data`: the size and what follows the line.
fn chunk_size_line(data: &[u8]) -> Option<(usize, &[u8])> {
    let lf = data.iter().position(|b| *b == b'\n')?;
    let line = std::str::from_utf8(&data[..lf]).ok()?.trim_end_matches('\r');
    let digits = line.split(';').next()?.trim();
    Some((usize::from_str_radix(digits, 16).ok()?, &data[lf + 1..]))
}

/// Where a chunked body at the start of `data` ends (just past its last CRLF), once all of
/// it has arrived.
fn chunked_end(data: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let (size, after) = chunk_size_line(&data[at..])?;
        at = data.len() - after.len();
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let lf = data[at..].iter().position(|b| *b == b'\n')?;
                let empty = data[at..at + lf].iter().all(|b| *b == b'\r');
                at += lf + 1;
                if empty {
                    return Some(at);
                }
            }
        }
        if data.len() < at + size + 2 {
            return None;
        }
        at += size + 2;
    }
}

/// A response as a raw client read it.
#[derive(Debug, Clone, Default)]
pub struct RawResponse {
    /// `HTTP/1.1 200 OK`.
    pub status_line: String,
    pub status: u16,
    /// Name and value, in order, as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The values of header `name` (any case), in order.
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// A byte stream to the proxy: plain TCP or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// A raw HTTP/1 connection: writes bytes, reads one response at a time.
pub struct RawClient {
    pub stream: Box<dyn Stream>,
    buf: Vec<u8>,
}

impl RawClient {
    pub fn new(stream: impl Stream + 'static) -> RawClient {
        RawClient {
            stream: Box::new(stream),
            buf: Vec::new(),
        }
    }

    pub async fn connect(addr: SocketAddr) -> RawClient {
        RawClient::new(tokio::net::TcpStream::connect(addr).await.unwrap())
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// The next response (its body read as its framing says; none after a `101` or for a
    /// `HEAD`), or `None` when the connection ended first or nothing came within `wait`.
    pub async fn response(&mut self, head_request: bool, wait: Duration) -> Option<RawResponse> {
        tokio::time::timeout(wait, self.read_response(head_request))
            .await
            .ok()
            .flatten()
    }

    async fn read_response(&mut self, head_request: bool) -> Option<RawResponse> {
        loop {
            let (len, mut resp) = loop {
                let mut slots = [httparse::EMPTY_HEADER; 128];
                let mut parsed = httparse::Response::new(&mut slots);
                match parsed.parse(&self.buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let line_end = self.buf.iter().position(|b| *b == b'\n').unwrap_or(0);
                        let resp = RawResponse {
                            status_line: String::from_utf8_lossy(&self.buf[..line_end])
                                .trim_end_matches('\r')
                                .to_string(),
                            status: parsed.code.unwrap_or(0),
                            headers: parsed
                                .headers
                                .iter()
                                .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                                .collect(),
                            body: Vec::new(),
                        };
                        break (len, resp);
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(_) => return None,
                }
                if !read_more(&mut self.stream, &mut self.buf).await {
                    return None;
                }
            };
            self.buf.drain(..len);
            let status = resp.status;
            if (100..200).contains(&status) && status != 101 {
                continue; // 100 Continue: the final answer follows
            }
            if status == 101 || head_request || status == 204 || status == 304 {
                return Some(resp);
            }
            let length = resp
                .headers("content-length")
                .first()
                .and_then(|v| v.trim().parse::<usize>().ok());
            let chunked = resp
                .headers("transfer-encoding")
                .iter()
                .any(|v| v.eq_ignore_ascii_case("chunked"));
            let end = loop {
                let end = match (chunked, length) {
                    (true, _) => chunked_end(&self.buf),
                    (false, Some(n)) => (self.buf.len() >= n).then_some(n),
                    (false, None) => None,
                };
                if let Some(end) = end {
                    break end;
                }
                if !read_more(&mut self.stream, &mut self.buf).await {
                    if length.is_none() && !chunked {
                        break self.buf.len(); // until close
                    }
                    return None;
                }
            };
            let raw: Vec<u8> = self.buf.drain(..end).collect();
            resp.body = if chunked {
                Recorded {
                    head: b"X / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
                    raw_body: raw,
                    complete: true,
                }
                .body()
            } else {
                raw
            };
            return Some(resp);
        }
    }

    /// True when the proxy closes the connection within `wait` without sending more.
    pub async fn closed(&mut self, wait: Duration) -> bool {
        let ended = tokio::time::timeout(wait, async {
            while read_more(&mut self.stream, &mut self.buf).await {}
        })
        .await
        .is_ok();
        ended && self.buf.is_empty()
    }

    /// Reads whatever arrives within `wait` (after a `101`: the tunnel's bytes).
    pub async fn read_some(&mut self, want: usize, wait: Duration) -> Vec<u8> {
        let _ = tokio::time::timeout(wait, async {
            while self.buf.len() < want {
                if !read_more(&mut self.stream, &mut self.buf).await {
                    break;
                }
            }
        })
        .await;
        std::mem::take(&mut self.buf)
    }
}
