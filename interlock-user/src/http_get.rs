//! One HTTP/1.1 `GET` over a stream the caller connected (unix socket, TCP, TLS): hyper's
//! client connection, bounded in time and in body size. Used for the engine reads bollard
//! leaves out (`docker/raw.rs`) and for a running agent's admin address
//! (`commands/admin_client.rs`).
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// What to ask for and how long and how much to wait for.
#[derive(Debug, Clone, Copy)]
pub struct Get<'a> {
    /// The `Host` header.
    pub host: &'a str,
    /// Path with query.
    pub path: &'a str,
    /// For the whole exchange: connecting, the request, the answer and its body.
    pub timeout: Duration,
    /// A larger body is refused.
    pub max_body: usize,
}

/// What failed: the connection (the caller's message), the time, or a step of the exchange.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's connect (its own message: what it connected to, and why that failed).
    #[error(transparent)]
    Connect(anyhow::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("invalid request")]
    Request(#[source] hyper::http::Error),
    #[error("HTTP/1.1 handshake")]
    Handshake(#[source] hyper::Error),
    #[error("sending the request")]
    Send(#[source] hyper::Error),
    #[error("reading the body")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
}

/// An answer: its status and its whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Connects with `connect`, sends `get` and reads the whole answer, all within `get.timeout`.
pub async fn get<S, C>(connect: C, get: Get<'_>) -> Result<Answer, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: Future<Output = anyhow::Result<S>>,
{
    let exchange = async {
        let stream = connect.await.map_err(Error::Connect)?;
        exchange(stream, get).await
    };
    tokio::time::timeout(get.timeout, exchange)
        .await
        .unwrap_or(Err(Error::Timeout(get.timeout)))
}

async fn exchange<S>(stream: S, get: Get<'_>) -> Result<Answer, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let req = hyper::Request::get(get.path)
        .header(hyper::header::HOST, get.host)
        .body(Empty::<Bytes>::new())
        .map_err(Error::Request)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(Error::Handshake)?;
    // The connection is driven on its own task, ended with this call (answer read, or timed out).
    let conn = AbortOnDrop(tokio::spawn(conn));
    let resp = sender.send_request(req).await.map_err(Error::Send)?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), get.max_body)
        .collect()
        .await
        .map_err(|e| match e.downcast::<http_body_util::LengthLimitError>() {
            Ok(_) => Error::TooLarge(get.max_body),
            Err(e) => Error::Body(e),
        })?
        .to_bytes();
    drop(conn);
    Ok(Answer { status, body })
}

struct AbortOnDrop(tokio::task::JoinHandle<hyper::Result<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server on one end of an in-memory pipe: reads the request head, writes `answer`
    /// and stays open; the head it read comes back on the channel.
    fn serve(answer: &'static [u8]) -> (tokio::io::DuplexStream, tokio::sync::oneshot::Receiver<String>) {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && server.read_exact(&mut byte).await.is_ok() {
                head.push(byte[0]);
            }
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
            server.write_all(answer).await.unwrap();
            std::future::pending::<()>().await;
        });
        (client, rx)
    }

    fn ask(path: &str) -> Get<'_> {
        Get {
            host: "docker",
            path,
            timeout: Duration::from_secs(5),
            max_body: 16,
        }
    }

    #[tokio::test]
    async fn reads_status_and_body() {
        let (stream, head) = serve(b"HTTP/1.1 404 Not Found\r\ncontent-length: 7\r\n\r\nmissing");
        let answer = get(async { Ok(stream) }, ask("/v1.41/tasks")).await.unwrap();
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(&answer.body[..], b"missing");
        let head = head.await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /v1.41/tasks http/1.1\r\n"), "{head}");
        assert!(head.contains("host: docker\r\n"), "{head}");
    }

    #[tokio::test]
    async fn refuses_a_body_over_the_cap() {
        let (stream, _server) = serve(b"HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\n01234567890123456");
        let e = get(async { Ok(stream) }, ask("/")).await.unwrap_err();
        assert!(matches!(e, Error::TooLarge(16)), "{e:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_on_a_silent_server() {
        let (stream, _server) = serve(b"");
        let e = get(async { Ok(stream) }, ask("/")).await.unwrap_err();
        assert!(matches!(e, Error::Timeout(_)), "{e:?}");
        assert_eq!(e.to_string(), "no answer within 5s");
    }

    #[tokio::test]
    async fn names_the_connect_failure() {
        let connect = async { Err::<tokio::io::DuplexStream, _>(anyhow::anyhow!("connecting to X")) };
        let e = get(connect, ask("/")).await.unwrap_err();
        assert_eq!(e.to_string(), "connecting to X");
    }
}
