//! A client's request body with a read timeout, as nginx's `client_body_timeout`: the time
//! allowed between two reads of the body, not for the whole of it.
//!
//! The timer runs only while the proxy asks for more and the client has none ready
//! (`poll_frame` Pending). When the backend reads slowly, hyper's client stops polling the
//! body and the timer stands still: backpressure is never blamed on the client. On timeout
//! the body fails with [`BodyTimedOut`], which the proxy answers with 408 when no response
//! has started (`ProxyError::exchange`).
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::l7::error::BodyTimedOut;
use crate::l7::metrics::Metrics;
use crate::l7::BoxError;

pub struct BodyTimeout<B> {
    inner: B,
    timeout: Duration,
    /// Boxed on the first wait only: most bodies come with their head and never wait.
    timer: Option<Pin<Box<Sleep>>>,
    /// The timer runs for the wait in progress (re-armed at the start of each wait).
    waiting: bool,
    metrics: Arc<Metrics>,
}

impl<B> BodyTimeout<B> {
    /// `metrics` counts the timeouts (`client_body_timeout`), whether or not a response has
    /// started by then.
    pub fn new(inner: B, timeout: Duration, metrics: Arc<Metrics>) -> BodyTimeout<B> {
        BodyTimeout {
            inner,
            timeout,
            timer: None,
            waiting: false,
            metrics,
        }
    }
}

impl<B> Body for BodyTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = false;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = Instant::now() + this.timeout;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !this.waiting {
            // A new wait: a wake-up without data within one does not extend it.
            timer.as_mut().reset(deadline);
            this.waiting = true;
        }
        match timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                this.metrics.limit_reached("client_body_timeout");
                Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.timeout)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::ReceiverStream;

    type Chunks = StreamBody<ReceiverStream<Result<Frame<Bytes>, BoxError>>>;

    fn body(timeout: Duration) -> (mpsc::Sender<Result<Frame<Bytes>, BoxError>>, BodyTimeout<Chunks>) {
        let (tx, rx) = mpsc::channel(4);
        let metrics = Arc::new(Metrics::new(&mut prometheus_client::registry::Registry::default()));
        (
            tx,
            BodyTimeout::new(StreamBody::new(ReceiverStream::new(rx)), timeout, metrics),
        )
    }

    fn chunk() -> Result<Frame<Bytes>, BoxError> {
        Ok(Frame::data(Bytes::from_static(b"x")))
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeout_is_per_wait_not_for_the_whole_body() {
        let (tx, mut body) = body(Duration::from_secs(10));
        tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(8)).await;
                tx.send(chunk()).await.unwrap();
            }
        });
        let mut got = 0;
        while let Some(frame) = body.frame().await {
            frame.expect("8 s between chunks is within 10 s");
            got += 1;
        }
        assert_eq!(got, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_longer_than_the_timeout_fails_the_body() {
        let (tx, mut body) = body(Duration::from_secs(10));
        tx.send(chunk()).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        let started = Instant::now();
        let e = body.frame().await.unwrap().unwrap_err();
        assert!(e.downcast_ref::<BodyTimedOut>().is_some(), "{e}");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn time_not_asking_for_the_body_does_not_count() {
        let (tx, mut body) = body(Duration::from_secs(10));
        tx.send(chunk()).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        // The backend applies backpressure: nobody polls the body for a minute.
        tokio::time::sleep(Duration::from_secs(60)).await;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            tx.send(chunk()).await.unwrap();
        });
        assert!(body.frame().await.unwrap().is_ok());
    }
}
