//! The lean server loop that serves body-less HTTP/1.1 requests on plain listeners, and its
//! handover to hyper: raw clients on loopback, so framing and connection handling are exact.
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{route, snapshot, TestBackend, TestProxy};
use interlock::l7::limits::Limits;
use interlock::l7::metrics::LimitLabels;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Writes `bytes` on a fresh connection and reads until the proxy closes it (at most 5 s).
async fn exchange(proxy: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let (read, text) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    read.unwrap();
    text
}

/// Reads until the proxy closes the connection (panics if it has not within `wait`): how
/// the read ended, and what came before as text.
async fn read_until_closed<R: AsyncRead + Unpin>(r: &mut R, wait: Duration) -> (std::io::Result<usize>, String) {
    let mut out = Vec::new();
    let read = tokio::time::timeout(wait, r.read_to_end(&mut out))
        .await
        .expect("the proxy closes the connection");
    (read, String::from_utf8_lossy(&out).into_owned())
}

/// A backend that answers every request on every connection with `response` after
/// `delay`, then closes when `close` is set.
async fn fixed_backend(response: &'static [u8], close: bool, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        tokio::time::sleep(delay).await;
                        if s.write_all(response).await.is_err() || close {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A test backend named `name` and a proxy routing `srv.test` to it.
async fn proxied_backend(name: &'static str, limits: Limits) -> (TestBackend, TestProxy) {
    let b = TestBackend::start(name).await;
    let proxy = TestProxy::start_with(&snapshot(1, vec![route(name, &["srv.test"], "/", &[&b])]), limits).await;
    (b, proxy)
}

async fn proxy_to(addr: SocketAddr, limits: Limits) -> TestProxy {
    let mut r = route("srv", &["srv.test"], "/", &[]);
    r.backends = vec![interlock::model::Backend {
        addr,
        weight: 1,
        id: "srv".into(),
    }];
    TestProxy::start_with(&snapshot(1, vec![r]), limits).await
}

#[tokio::test]
async fn pipelined_requests_then_a_body_handed_to_hyper_on_one_connection() {
    let (_b, proxy) = proxied_backend("p", Limits::default()).await;
    let answer = exchange(
        proxy.http,
        b"GET /a HTTP/1.1\r\nHost: srv.test\r\n\r\n\
          GET /b HTTP/1.1\r\nHost: srv.test\r\nConnection: keep-alive\r\n\r\n\
          POST /c HTTP/1.1\r\nHost: srv.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(answer.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{answer}");
    let (a, b, c) = (
        answer.find("path=/a").unwrap(),
        answer.find("path=/b").unwrap(),
        answer.find("hello").expect("the POST body echoed"),
    );
    assert!(a < b && b < c, "answers in order: {answer}");
    assert_eq!(answer.matches("x-upstream-addr: ").count(), 3);
    assert_eq!(answer.matches("x-request-id: ").count(), 3);
}

#[tokio::test]
async fn head_requests_and_connection_close() {
    let (_b, proxy) = proxied_backend("h", Limits::default()).await;
    let answer = exchange(
        proxy.http,
        b"HEAD /x HTTP/1.1\r\nHost: srv.test\r\n\r\nGET /y HTTP/1.1\r\nHost: srv.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let second = answer[1..].find("HTTP/1.1 ").expect("two answers") + 1;
    let (head_answer, get_answer) = answer.split_at(second);
    assert!(head_answer.starts_with("HTTP/1.1 200 OK\r\n"), "{head_answer}");
    assert!(
        head_answer.ends_with("\r\n\r\n"),
        "no body after a HEAD answer: {head_answer:?}"
    );
    assert!(get_answer.contains("connection: close\r\n"), "{get_answer}");
    assert!(
        get_answer.ends_with("\r\n\r\nname=h path=/y xff=127.0.0.1 proto=http host=srv.test"),
        "{get_answer}"
    );
    // A route that does not exist is the proxy's own answer, framed by length.
    let missing = exchange(
        proxy.http,
        b"GET / HTTP/1.1\r\nHost: nowhere.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(missing.starts_with("HTTP/1.1 404 Not Found\r\n"), "{missing}");
    assert!(
        missing.contains("content-length: 23\r\n") && missing.contains("date: "),
        "{missing}"
    );
    assert!(missing.ends_with("no route for this host\n"), "{missing}");
}

/// Segments the client received on `s` so far (`tcpi_segs_in` of Linux's TCP_INFO).
fn segments_in(s: &TcpStream) -> u32 {
    use std::os::fd::AsRawFd;
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_segs_in
}

#[tokio::test]
async fn a_closing_answer_reaches_the_client_in_one_segment_with_its_fin() {
    // The ACK of the request rides on the answer (no quick ACK) and the FIN rides on it
    // too (MSG_MORE before the close): with the SYN-ACK, two segments in all, where a
    // plain server sends four. A delayed ACK fires after 40 ms; should the machine stall
    // the proxy that long, another try shows the path.
    let (_b, proxy) = proxied_backend("seg", Limits::default()).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(proxy.http).await.unwrap();
        s.write_all(b"GET /s HTTP/1.1\r\nHost: srv.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
            .await
            .expect("the proxy closes the connection")
            .unwrap();
        assert!(
            out.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        seen.push(segments_in(&s));
        if seen.last() == Some(&2) {
            return;
        }
    }
    panic!("segments received per closed connection: {seen:?}, expected 2 (SYN-ACK, answer with FIN)");
}

#[tokio::test]
async fn bytes_sent_after_a_closing_request_do_not_cost_its_answer() {
    // Bytes the proxy never reads are in its socket when it closes, which makes the
    // close a reset: the answer and its FIN must be on their way before that.
    let slow = fixed_backend(
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow",
        false,
        Duration::from_millis(300),
    )
    .await;
    let proxy = proxy_to(slow, Limits::default()).await;
    let mut s = TcpStream::connect(proxy.http).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: srv.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(b"GET /more HTTP/1.1\r\nHost: srv.test\r\n\r\n")
        .await
        .unwrap();
    let (read, text) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("\r\n\r\nslow"),
        "{read:?}: {text:?}"
    );
}

#[tokio::test]
async fn chunked_and_close_delimited_bodies_go_out_chunked() {
    let chunked = fixed_backend(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-B: 1\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        false,
        Duration::ZERO,
    )
    .await;
    let proxy = proxy_to(chunked, Limits::default()).await;
    let answer = exchange(
        proxy.http,
        b"GET / HTTP/1.1\r\nHost: srv.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        head.contains("transfer-encoding: chunked") && head.contains("X-B: 1"),
        "{head}"
    );
    assert_eq!(body, "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");

    let until_close = fixed_backend(b"HTTP/1.1 200 OK\r\n\r\nall of it", true, Duration::ZERO).await;
    let proxy = proxy_to(until_close, Limits::default()).await;
    let answer = exchange(
        proxy.http,
        b"GET / HTTP/1.1\r\nHost: srv.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.ends_with("\r\n\r\n9\r\nall of it\r\n0\r\n\r\n"), "{answer}");
}

#[tokio::test]
async fn a_backend_dying_mid_body_cuts_the_client_off() {
    let dying = fixed_backend(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
        true,
        Duration::ZERO,
    )
    .await;
    let proxy = proxy_to(dying, Limits::default()).await;
    // Keep-alive asked for: the cut must still close the connection, not end the body.
    let answer = exchange(proxy.http, b"GET / HTTP/1.1\r\nHost: srv.test\r\n\r\n").await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("Content-Length: 100"), "{head}");
    assert_eq!(
        body, "only ten b",
        "the client sees fewer bytes than announced, then a close"
    );
}

#[tokio::test]
async fn partial_heads_time_out_and_count_idle_connections_just_close() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (_b, proxy) = proxied_backend("t", limits).await;
    let count = || {
        proxy
            .proxy
            .metrics
            .limits
            .get_or_create(&LimitLabels {
                limit: "header_read_timeout",
            })
            .get()
    };
    let partial = exchange(proxy.http, b"GET / HTTP/1.1\r\nHost: srv").await;
    assert!(partial.is_empty(), "{partial}");
    assert_eq!(count(), 1);
    let idle = exchange(proxy.http, b"GET / HTTP/1.1\r\nHost: srv.test\r\n\r\n").await;
    assert!(
        idle.starts_with("HTTP/1.1 200 OK"),
        "answered, then closed when idle: {idle}"
    );
    assert_eq!(count(), 1, "an idle keep-alive connection is not a slow client");
}

#[tokio::test]
async fn at_shutdown_idle_connections_get_a_last_answer_or_close_without_holding_the_drain() {
    let (_b, mut proxy) = proxied_backend("d", Limits::default()).await;
    let get = b"GET / HTTP/1.1\r\nHost: srv.test\r\n\r\n";
    let (mut used, mut idle) = (
        TcpStream::connect(proxy.http).await.unwrap(),
        TcpStream::connect(proxy.http).await.unwrap(),
    );
    for s in [&mut used, &mut idle] {
        s.write_all(get).await.unwrap();
        let mut first = [0u8; 12];
        s.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
    }
    let mut rest = [0u8; 1024];
    let _ = used.read(&mut rest).await.unwrap(); // the rest of the first answer
    proxy.shutdown();
    // A client sending its next request just after the shutdown is answered, and told
    // the connection ends, instead of having its request cut off.
    tokio::time::sleep(Duration::from_millis(100)).await;
    used.write_all(get).await.unwrap();
    let mut last = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), used.read_to_end(&mut last))
        .await
        .expect("the last answer ends the connection")
        .unwrap();
    let last = String::from_utf8_lossy(&last);
    assert!(
        last.starts_with("HTTP/1.1 200 OK\r\n") && last.contains("connection: close\r\n"),
        "{last}"
    );
    // A connection left idle is closed after a second, well within the grace period.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection was closed");
    tokio::time::timeout(Duration::from_secs(3), proxy.serving.take().unwrap())
        .await
        .expect("drained well within the grace period")
        .unwrap();
}

#[tokio::test]
async fn an_upload_answered_without_its_body_is_read_to_the_end_then_answered_not_reset() {
    // A client that writes its whole request before reading (as most client libraries
    // do) must get the 404, not a reset in the middle of its upload.
    let (_b, proxy) = proxied_backend("srv", Limits::default()).await;
    let (mut rd, mut wr) = TcpStream::connect(proxy.http).await.unwrap().into_split();
    let body_len: usize = 8 << 20;
    let head = format!("POST /up HTTP/1.1\r\nHost: nowhere.test\r\nContent-Length: {body_len}\r\n\r\n");
    wr.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    for sent in (0..body_len).step_by(chunk.len()) {
        if let Err(e) = wr.write_all(&chunk).await {
            panic!("the upload failed after {sent} of {body_len} bytes: {e}");
        }
    }
    let (read, text) = read_until_closed(&mut rd, Duration::from_secs(10)).await;
    assert!(
        read.is_ok() && text.starts_with("HTTP/1.1 404 ") && text.ends_with("no route for this host\n"),
        "{read:?}: {text:?}"
    );
}
