//! A client's request body with a size limit (`--max-request-body-bytes`, nginx's
//! `client_max_body_size`, Interlock's `ClientMaxBodySize`).
//!
//! A body whose Content-Length is over the limit never gets here: the proxy answers it `413`
//! before anything is sent (`Proxy::handle`). This wrapper catches the bodies whose size is
//! not announced (chunked, HTTP/2 without content-length): the frame that passes the limit
//! is not handed on; the body fails with [`BodyOverLimit`] instead, which the proxy answers
//! `413` when no response has started (`ProxyError::exchange`); otherwise the connection
//! is cut. The backend never gets a complete request.
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::l7::error::BodyOverLimit;
use crate::l7::metrics::Metrics;
use crate::l7::BoxError;

pub struct BodyLimit<B> {
    inner: B,
    /// Bytes still allowed; `u64::MAX` when there is no limit.
    left: u64,
    limit: u64,
    /// `None` without a limit: nothing to count, no reference taken per request.
    metrics: Option<Arc<Metrics>>,
}

impl<B> BodyLimit<B> {
    /// `limit` bytes at most (`None`: no limit); `metrics` counts `request_body_size`.
    pub fn new(inner: B, limit: Option<u64>, metrics: &Arc<Metrics>) -> BodyLimit<B> {
        match limit {
            Some(limit) => BodyLimit {
                inner,
                left: limit,
                limit,
                metrics: Some(metrics.clone()),
            },
            None => BodyLimit {
                inner,
                left: u64::MAX,
                limit: u64::MAX,
                metrics: None,
            },
        }
    }
}

impl<B> Body for BodyLimit<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            if let Some(data) = frame.data_ref() {
                let len = data.len() as u64;
                if len > this.left {
                    this.left = 0;
                    if let Some(metrics) = &this.metrics {
                        metrics.limit_reached("request_body_size");
                    }
                    return Poll::Ready(Some(Err(Box::new(BodyOverLimit(this.limit)))));
                }
                this.left -= len;
            }
        }
        Poll::Ready(frame)
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

    fn chunks(n: usize, size: usize) -> impl Body<Data = Bytes, Error = BoxError> + Unpin {
        let frames = (0..n).map(move |_| Ok::<_, BoxError>(Frame::data(Bytes::from(vec![b'x'; size]))));
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new(&mut prometheus_client::registry::Registry::default()))
    }

    #[tokio::test]
    async fn a_body_up_to_the_limit_passes_whole() {
        let body = BodyLimit::new(chunks(4, 25), Some(100), &metrics());
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 100);
        let body = BodyLimit::new(chunks(40, 1000), None, &metrics());
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 40_000);
    }

    #[tokio::test]
    async fn the_frame_passing_the_limit_fails_the_body_and_is_counted() {
        let m = metrics();
        let mut body = BodyLimit::new(chunks(5, 25), Some(100), &m);
        let mut passed = 0;
        let e = loop {
            match body.frame().await.unwrap() {
                Ok(f) => passed += f.into_data().unwrap().len(),
                Err(e) => break e,
            }
        };
        assert_eq!(passed, 100, "the bytes within the limit went on, not the one past it");
        assert!(e.downcast_ref::<BodyOverLimit>().is_some(), "{e}");
        let limit = "request_body_size";
        assert_eq!(
            m.limits.get_or_create(&crate::l7::metrics::LimitLabels { limit }).get(),
            1
        );
    }
}
