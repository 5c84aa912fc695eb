//! Idle backend connections kept per address, for either client: the lean client's
//! connections and hyper's senders share this one pool type, its bound and its pruning.
use std::net::SocketAddr;
use std::sync::Mutex;

/// Pooled connections kept per backend (idle, or finishing a response).
const MAX_IDLE_PER_BACKEND: usize = 256;

/// What a pooled connection can be used for right now.
pub(crate) enum ConnState {
    /// Free for the next request.
    Ready,
    /// Still finishing a response (hyper's connections go back to the pool at once and
    /// become ready when the body has been read).
    Busy,
    /// The backend closed it: it leaves the pool.
    Closed,
}

pub(crate) trait Pooled {
    /// Whether `state` is cheap enough to ask under the pool's lock (hyper's flags). When it
    /// costs a system call (the lean client's peek), the connection is taken out first and
    /// asked outside the lock, so requests to a hot backend do not queue behind the syscall.
    const CHEAP_STATE: bool = true;
    fn state(&self) -> ConnState;
}

/// What connections are pooled by: the backend's address, and for TLS connections also
/// the TLS target they were made for (`tls::TlsTarget::id`).
pub(crate) trait PoolKey: Copy + Eq + std::hash::Hash {
    fn addr(&self) -> SocketAddr;
}

impl PoolKey for SocketAddr {
    fn addr(&self) -> SocketAddr {
        *self
    }
}

impl PoolKey for (SocketAddr, u64) {
    fn addr(&self) -> SocketAddr {
        self.0
    }
}

pub(crate) struct Pool<C, K = SocketAddr> {
    /// foldhash: the map is read twice per request, SipHash's DoS resistance buys nothing
    /// for keys that come from the snapshot, not from clients.
    idle: Mutex<foldhash::HashMap<K, Vec<C>>>,
}

impl<C, K> Default for Pool<C, K> {
    fn default() -> Self {
        Pool {
            idle: Mutex::new(foldhash::HashMap::default()),
        }
    }
}

impl<C: Pooled, K: PoolKey> Pool<C, K> {
    /// A connection to `addr` ready for a request, the most recently used first (warm, and
    /// the others may time out); closed ones met on the way leave the pool.
    pub(crate) fn checkout(&self, addr: K) -> Option<C> {
        if !C::CHEAP_STATE {
            return self.checkout_then_ask(addr);
        }
        loop {
            let closed = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                let conns = idle.get_mut(&addr)?;
                let mut closed = None;
                for i in (0..conns.len()).rev() {
                    match conns[i].state() {
                        ConnState::Ready => return Some(conns.swap_remove(i)),
                        ConnState::Busy => {}
                        ConnState::Closed => {
                            closed = Some(conns.swap_remove(i));
                            break;
                        }
                    }
                }
                closed?
            };
            // Its socket is closed outside the lock.
            drop(closed);
        }
    }

    /// The most recent connection, asked for its state outside the lock.
    fn checkout_then_ask(&self, addr: K) -> Option<C> {
        loop {
            let conn = self
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&addr)?
                .pop()?;
            match conn.state() {
                ConnState::Ready => return Some(conn),
                // Not ready yet: back it goes, and there is no other to try first.
                ConnState::Busy => {
                    self.put(addr, conn);
                    return None;
                }
                ConnState::Closed => drop(conn),
            }
        }
    }

    /// Takes a connection (back), unless `addr` has its fill.
    pub(crate) fn put(&self, addr: K, conn: C) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let conns = idle.entry(addr).or_default();
        if conns.len() < MAX_IDLE_PER_BACKEND {
            conns.push(conn);
        }
    }

    /// Drops the connections whose key `live` refuses.
    pub(crate) fn retain_keys(&self, live: impl Fn(&K) -> bool) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| live(k));
    }

    /// Drops the connections to backends that are no longer routed.
    pub(crate) fn retain(&self, live: &impl Fn(&SocketAddr) -> bool) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| live(&k.addr()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(u8, ConnState);
    impl Pooled for Fake {
        fn state(&self) -> ConnState {
            match self.1 {
                ConnState::Ready => ConnState::Ready,
                ConnState::Busy => ConnState::Busy,
                ConnState::Closed => ConnState::Closed,
            }
        }
    }

    #[test]
    fn the_latest_ready_connection_comes_first_busy_ones_stay_closed_ones_go() {
        let pool = Pool::default();
        let addr = SocketAddr::from(([10, 0, 0, 1], 80));
        pool.put(addr, Fake(1, ConnState::Ready));
        pool.put(addr, Fake(2, ConnState::Busy));
        pool.put(addr, Fake(3, ConnState::Closed));
        assert_eq!(pool.checkout(addr).map(|c| c.0), Some(1));
        assert!(
            pool.checkout(addr).is_none(),
            "the busy one stays, the closed one is gone"
        );
        assert_eq!(pool.idle.lock().unwrap()[&addr].len(), 1);
        pool.retain(&|_| false);
        assert!(pool.checkout(addr).is_none());
    }

    #[test]
    fn a_backend_keeps_at_most_its_fill() {
        let pool = Pool::default();
        let addr = SocketAddr::from(([10, 0, 0, 1], 80));
        for i in 0..=MAX_IDLE_PER_BACKEND {
            pool.put(addr, Fake(i as u8, ConnState::Ready));
        }
        assert_eq!(pool.idle.lock().unwrap()[&addr].len(), MAX_IDLE_PER_BACKEND);
    }

    /// A connection whose state costs a syscall: asked outside the lock, latest first.
    struct Peeked(u8, bool);
    impl Pooled for Peeked {
        const CHEAP_STATE: bool = false;
        fn state(&self) -> ConnState {
            if self.1 {
                ConnState::Ready
            } else {
                ConnState::Closed
            }
        }
    }

    #[test]
    fn costly_states_are_asked_outside_the_lock_latest_first_closed_ones_dropped() {
        let pool = Pool::default();
        let addr = SocketAddr::from(([10, 0, 0, 1], 80));
        pool.put(addr, Peeked(1, true));
        pool.put(addr, Peeked(2, true));
        pool.put(addr, Peeked(3, false));
        assert_eq!(
            pool.checkout(addr).map(|c| c.0),
            Some(2),
            "the closed latest one is dropped"
        );
        assert_eq!(pool.checkout(addr).map(|c| c.0), Some(1));
        assert!(pool.checkout(addr).is_none());
    }
}
