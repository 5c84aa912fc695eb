//! Mutated HTTP/1.1 requests through a real listener: whatever the bytes, the proxy answers
//! with a status below 500 or closes the connection, never panics, and still serves a valid
//! request afterwards. Seeded, so a failure repeats; `INTERLOCK_FUZZ_REQUESTS` sets how many
//! (default 2,000; `cargo xtask fuzz` goes deeper).
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{client, get, route, snapshot, TestBackend, TestProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A plausible request, then a few random byte changes.
fn request(rng: &mut fastrand::Rng) -> Vec<u8> {
    let method = *rng
        .choice(&["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "CONNECT", "G\0T", ""])
        .unwrap();
    let target = *rng
        .choice(&["/", "/a/b?c=d", "*", "http://app.test/x", "//", "/%zz", "/\u{7f}", ""])
        .unwrap();
    let version = *rng
        .choice(&["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 ", "", "HTTP/9"])
        .unwrap();
    let host = *rng
        .choice(&["app.test", "APP.TEST:80", "", "app.test\r\nHost: other", "[::1", "a b"])
        .unwrap();
    let mut text = format!("{method} {target} {version}\r\nHost: {host}\r\n");
    for _ in 0..rng.usize(..4) {
        text.push_str(
            rng.choice(&[
                "Content-Length: 5\r\n",
                "Content-Length: -1\r\n",
                "Content-Length: 99999999999999999999\r\n",
                "Transfer-Encoding: chunked\r\n",
                "Transfer-Encoding: gzip, chunked\r\n",
                "Connection: upgrade\r\nUpgrade: websocket\r\n",
                "Expect: 100-continue\r\n",
                "X-Forwarded-For: 1.2.3.4\r\n",
                ": empty-name\r\n",
                "No-Colon\r\n",
                " folded: header\r\n",
            ])
            .unwrap(),
        );
    }
    text.push_str("Connection: close\r\n\r\n");
    text.push_str(
        rng.choice(&[
            "",
            "hello",
            "5\r\nhello\r\n0\r\n\r\n",
            "zz\r\n",
            "0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ])
        .unwrap(),
    );
    let mut bytes = text.into_bytes();
    for _ in 0..rng.usize(..3) {
        if !bytes.is_empty() {
            let at = rng.usize(..bytes.len());
            bytes[at] = rng.u8(..);
        }
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_requests_get_4xx_or_a_close_never_a_panic_or_5xx() {
    let panics = Arc::new(AtomicUsize::new(0));
    let seen = panics.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        seen.fetch_add(1, Ordering::Relaxed);
        default_hook(info);
    }));
    let requests: usize = std::env::var("INTERLOCK_FUZZ_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let app = TestBackend::start("app").await;
    let proxy = TestProxy::start(&snapshot(1, vec![route("app", &["app.test"], "/", &[&app])])).await;
    let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..requests {
        let bytes = request(&mut rng);
        let mut s = TcpStream::connect(proxy.http).await.unwrap();
        let _ = s.write_all(&bytes).await;
        let _ = s.shutdown().await; // the end of the request: the proxy sees EOF
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        let status = if text.is_empty() {
            "closed".to_string()
        } else {
            text.get(9..12).unwrap_or("?").to_string()
        };
        // 501 is the one 5xx a client earns: a transfer coding the proxy cannot undo
        // (RFC 9112 6.1).
        assert!(
            text.is_empty() || (text.starts_with("HTTP/1.") && (!status.starts_with('5') || status == "501")),
            "request {i} {:?} got {:?}",
            String::from_utf8_lossy(&bytes),
            text.lines().next()
        );
        *statuses.entry(status).or_default() += 1;
    }
    let (status, _, _) = get(&client(), proxy.http, "app.test", "/").await;
    assert_eq!(status, 200, "the proxy still serves");
    assert_eq!(panics.load(Ordering::Relaxed), 0, "no task panicked");
    eprintln!("l7_fuzz: {requests} mutated requests, answers {statuses:?}");
}
