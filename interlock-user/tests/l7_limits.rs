//! Limits reached are counted in `interlock_limit_reached{limit}`: an oversized request head,
//! too many headers, a client too slow to send its head, connections over the maximum, and
//! requests over a backend's limit (which wait in line instead of opening more connections).
mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{client, get, raw_within, route, snapshot, TestBackend, TestProxy};
use http_body_util::Full;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use interlock::l7::limits::Limits;
use interlock::l7::metrics::LimitLabels;
use interlock::model::{Backend, HttpRoute};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_reached_is_counted() {
    let app = TestBackend::start("app").await;
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        max_connections: 3,
        ..Limits::default()
    };
    let proxy = TestProxy::start_with(&snapshot(1, vec![route("app", &["app.test"], "/", &[&app])]), limits).await;
    let count = |limit: &'static str| proxy.proxy.metrics.limits.get_or_create(&LimitLabels { limit }).get();
    // The client sees the connection close before the server task counts why: wait a moment.
    let settled = |limit: &'static str| async move {
        for _ in 0..50 {
            if count(limit) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        count(limit)
    };

    let huge = format!(
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let a = raw_within(proxy.http, huge.as_bytes(), Duration::from_secs(3)).await;
    assert!(a.starts_with("HTTP/1.1 431"), "{a:.60}");
    assert_eq!(settled("request_head_size").await, 1);

    let slow = raw_within(proxy.http, b"GET / HTTP/1.1\r\nHost: app", Duration::from_secs(3)).await;
    assert!(!slow.contains("200 OK"), "{slow:.60}");
    assert_eq!(settled("header_read_timeout").await, 1);

    let held: Vec<TcpStream> = open_connections(proxy.http, 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = raw_within(
        proxy.http,
        b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n",
        Duration::from_secs(1),
    )
    .await;
    assert!(
        refused.is_empty(),
        "a fourth connection is closed at once: {refused:.60}"
    );
    assert!(count("max_connections") >= 1);
    drop(held);

    // Bounds of the control plane arrive with the snapshot and show as a gauge.
    let mut over = snapshot(2, vec![route("app", &["app.test"], "/", &[&app])]);
    over.limits_hit.insert("max_http_routes".into(), 2);
    proxy.apply(&over);
    let services = |limit: &'static str| {
        proxy
            .proxy
            .metrics
            .services_over_limit
            .get_or_create(&LimitLabels { limit })
            .get()
    };
    assert_eq!(
        (services("max_http_routes"), services("max_backends_per_service")),
        (2, 0)
    );
}

async fn open_connections(at: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = vec![];
    for _ in 0..n {
        out.push(TcpStream::connect(at).await.unwrap());
    }
    out
}

/// A backend that answers after `delay` and records the most requests it had at once.
struct SlowBackend {
    addr: SocketAddr,
    peak: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

async fn slow_backend(delay: Duration) -> SlowBackend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (now, peak, connections) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (p, c) = (peak.clone(), connections.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let (now, peak) = (now.clone(), p.clone());
            let service = hyper::service::service_fn(move |_req| {
                let (now, peak) = (now.clone(), peak.clone());
                async move {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"slow"))))
                }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    SlowBackend {
        addr,
        peak,
        connections,
    }
}

