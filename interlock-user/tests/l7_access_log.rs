//! `--access-log <file>`: the proxy's access lines reach the file, in the format asked for,
//! with the user agent, referer and bytes of each request. One test: the destination is
//! set once per process.
mod common;

use std::time::Duration;

use common::{raw, route, snapshot, TestBackend, TestProxy};
use interlock::access_log::{self, Destination};
use interlock::config::AccessLogFormat;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_destination_receives_a_line_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let guard = access_log::configure(AccessLogFormat::Combined, &Destination::File(path.clone()))
        .unwrap()
        .expect("a file has a guard");
    let app = TestBackend::start("app").await;
    let proxy = TestProxy::start(&snapshot(1, vec![route("app", &["app.test"], "/", &[&app])])).await;

    let ok = raw(
        proxy.http,
        b"GET /hello?x=1 HTTP/1.1\r\nHost: app.test\r\nUser-Agent: curl/8.5 \"test\"\r\n\
          Referer: http://from.example/\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok:.60}");
    let missing = raw(
        proxy.http,
        b"GET /nope HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing:.60}");
    let body_len = ok.split("\r\n\r\n").nth(1).unwrap().len();

    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.lines().count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let first = lines.iter().find(|l| l.contains("/hello")).expect("the 200's line");
    assert!(first.starts_with("127.0.0.1 - - ["), "{first}");
    assert!(
        first.ends_with(&format!(
            "\"GET /hello?x=1 HTTP/1.1\" 200 {body_len} \"http://from.example/\" \"curl/8.5 \\x22test\\x22\""
        )),
        "{first}"
    );
    let second = lines.iter().find(|l| l.contains("/nope")).expect("the 404's line");
    assert!(second.contains("\"GET /nope HTTP/1.1\" 404 "), "{second}");
    assert!(second.ends_with(" \"-\" \"-\""), "{second}");
    drop(guard);
}
