//! A steady HTTP load through the stack's proxy: `rate` GET requests per second on pooled
//! keep-alive connections, every answer counted. Runs on its own thread until stopped.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::stack::HTTP_PORT;

#[derive(Debug, Default)]
pub struct LoadReport {
    pub ok: u64,
    pub non2xx: u64,
    pub errors: u64,
    /// The first few distinct failures, for the assertion message.
    pub failures: Vec<String>,
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    non2xx: AtomicU64,
    errors: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Counts {
    fn fail(&self, what: String) {
        // Distinct messages only, so one kind of failure does not hide the others.
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() < 10 && !f.contains(&what) {
            f.push(what);
        }
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    /// Starts sending `GET path` with `Host: host` at `rate` requests per second.
    pub fn start(host: &str, path: &str, rate: u32) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let (stop2, counts2) = (stop.clone(), counts.clone());
        let (host, uri) = (host.to_string(), format!("http://127.0.0.1:{HTTP_PORT}{path}"));
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(drive(host, uri, rate, stop2, counts2));
        });
        Load {
            stop,
            counts,
            thread: Some(thread),
        }
    }

    /// Answers so far (the load keeps running).
    pub fn answered(&self) -> u64 {
        self.counts.ok.load(Ordering::Relaxed) + self.counts.non2xx.load(Ordering::Relaxed)
    }

    /// Stops, waits for the requests in flight, and reports.
    pub fn stop(mut self) -> LoadReport {
        self.finish()
    }

    fn finish(&mut self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        LoadReport {
            ok: self.counts.ok.load(Ordering::Relaxed),
            non2xx: self.counts.non2xx.load(Ordering::Relaxed),
            errors: self.counts.errors.load(Ordering::Relaxed),
            failures: self.counts.failures.lock().map(|f| f.clone()).unwrap_or_default(),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.finish();
    }
}

async fn drive(host: String, uri: String, rate: u32, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut in_flight = tokio::task::JoinSet::new();
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let request = hyper::Request::get(uri.as_str())
            .header(hyper::header::HOST, host.as_str())
            .body(Empty::new())
            .expect("a valid request");
        let (client, counts) = (client.clone(), counts.clone());
        in_flight.spawn(async move {
            let answer = tokio::time::timeout(Duration::from_secs(10), async {
                let resp = client.request(request).await?;
                let status = resp.status();
                let body = resp.into_body().collect().await?.to_bytes();
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
            })
            .await;
            match answer {
                Ok(Ok((status, _))) if status.is_success() => {
                    counts.ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Ok((status, body))) => {
                    counts.non2xx.fetch_add(1, Ordering::Relaxed);
                    counts.fail(format!("{status}: {}", String::from_utf8_lossy(&body).trim()));
                }
                Ok(Err(e)) => {
                    counts.errors.fetch_add(1, Ordering::Relaxed);
                    counts.fail(format!("error: {e}"));
                }
                Err(_) => {
                    counts.errors.fetch_add(1, Ordering::Relaxed);
                    counts.fail("no answer within 10 s".into());
                }
            }
        });
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}
