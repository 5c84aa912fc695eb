//! Choosing a backend for a request: power of two choices on in-flight requests, sticky by
//! cookie value or client IP (rendezvous hashing), with passive ejection after consecutive
//! connect failures and active health checks marking backends down.
//!
//! Backend state is keyed by address in a registry that outlives route-table swaps, so a
//! backend keeps its in-flight count and health across snapshots.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::header::HeaderValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Passive ejection: after `after` consecutive connect failures a backend gets no requests
/// for `base`, doubled with each further failure, up to `max` (0 failures: never ejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    pub after: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for Ejection {
    fn default() -> Self {
        use crate::config::defaults as d;
        Ejection {
            after: d::EJECT_AFTER_FAILURES,
            base: Duration::from_millis(d::EJECT_BASE_MS),
            max: Duration::from_millis(d::EJECT_MAX_MS),
        }
    }
}

/// Live state of one backend address.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    /// `addr` as the x-upstream-addr header and access-log field carry it, made once.
    pub addr_value: HeaderValue,
    in_flight: AtomicU32,
    consecutive_failures: AtomicU32,
    /// Milliseconds since `epoch` until which the backend is ejected.
    ejected_until_ms: AtomicU64,
    /// False while an active health check fails.
    healthy: AtomicBool,
    /// One permit per request the backend may serve at once.
    slots: Arc<Semaphore>,
    epoch: Instant,
    ejection: Ejection,
}

impl Backend {
    fn new(addr: SocketAddr, epoch: Instant, max_requests: usize, ejection: Ejection) -> Backend {
        Backend {
            addr,
            addr_value: HeaderValue::from_str(&addr.to_string()).unwrap_or(HeaderValue::from_static("-")),
            in_flight: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            slots: Arc::new(Semaphore::new(max_requests.clamp(1, Semaphore::MAX_PERMITS))),
            epoch,
            ejection,
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request as in flight until the guard is dropped. Requests waiting for a
    /// slot count too, so the balancer steers new ones away from a backend with a line.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            backend: self.clone(),
            slot: None,
        }
    }

    pub fn available(&self) -> bool {
        // 0: never ejected, the common case, without a clock read.
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        self.healthy.load(Ordering::Relaxed) && (until == 0 || until <= self.now_ms())
    }

