//! A backend that dies in the middle of a response: the client sees the response break off
//! (an error, never a body that looks complete), quickly, and requests to other backends are
//! unaffected.
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{client, get, route, snapshot, TestBackend, TestProxy};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Answers every request with a chunked 200 whose body stops after one chunk: the process
/// "dies" (the socket closes) mid-response.
async fn dying_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
                    .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                drop(s);
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_dying_mid_response_breaks_that_response_only() {
    let healthy = TestBackend::start("healthy").await;
    let dying = dying_backend().await;
    let mut dying_route = route("dying", &["dying.test"], "/", &[]);
    dying_route.backends = vec![interlock::model::Backend {
        addr: dying,
        weight: 1,
        id: "dying".into(),
    }];
    let proxy = TestProxy::start(&snapshot(
        1,
        vec![route("healthy", &["healthy.test"], "/", &[&healthy]), dying_route],
    ))
    .await;
    let c = client();

    let others = {
        let c = c.clone();
        let at = proxy.http;
        tokio::spawn(async move {
            let mut statuses = vec![];
            for _ in 0..50 {
                statuses.push(get(&c, at, "healthy.test", "/").await.0.as_u16());
            }
            statuses
        })
    };
    for _ in 0..10 {
        let req = hyper::Request::get(format!("http://{}/", proxy.http))
            .header("host", "dying.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = c.request(req).await.expect("the head arrives");
        assert_eq!(resp.status(), 200, "the head was already on its way");
        let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
            .await
            .expect("the break is seen quickly, not after a timeout");
        assert!(body.is_err(), "a response cut short must not look complete: {body:?}");
    }
    let statuses = others.await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "other backends unaffected: {statuses:?}"
    );
}
