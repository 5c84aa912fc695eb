//! The lean HTTP/1.1 client that takes body-less requests to backends: scripted backends
//! on loopback answer byte by byte, so framing, pooling and failures are exact.
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{client, get, route, snapshot, TestBackend, TestProxy};
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a scripted backend does with one request.
enum Action {
    /// Writes these bytes; the connection stays open for the next request.
    Reply(Vec<u8>),
    /// Writes these bytes, then closes.
    ReplyAndClose(Vec<u8>),
    /// Closes without answering.
    Close,
    /// Writes the first part, waits `pause`, writes the rest, keeps the connection.
    Slowly(Vec<u8>, Duration, Vec<u8>),
}

struct Scripted {
    addr: SocketAddr,
    /// Connections accepted so far.
    connections: Arc<AtomicUsize>,
    /// Request heads received.
    requests: Arc<std::sync::Mutex<Vec<String>>>,
}

/// A backend answering each request as `script(request number on its connection, head)`
/// says; the first request on a connection is number 0.
async fn scripted(script: impl Fn(usize, &str) -> Action + Send + Sync + 'static) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
    let script = Arc::new(script);
    let (conns, reqs) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            conns.fetch_add(1, Ordering::SeqCst);
            let (script, reqs) = (script.clone(), reqs.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                for n in 0.. {
                    let head = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
                            buf.drain(..end + 4);
                            break head;
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    };
                    reqs.lock().unwrap().push(head.clone());
                    match script(n, &head) {
                        Action::Reply(bytes) => {
                            if s.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        Action::ReplyAndClose(bytes) => {
                            let _ = s.write_all(&bytes).await;
                            return;
                        }
                        Action::Close => return,
                        Action::Slowly(first, pause, rest) => {
                            let _ = s.write_all(&first).await;
                            tokio::time::sleep(pause).await;
                            if s.write_all(&rest).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    Scripted {
        addr,
        connections,
        requests,
    }
}

/// A proxy with one route, `lean.test`, to `backend`.
async fn proxy_to(backend: SocketAddr) -> TestProxy {
    let mut r = route("lean", &["lean.test"], "/", &[]);
    r.backends = vec![interlock::model::Backend {
        addr: backend,
        weight: 1,
        id: "lean".into(),
    }];
    TestProxy::start(&snapshot(1, vec![r])).await
}

fn ok(body: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

#[tokio::test]
async fn chunked_bodies_are_decoded_and_the_connection_reused() {
    let backend = scripted(|n, _| {
        Action::Reply(
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-N: {n}\r\n\r\n\
                 5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
            )
            .into_bytes(),
        )
    })
    .await;
    let proxy = proxy_to(backend.addr).await;
    let c = client();
    for n in 0..5 {
        let (status, headers, body) = get(&c, proxy.http, "lean.test", "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "hello 0123456789");
        assert_eq!(headers["x-n"], n.to_string(), "one backend connection serves them all");
        assert_eq!(headers["x-upstream-addr"], backend.addr.to_string());
        assert!(headers.contains_key("x-upstream-response-time"));
        assert!(!headers.contains_key("x-trailer"));
    }
    assert_eq!(backend.connections.load(Ordering::SeqCst), 1);
    // What the backend saw: origin form, forwarding headers, no hop-by-hop headers.
    let head = backend.requests.lock().unwrap()[0].clone();
    assert!(head.starts_with("GET / HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("host: lean.test\r\n"), "{head}");
    assert!(head.contains("x-forwarded-for: 127.0.0.1\r\n"), "{head}");
    assert!(head.contains("x-forwarded-proto: http\r\n"), "{head}");
    // A client's forwarding and hop-by-hop headers (and those its Connection names) stay out.
    let answer = common::raw(
        proxy.http,
        b"GET /raw HTTP/1.1\r\nHost: lean.test\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\n\
          Connection: close, X-Secret\r\nX-Secret: 1\r\nTE: trailers\r\nX-Kept: 1\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let head = backend.requests.lock().unwrap().last().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /raw http/1.1\r\n"), "{head}");
    assert_eq!(head.matches("x-forwarded-for: ").count(), 1, "{head}");
    assert!(head.contains("x-forwarded-for: 127.0.0.1\r\n"), "{head}");
    assert!(head.contains("x-forwarded-host: lean.test\r\n"), "{head}");
    assert!(head.contains("x-kept: 1\r\n"), "{head}");
    for gone in ["x-secret", "connection", "te:", "evil"] {
        assert!(!head.contains(gone), "{gone} in {head}");
    }
}

#[tokio::test]
async fn a_pooled_connection_the_backend_closed_is_never_a_502() {
    // The backend closes every connection after its first answer: idle ones in the pool
    // are found closed before the request is written.
    let closing = scripted(|_, _| Action::ReplyAndClose(ok("once"))).await;
    let proxy = proxy_to(closing.addr).await;
    let c = client();
    for _ in 0..20 {
        let (status, _, body) = get(&c, proxy.http, "lean.test", "/").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "once"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The backend reads the second request on a connection and closes without answering
    // (its idle timeout racing the request): a GET goes again on a fresh connection.
    let racing = scripted(|n, _| {
        if n == 0 {
            Action::Reply(ok("first"))
        } else {
            Action::Close
        }
    })
    .await;
    let proxy = proxy_to(racing.addr).await;
    for _ in 0..20 {
        let (status, _, body) = get(&c, proxy.http, "lean.test", "/").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "first"));
    }
    assert!(racing.connections.load(Ordering::SeqCst) >= 20);
    // A DELETE is idempotent too; a POST without a body is not sent twice: 502.
    let req = |method: &str| {
        hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}/", proxy.http))
            .header("host", "lean.test")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    assert_eq!(c.request(req("DELETE")).await.unwrap().status(), StatusCode::OK);
    let before = racing.requests.lock().unwrap().len();
    assert_eq!(c.request(req("POST")).await.unwrap().status(), StatusCode::BAD_GATEWAY);
    assert_eq!(racing.requests.lock().unwrap().len(), before + 1, "sent once");
}

#[tokio::test]
async fn bad_response_heads_are_502_and_the_proxy_carries_on() {
    let huge = format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n", "a".repeat(100 * 1024));
    let backend = scripted(move |_, head| {
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        let bytes: Vec<u8> = match path.as_str() {
            "/garbage" => b"SMTP ready\r\n\r\n".to_vec(),
            "/bad-header" => b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n".to_vec(),
            "/huge" => huge.clone().into_bytes(),
            "/cl-and-te" => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                    .to_vec()
            }
            "/two-lengths" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(),
            "/gzip-te" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx".to_vec(),
            "/switch" => b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n".to_vec(),
            "/cut" => b"HTTP/1.1 200 OK\r\nContent-Le".to_vec(),
            _ => return Action::Reply(ok("fine")),
        };
        Action::ReplyAndClose(bytes)
    })
    .await;
    let proxy = proxy_to(backend.addr).await;
    let c = client();
    for path in [
        "/garbage",
        "/bad-header",
        "/huge",
        "/cl-and-te",
        "/two-lengths",
        "/gzip-te",
        "/switch",
        "/cut",
    ] {
        let (status, _, _) = get(&c, proxy.http, "lean.test", path).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{path}");
        assert_eq!(get(&c, proxy.http, "lean.test", "/").await.2, "fine");
    }
}

#[tokio::test]
async fn interim_responses_head_requests_and_bodies_until_close() {
    let backend = scripted(|_, head| {
        if head.starts_with("HEAD") {
            return Action::Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec());
        }
        if head.contains("GET /close ") {
            return Action::ReplyAndClose(b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec());
        }
        Action::Reply(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n".to_vec())
    })
    .await;
    let proxy = proxy_to(backend.addr).await;
    let c = client();
    let head = hyper::Request::head(format!("http://{}/", proxy.http))
        .header("host", "lean.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = c.request(head).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-length"], "1000");
    assert_eq!(get(&c, proxy.http, "lean.test", "/").await.0, StatusCode::NO_CONTENT);
    assert_eq!(
        backend.connections.load(Ordering::SeqCst),
        1,
        "HEAD and 204 keep the connection"
    );
    let (status, _, body) = get(&c, proxy.http, "lean.test", "/close").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "until the end"));
    assert_eq!(get(&c, proxy.http, "lean.test", "/").await.0, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_through_without_waiting_for_the_end() {
    const SIZE: usize = 8 << 20;
    let body: Arc<Vec<u8>> = Arc::new((0..SIZE).map(|i| (i % 251) as u8).collect());
    let data = body.clone();
    let backend = scripted(move |_, head| {
        let mut first = if head.contains("/chunked") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()
        } else {
            format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").into_bytes()
        };
        let mut rest = Vec::new();
        if head.contains("/chunked") {
            for (i, piece) in data.chunks(100_000).enumerate() {
                let out = if i == 0 { &mut first } else { &mut rest };
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            rest.extend_from_slice(b"0\r\n\r\n");
        } else {
            first.extend_from_slice(&data[..100_000]);
            rest.extend_from_slice(&data[100_000..]);
        }
        // The rest comes only after a pause: the client must have the start before.
        Action::Slowly(first, Duration::from_millis(1500), rest)
    })
    .await;
    let proxy = proxy_to(backend.addr).await;
    let c = client();
    for path in ["/length", "/chunked"] {
        let req = hyper::Request::get(format!("http://{}{path}", proxy.http))
            .header("host", "lean.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let started = std::time::Instant::now();
        let mut resp = c.request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let first = resp.body_mut().frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{path}: the first bytes came after {:?}",
            started.elapsed()
        );
        let mut got = first.to_vec();
        got.extend_from_slice(&resp.into_body().collect().await.unwrap().to_bytes());
        assert_eq!(got.len(), SIZE, "{path}");
        assert!(got == *body, "{path}: the bytes arrive unchanged");
    }
    assert_eq!(backend.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_hung_backend_times_out_and_requests_with_bodies_still_go_through() {
    // The proxy's response timeout is 10 s in the tests; a backend that never answers
    // must not hold the request longer than that.
    let hung = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_addr = hung.local_addr().unwrap();
    tokio::spawn(async move {
        let mut open: Vec<TcpStream> = Vec::new();
        while let Ok((s, _)) = hung.accept().await {
            open.push(s);
        }
    });
    let proxy = proxy_to(hung_addr).await;
    let started = std::time::Instant::now();
    let (status, _, _) = get(&client(), proxy.http, "lean.test", "/").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(15));

    // POST bodies take hyper's client; mixed with body-less requests on one proxy.
    let echo = TestBackend::start("echo").await;
    let proxy = TestProxy::start(&snapshot(1, vec![route("echo", &["echo.test"], "/", &[&echo])])).await;
    let c = client();
    for i in 0..10 {
        let req = hyper::Request::post(format!("http://{}/echo", proxy.http))
            .header("host", "echo.test")
            .body(Full::new(Bytes::from(format!("payload {i}"))))
            .unwrap();
        let resp = c.request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let text = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&text).contains(&format!("payload {i}")));
        assert_eq!(get(&c, proxy.http, "echo.test", "/").await.0, StatusCode::OK);
    }
}

/// The client on its own, with a short response timeout: the per-connection timer fires
/// while a connection idles in the pool, and the connection still serves afterwards.
#[tokio::test]
async fn the_response_timer_outlives_idle_time_in_the_pool() {
    use interlock::l7::headers::Forwarded;
    use interlock::l7::upstream::h1_client::{H1Client, LeanRequest};

    let backend = scripted(|_, head| {
        if head.contains("/slow") {
            Action::Slowly(Vec::new(), Duration::from_millis(800), ok("late"))
        } else {
            Action::Reply(ok("quick"))
        }
    })
    .await;
    let lean = H1Client::new(Duration::from_secs(1), Duration::from_millis(300));
    let request = |path: &str| {
        let (mut parts, ()) = hyper::Request::get(path).body(()).unwrap().into_parts();
        parts.headers.insert("host", "lean.test".parse().unwrap());
        LeanRequest {
            parts,
            forwarded: Forwarded {
                client: "192.0.2.1".parse().unwrap(),
                proto: "http",
                host: "lean.test".parse().unwrap(),
                port: 80,
                relayed: None,
                request_id: interlock::l7::headers::RequestId::Fresh(*b"0123456789abcdef0123456789abcdef"),
            },
        }
    };
    for round in 0..3 {
        let resp = lean.send(backend.addr, request("/")).await.map_err(|e| e.0).unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "quick", "round {round}");
        // Longer than the response timeout: the connection's timer comes due while idle.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(backend.connections.load(Ordering::SeqCst), 1);
    let slow = lean.send(backend.addr, request("/slow")).await;
    assert!(
        matches!(
            slow,
            Err((interlock::l7::error::ProxyError::UpstreamTimeout { .. }, None))
        ),
        "a late answer is a timeout"
    );
}