    pub fn record_success(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// A connect failure; ejects the backend after `Ejection::after` in a row. Returns true when ejected.
    pub fn record_connect_failure(&self) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let Ejection { after, base, max } = self.ejection;
        if after == 0 || failures < after {
            return false;
        }
        let factor = 1u32 << (failures - after).min(16);
        let period = base.saturating_mul(factor).min(max);
        self.ejected_until_ms
            .store(self.now_ms() + period.as_millis() as u64, Ordering::Relaxed);
        true
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// Decrements the backend's in-flight count, and frees its slot, when dropped (request
/// finished or abandoned).
#[derive(Debug)]
pub struct InFlight {
    backend: Arc<Backend>,
    slot: Option<OwnedSemaphorePermit>,
}

/// How getting a slot went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A slot was free.
    Immediate,
    /// The backend was at its limit; a slot came free within the wait.
    Queued,
    /// The backend stayed at its limit for the whole wait.
    TimedOut,
}

impl InFlight {
    /// Takes one of the backend's request slots, waiting in line (first come, first
    /// served) up to `wait` when all are taken.
    pub async fn admit(&mut self, wait: Duration) -> Admission {
        if self.slot.is_some() {
            return Admission::Immediate;
        }
        if let Ok(slot) = self.backend.slots.clone().try_acquire_owned() {
            self.slot = Some(slot);
            return Admission::Immediate;
        }
        match tokio::time::timeout(wait, self.backend.slots.clone().acquire_owned()).await {
            // The semaphore is never closed.
            Ok(Ok(slot)) => {
                self.slot = Some(slot);
                Admission::Queued
            }
            _ => Admission::TimedOut,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// All backends ever routed to, by address; entries of vanished backends are pruned on swap.
#[derive(Debug)]
pub struct Registry {
    backends: Mutex<HashMap<SocketAddr, Arc<Backend>>>,
    max_requests: usize,
    ejection: Ejection,
    epoch: Instant,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(crate::config::defaults::MAX_BACKEND_REQUESTS)
    }
}

impl Registry {
    /// A registry whose backends serve at most `max_requests` requests at once each.
    pub fn new(max_requests: usize) -> Registry {
        Registry::with_ejection(max_requests, Ejection::default())
    }

    /// `new`, its backends ejected as `ejection` says.
    pub fn with_ejection(max_requests: usize, ejection: Ejection) -> Registry {
        Registry {
            backends: Mutex::new(HashMap::new()),
            max_requests,
            ejection,
            epoch: Instant::now(),
        }
    }

    pub fn max_requests(&self) -> usize {
        self.max_requests
    }

    pub fn ejection(&self) -> Ejection {
        self.ejection
    }

    /// The states for `addrs`, created when new; states of other addresses are dropped.
    pub fn sync(&self, addrs: impl IntoIterator<Item = SocketAddr>) -> HashMap<SocketAddr, Arc<Backend>> {
        let mut map = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        let live: HashMap<SocketAddr, Arc<Backend>> = addrs
            .into_iter()
            .map(|a| {
                (
                    a,
                    map.entry(a)
                        .or_insert_with(|| Arc::new(Backend::new(a, self.epoch, self.max_requests, self.ejection)))
                        .clone(),
                )
            })
            .collect();
        map.retain(|a, _| live.contains_key(a));
        live
    }
}

/// Picks among `candidates` (a route's backends), skipping `tried` ones.
/// `sticky`: a hash of the cookie value or client IP; the same key maps to the same backend
/// while it is available. Unavailable backends are used only when nothing else is left.
pub fn pick(candidates: &[Arc<Backend>], sticky: Option<u64>, tried: &[SocketAddr]) -> Option<Arc<Backend>> {
    let untried = |b: &&Arc<Backend>| !tried.contains(&b.addr);
    let usable = || candidates.iter().filter(untried).filter(|b| b.available());
    let chosen = match sticky {
        Some(key) => usable().max_by_key(|b| rendezvous(key, b.addr)).cloned(),
        None => power_of_two(candidates, |b| untried(&b) && b.available()),
    };
    chosen.or_else(|| {
        // Everything ejected or unhealthy: better to try than to fail without trying.
        let rest = || candidates.iter().filter(untried);
        match sticky {
            Some(key) => rest().max_by_key(|b| rendezvous(key, b.addr)),
            None => rest().min_by_key(|b| b.in_flight()),
        }
        .cloned()
    })
}

fn power_of_two(candidates: &[Arc<Backend>], ok: impl Fn(&Arc<Backend>) -> bool) -> Option<Arc<Backend>> {
    let n = candidates.len();
    if n == 0 {
        return None;
    }
    // Two distinct random probes; fall back to a scan when they hit unusable backends.
    let i = fastrand::usize(..n);
    let j = if n > 1 {
        (i + 1 + fastrand::usize(..n - 1)) % n
    } else {
        i
    };
    let (a, b) = (&candidates[i], &candidates[j]);
    let pick = match (ok(a), ok(b)) {
        (true, true) => Some(if b.in_flight() < a.in_flight() { b } else { a }),
        (true, false) => Some(a),
        (false, true) => Some(b),
        (false, false) => candidates.iter().filter(|c| ok(c)).min_by_key(|c| c.in_flight()),
    };
    pick.cloned()
}

fn rendezvous(key: u64, addr: SocketAddr) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    addr.hash(&mut h);
    h.finish()
}

/// Hash of a stickiness key (cookie value, client IP).
pub fn sticky_key(value: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(n: u16) -> Vec<Arc<Backend>> {
        let reg = Registry::default();
        let map = reg.sync((0..n).map(|i| SocketAddr::from(([10, 0, 0, 1], 8000 + i))));
        let mut v: Vec<_> = map.into_values().collect();
        v.sort_by_key(|b| b.addr);
        v
    }

    #[test]
    fn power_of_two_prefers_the_less_loaded() {
        let b = backends(2);
        let _busy: Vec<InFlight> = (0..5).map(|_| b[0].start()).collect();
        let picks: Vec<SocketAddr> = (0..200).map(|_| pick(&b, None, &[]).unwrap().addr).collect();
        let to_idle = picks.iter().filter(|a| **a == b[1].addr).count();
        assert_eq!(to_idle, 200, "of two distinct probes the idle backend always wins");
    }

    #[test]
    fn spreads_evenly_when_idle() {
        let b = backends(4);
        let mut counts = HashMap::new();
        for _ in 0..4000 {
            *counts.entry(pick(&b, None, &[]).unwrap().addr).or_insert(0) += 1;
        }
        assert!(counts.values().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    #[test]
    fn sticky_keys_stay_and_move_only_when_their_backend_goes() {
        let b = backends(5);
        let key = sticky_key("session-42");
        let first = pick(&b, Some(key), &[]).unwrap().addr;
        assert!((0..50).all(|_| pick(&b, Some(key), &[]).unwrap().addr == first));
        let others: Vec<Arc<Backend>> = b.iter().filter(|x| x.addr != first).cloned().collect();
        let moved = pick(&others, Some(key), &[]).unwrap().addr;
        assert_ne!(moved, first);
        // Another key on an untouched backend keeps it when `first` disappears.
        let other_key = (0..100u64)
            .map(sticky_key)
            .find(|k| pick(&b, Some(*k), &[]).unwrap().addr != first)
            .unwrap();
        assert_eq!(
            pick(&b, Some(other_key), &[]).unwrap().addr,
            pick(&others, Some(other_key), &[]).unwrap().addr
        );
    }

    #[test]
    fn tried_and_ejected_backends_are_skipped() {
        let b = backends(3);
        for _ in 0..Ejection::default().after {
            b[0].record_connect_failure();
        }
        assert!(!b[0].available());
        for _ in 0..100 {
            let p = pick(&b, None, &[b[1].addr]).unwrap();
            assert_eq!(p.addr, b[2].addr);
        }
        b[2].set_healthy(false);
        assert_eq!(
            pick(&b, None, &[b[1].addr]).unwrap().addr,
            b[0].addr,
            "last resort: try the ejected one"
        );
        assert!(pick(&b, None, &[b[0].addr, b[1].addr, b[2].addr]).is_none());
        b[0].record_success();
    }

    #[tokio::test]
    async fn requests_over_the_limit_wait_in_line_then_time_out() {
        let reg = Registry::new(2);
        let a = SocketAddr::from(([10, 0, 0, 1], 1));
        let b = reg.sync([a])[&a].clone();
        let wait = Duration::from_millis(50);
        let mut first = b.start();
        let mut second = b.start();
        assert_eq!(first.admit(wait).await, Admission::Immediate);
        assert_eq!(second.admit(wait).await, Admission::Immediate);
        let mut third = b.start();
        assert_eq!(b.in_flight(), 3, "a request in line counts as in flight");
        assert_eq!(third.admit(wait).await, Admission::TimedOut);
        drop(third);
        let mut fourth = b.start();
        let waiting = tokio::spawn(async move { (fourth.admit(Duration::from_secs(5)).await, fourth) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        let (admission, _fourth) = waiting.await.unwrap();
        assert_eq!(admission, Admission::Queued, "a freed slot goes to the request in line");
        assert_eq!(b.in_flight(), 2);
    }

    #[test]
    fn registry_keeps_state_across_syncs_and_prunes() {
        let reg = Registry::default();
        let a = SocketAddr::from(([10, 0, 0, 1], 1));
        let first = reg.sync([a]);
        let _guard = first[&a].start();
        let second = reg.sync([a, SocketAddr::from(([10, 0, 0, 2], 1))]);
        assert_eq!(second[&a].in_flight(), 1);
        assert_eq!(reg.sync([]).len(), 0);
    }

    #[test]
    fn ejection_is_the_operators() {
        let addr = SocketAddr::from(([10, 0, 0, 9], 80));
        let never = Registry::with_ejection(
            8,
            Ejection {
                after: 0,
                ..Ejection::default()
            },
        );
        let b = never.sync([addr])[&addr].clone();
        for _ in 0..10 {
            assert!(!b.record_connect_failure());
        }
        assert!(b.available(), "0: never ejected");
        let once = Ejection {
            after: 1,
            base: Duration::from_millis(40),
            max: Duration::from_millis(60),
        };
        let reg = Registry::with_ejection(8, once);
        let b = reg.sync([addr])[&addr].clone();
        assert!(b.record_connect_failure(), "ejected at the first failure");
        assert!(!b.available());
        std::thread::sleep(Duration::from_millis(50));
        assert!(b.available(), "back after the base period");
        assert!(b.record_connect_failure());
        std::thread::sleep(Duration::from_millis(65));
        assert!(
            b.available(),
            "the doubled period (80 ms) is capped at the maximum (60 ms)"
        );
    }
}