fn route_to(addr: SocketAddr) -> HttpRoute {
    let mut r = route("slow", &["slow.test"], "/", &[]);
    r.backends = vec![Backend {
        addr,
        weight: 1,
        id: "slow".into(),
    }];
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_a_backends_limit_wait_in_line_and_time_out_as_503() {
    let backend = slow_backend(Duration::from_millis(200)).await;
    let proxy = TestProxy::start_configured(&snapshot(1, vec![route_to(backend.addr)]), Limits::default(), |p| {
        p.with_backend_limit(2)
    })
    .await;
    let count = |limit: &'static str| proxy.proxy.metrics.limits.get_or_create(&LimitLabels { limit }).get();
    let http = client();

    // Eight at once against a limit of two: all answered, never more than two at the backend.
    let answers = futures_util::future::join_all((0..8).map(|_| get(&http, proxy.http, "slow.test", "/"))).await;
    let statuses: Vec<StatusCode> = answers.iter().map(|a| a.0).collect();
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    assert_eq!(
        backend.peak.load(Ordering::SeqCst),
        2,
        "the backend saw at most its limit at once"
    );
    assert!(
        backend.connections.load(Ordering::SeqCst) <= 2,
        "no connection beyond the limit was opened: {}",
        backend.connections.load(Ordering::SeqCst)
    );
    assert!(count("backend_requests") >= 6, "queued requests are counted");

    // A backend slower than the queue wait (the connect timeout, 1 s here): the requests
    // that cannot get a slot in time get a 503, not a 502, and the backend is not flooded.
    let stuck = slow_backend(Duration::from_millis(2500)).await;
    proxy.apply(&snapshot(2, vec![route_to(stuck.addr)]));
    let answers = futures_util::future::join_all((0..4).map(|_| get(&http, proxy.http, "slow.test", "/"))).await;
    let ok = answers.iter().filter(|a| a.0 == StatusCode::OK).count();
    let busy = answers
        .iter()
        .filter(|a| a.0 == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!(
        (ok, busy),
        (2, 2),
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    assert_eq!(stuck.peak.load(Ordering::SeqCst), 2);
}

/// Reads one response whose body ends with `end` (or until `wait` runs out).
async fn read_response(s: &mut TcpStream, end: &[u8], wait: Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        let mut chunk = [0u8; 4096];
        while !out.ends_with(end) {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_request_line_is_431_on_the_lean_path_and_on_hypers() {
    use tokio::io::AsyncWriteExt;
    let app = TestBackend::start("app").await;
    let proxy = TestProxy::start(&snapshot(1, vec![route("app", &["app.test"], "/", &[&app])])).await;
    let long = format!("GET /{} HTTP/1.1\r\nHost: app.test\r\n\r\n", "a".repeat(64 * 1024));

    // A fresh connection: the lean loop reads the head first.
    let lean = raw_within(proxy.http, long.as_bytes(), Duration::from_secs(3)).await;
    assert!(lean.starts_with("HTTP/1.1 431"), "lean path: {lean:.60}");

    // A request with a body first: hyper serves the rest of the connection.
    let mut s = TcpStream::connect(proxy.http).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1\r\n\r\nx")
        .await
        .unwrap();
    let warm = read_response(&mut s, b"\r\n\r\nx", Duration::from_secs(3)).await;
    assert!(warm.starts_with("HTTP/1.1 200"), "warm-up: {warm:.60}");
    let _ = s.write_all(long.as_bytes()).await;
    let hyper = read_response(&mut s, b"\r\n\r\n", Duration::from_secs(3)).await;
    assert!(hyper.starts_with("HTTP/1.1 431"), "hyper's path: {hyper:.60}");
}

/// What a backend got of each request body: its length, or `None` when it broke off.
type Bodies = Arc<std::sync::Mutex<Vec<Option<usize>>>>;

/// A backend reading each request's body whole (after `pause`) and answering its length.
async fn body_backend(pause: Duration) -> (SocketAddr, Bodies) {
    use http_body_util::BodyExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies: Bodies = Arc::default();
    let seen = bodies.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let seen = seen.clone();
                async move {
                    tokio::time::sleep(pause).await;
                    let len = req.into_body().collect().await.ok().map(|b| b.to_bytes().len());
                    seen.lock().unwrap().push(len);
                    let text = format!("got {}", len.unwrap_or(0));
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    (addr, bodies)
}

fn body_route(addr: SocketAddr) -> HttpRoute {
    let mut r = route("up", &["up.test"], "/", &[]);
    r.backends = vec![Backend {
        addr,
        weight: 1,
        id: "up".into(),
    }];
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_stops_coming_is_408_and_never_reaches_the_backend_whole() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (backend, bodies) = body_backend(Duration::ZERO).await;
    let limits = Limits {
        client_body_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let proxy = TestProxy::start_with(&snapshot(1, vec![body_route(backend)]), limits).await;
    let count = |limit: &'static str| proxy.proxy.metrics.limits.get_or_create(&LimitLabels { limit }).get();

    let mut s = TcpStream::connect(proxy.http).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: up.test\r\nContent-Length: 100\r\n\r\nx")
        .await
        .unwrap();
    // Then silence: the proxy ends it (the upstream timeout, 10 s here, is not what does).
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(read.is_ok(), "no answer within 5 s: {text:.60}");
    assert!(text.starts_with("HTTP/1.1 408"), "{text:.60}");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    assert_eq!(count("client_body_timeout"), 1);

    // The same over h2c: the stream is answered 408.
    let tcp = TcpStream::connect(proxy.http).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, Infallible>>(1);
    tx.send(Ok(hyper::body::Frame::data(Bytes::from_static(b"x"))))
        .await
        .unwrap();
    let body = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let req = hyper::Request::post("http://up.test/upload")
        .header("content-length", "100")
        .body(body)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), h2.send_request(req))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(count("client_body_timeout"), 2);
    drop(tx);

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !bodies.lock().unwrap().contains(&Some(100)),
        "the backend got a whole body: {:?}",
        bodies.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_body_or_a_backend_not_reading_is_no_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = Limits {
        client_body_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    // One byte every 300 ms under a 1 s timeout: the timeout is between reads, not for all.
    let (backend, bodies) = body_backend(Duration::ZERO).await;
    let proxy = TestProxy::start_with(&snapshot(1, vec![body_route(backend)]), limits.clone()).await;
    let mut s = TcpStream::connect(proxy.http).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: up.test\r\nContent-Length: 8\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(b"x").await.unwrap();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("got 8"),
        "{text:.200}"
    );
    assert_eq!(*bodies.lock().unwrap(), vec![Some(8)]);

    // A backend that reads nothing for 2.5 s: the proxy stops asking the client for more
    // (backpressure) and that pause is not the client's.
    let (backend, bodies) = body_backend(Duration::from_millis(2500)).await;
    let proxy = TestProxy::start_with(&snapshot(1, vec![body_route(backend)]), limits).await;
    let big = 32 << 20;
    let mut s = TcpStream::connect(proxy.http).await.unwrap();
    let head = format!("POST /upload HTTP/1.1\r\nHost: up.test\r\nContent-Length: {big}\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let sent = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..big / chunk.len() {
            w.write_all(&chunk).await.unwrap();
        }
        // Kept open: hyper closes a connection whose client half-closed.
        (started.elapsed(), w)
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), r.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with(&format!("got {big}")),
        "{text:.200}"
    );
    assert!(
        sent.await.unwrap().0 > Duration::from_secs(1),
        "the client was held back longer than the timeout"
    );
    assert_eq!(*bodies.lock().unwrap(), vec![Some(big)]);
}

/// Sends `bytes` on a fresh connection and reads what comes back until the proxy closes it
/// (or `wait` runs out); also keeps writing nothing more.
async fn exchange(at: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    raw_within(at, bytes, wait).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_over_the_limit_is_413_and_never_reaches_the_backend_whole() {
    use common::recording::{RecordingBackend, Reply};
    let backend = RecordingBackend::start(Reply::default()).await;
    let proxy = TestProxy::start_configured(&snapshot(1, vec![body_route(backend.addr)]), Limits::default(), |p| {
        p.with_max_request_body(Some(1000))
    })
    .await;
    let count = |limit: &'static str| proxy.proxy.metrics.limits.get_or_create(&LimitLabels { limit }).get();
    let wait = Duration::from_secs(3);

    // Announced over the limit: 413 before anything is sent, whether the body follows or not.
    let head = "POST /upload HTTP/1.1\r\nHost: up.test\r\nContent-Length: 5000\r\n\r\n";
    let a = exchange(proxy.http, format!("{head}{}", "x".repeat(5000)).as_bytes(), wait).await;
    assert!(a.starts_with("HTTP/1.1 413"), "{a:.80}");
    let a = exchange(proxy.http, head.as_bytes(), wait).await;
    assert!(a.starts_with("HTTP/1.1 413"), "{a:.80}");
    // `Expect: 100-continue` gets the 413 instead of the 100.
    let expect = "POST /upload HTTP/1.1\r\nHost: up.test\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n";
    let a = exchange(proxy.http, expect.as_bytes(), wait).await;
    assert!(a.starts_with("HTTP/1.1 413"), "{a:.80}");
    assert!(
        backend.requests().is_empty(),
        "the backend saw {:?}",
        backend.requests()
    );
    assert_eq!(count("request_body_size"), 3);

    // Chunked past the limit: the body fails where it passes it; 413, as this backend answers
    // only once it has the whole body (one answering early would have its answer cut).
    let chunk = format!("190\r\n{}\r\n", "y".repeat(400));
    let chunked = format!(
        "POST /upload HTTP/1.1\r\nHost: up.test\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
        chunk.repeat(5)
    );
    let a = exchange(proxy.http, chunked.as_bytes(), wait).await;
    assert!(a.starts_with("HTTP/1.1 413"), "{a:.80}");
    assert_eq!(count("request_body_size"), 4);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        backend.requests().iter().all(|r| !r.complete),
        "the backend got a whole request: {:?}",
        backend.requests()
    );

    // The same over h2c, a body without content-length.
    let tcp = TcpStream::connect(proxy.http).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let frames = (0..5).map(|_| Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(vec![b'z'; 400]))));
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let req = hyper::Request::post("http://up.test/upload").body(body).unwrap();
    let resp = tokio::time::timeout(wait, h2.send_request(req))
        .await
        .expect("an answer within 3 s")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(count("request_body_size"), 5);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        backend.requests().iter().all(|r| !r.complete),
        "{:?}",
        backend.requests()
    );

    // Up to the limit, announced or chunked: forwarded whole.
    backend.clear();
    let exact = format!(
        "POST /upload HTTP/1.1\r\nHost: up.test\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{}",
        "x".repeat(1000)
    );
    let a = exchange(proxy.http, exact.as_bytes(), wait).await;
    assert!(a.starts_with("HTTP/1.1 200") && a.ends_with("ok"), "{a:.80}");
    let chunked = format!(
        "POST /upload HTTP/1.1\r\nHost: up.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{}0\r\n\r\n",
        chunk.repeat(2)
    );
    let a = exchange(proxy.http, chunked.as_bytes(), wait).await;
    assert!(a.starts_with("HTTP/1.1 200") && a.ends_with("ok"), "{a:.80}");
    let got = backend.requests();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|r| r.complete));
    assert_eq!(got[0].body().len(), 1000);
    assert_eq!(got[1].body().len(), 800);
    assert_eq!(count("request_body_size"), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_attempts_bound_the_retries() {
    let app = TestBackend::start("app").await;
    // A port nothing listens on: connects are refused.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let mut r = route("app", &["app.test"], "/", &[&app]);
    r.backends.push(Backend {
        addr: dead,
        weight: 1,
        id: "dead".into(),
    });
    let snap = snapshot(1, vec![r]);
    let http = client();
    // One attempt: a request that picked the dead backend is not retried (502), until the
    // dead one is ejected after three refusals.
    let once = TestProxy::start_configured(&snap, Limits::default(), |p| p.with_backend_attempts(1)).await;
    let mut failed = 0;
    for _ in 0..30 {
        if get(&http, once.http, "app.test", "/").await.0 == StatusCode::BAD_GATEWAY {
            failed += 1;
        }
    }
    assert!((1..=3).contains(&failed), "{failed} of 30 failed");
    // The default (3): every request is answered by the live one.
    let retried = TestProxy::start(&snap).await;
    for _ in 0..30 {
        assert_eq!(get(&http, retried.http, "app.test", "/").await.0, StatusCode::OK);
    }
}
