//! Reaching a backend: the one connect (with its timeout) every path uses, and the one
//! retry rule for requests (`proxy`) and passthrough connections (`proxy::splice`): up to
//! `MAX_ATTEMPTS` backends, another only when nothing reached the one that failed.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::l7::error::ProxyError;
use crate::l7::route::balance::{self, Backend};

/// The most backends `--backend-attempts` may have tried for one request or passthrough
/// connection (the default is `config::defaults::BACKEND_ATTEMPTS`).
pub const MAX_ATTEMPTS: usize = 5;

/// Connects to `addr` within `timeout`, Nagle off: requests and spliced bytes go out as
/// they come.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ProxyError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(ProxyError::Connect { addr, source }),
        Err(_) => return Err(ProxyError::ConnectTimeout { addr }),
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The backends one request (or connection) tries in turn, each at most once.
pub struct Attempts<'a> {
    backends: &'a [Arc<Backend>],
    sticky: Option<u64>,
    /// Addresses already tried; a fixed array, no allocation per request.
    tried: [SocketAddr; MAX_ATTEMPTS],
    made: usize,
    limit: usize,
    last_error: Option<ProxyError>,
}

impl<'a> Attempts<'a> {
    /// `sticky`: the key pinning the request to a backend (`balance::pick`); `max`: the
    /// most backends tried (1 to `MAX_ATTEMPTS`).
    pub fn new(backends: &'a [Arc<Backend>], sticky: Option<u64>, max: usize) -> Attempts<'a> {
        Attempts {
            backends,
            sticky,
            tried: [SocketAddr::from(([0, 0, 0, 0], 0)); MAX_ATTEMPTS],
            made: 0,
            limit: max.clamp(1, MAX_ATTEMPTS).min(backends.len()),
            last_error: None,
        }
    }

    /// The next backend to try; `None` once the attempts are used up.
    pub fn next_backend(&mut self) -> Option<Arc<Backend>> {
        if self.made == self.limit {
            return None;
        }
        let backend = balance::pick(self.backends, self.sticky, &self.tried[..self.made])?;
        self.tried[self.made] = backend.addr;
        self.made += 1;
        Some(backend)
    }

    /// The attempt on `backend` worked.
    pub fn succeeded(&self, backend: &Backend) {
        backend.record_success();
    }

    /// The attempt on `backend` failed with `error`; `unsent` is the request when it came
    /// back untouched. `Ok`: try the next backend with it. `Err`: give up with this error.
    pub fn failed<R>(&mut self, backend: &Backend, error: ProxyError, unsent: Option<R>) -> Result<R, ProxyError> {
        if matches!(
            error,
            ProxyError::Connect { .. } | ProxyError::ConnectTimeout { .. } | ProxyError::BackendTls { .. }
        ) && backend.record_connect_failure()
        {
            tracing::warn!(backend = %backend.addr, "backend ejected after consecutive connect failures");
        }
        match unsent {
            Some(req) if error.retry_safe() => {
                self.last_error = Some(error);
                Ok(req)
            }
            _ => Err(error),
        }
    }

    /// Why the last attempt failed; `None` when no backend could be tried.
    pub fn last_error(self) -> Option<ProxyError> {
        self.last_error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l7::route::balance::Registry;

    fn backends(n: u8) -> Vec<Arc<Backend>> {
        let addrs: Vec<SocketAddr> = (1..=n).map(|i| SocketAddr::from(([10, 0, 0, i], 80))).collect();
        let states = Registry::default().sync(addrs.iter().copied());
        addrs.iter().map(|a| states[a].clone()).collect()
    }

    fn refused(addr: SocketAddr) -> ProxyError {
        ProxyError::Connect {
            addr,
            source: std::io::ErrorKind::ConnectionRefused.into(),
        }
    }

    #[test]
    fn at_most_max_attempts_each_backend_once() {
        let all = backends(MAX_ATTEMPTS as u8 + 2);
        let mut attempts = Attempts::new(&all, None, MAX_ATTEMPTS);
        let mut seen = Vec::new();
        while let Some(b) = attempts.next_backend() {
            assert!(!seen.contains(&b.addr));
            seen.push(b.addr);
            attempts.failed(&b, refused(b.addr), Some(())).unwrap();
        }
        assert_eq!(seen.len(), MAX_ATTEMPTS);
        assert!(matches!(attempts.last_error(), Some(ProxyError::Connect { .. })));

        let two = backends(2);
        let mut attempts = Attempts::new(&two, None, MAX_ATTEMPTS);
        assert!(attempts.next_backend().is_some() && attempts.next_backend().is_some());
        assert!(attempts.next_backend().is_none(), "no backend is tried twice");
    }

    #[test]
    fn the_operators_number_of_attempts() {
        let all = backends(4);
        for (max, tried) in [(1, 1), (2, 2), (3, 3), (0, 1), (99, 4)] {
            let mut attempts = Attempts::new(&all, None, max);
            let mut n = 0;
            while let Some(b) = attempts.next_backend() {
                n += 1;
                let _ = attempts.failed(&b, refused(b.addr), Some(()));
            }
            assert_eq!(n, tried, "at most {max}");
        }
    }

    #[test]
    fn only_a_request_that_reached_nobody_goes_to_the_next_backend() {
        let all = backends(3);
        let mut attempts = Attempts::new(&all, None, MAX_ATTEMPTS);
        let b = attempts.next_backend().unwrap();
        assert!(attempts.failed(&b, refused(b.addr), Some("req")).is_ok());
        // Sent, and the backend failed: retrying could repeat it.
        let timeout = ProxyError::UpstreamTimeout { addr: b.addr };
        assert!(attempts.failed(&b, timeout, Some("req")).is_err());
        // Retry-safe, but the request did not come back.
        assert!(attempts.failed::<&str>(&b, refused(b.addr), None).is_err());
        assert!(Attempts::new(&[], None, MAX_ATTEMPTS).last_error().is_none());
    }

    #[test]
    fn connect_failures_eject_a_backend_success_resets() {
        let all = backends(1);
        let b = &all[0];
        let mut attempts = Attempts::new(&all, None, MAX_ATTEMPTS);
        for _ in 0..2 {
            let _ = attempts.failed(b, refused(b.addr), Some(()));
            attempts.succeeded(b);
        }
        assert!(b.available(), "failures apart from each other do not eject");
        for _ in 0..3 {
            let _ = attempts.failed(b, refused(b.addr), Some(()));
        }
        assert!(!b.available(), "three in a row do");
    }
}
