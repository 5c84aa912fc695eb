//! Where the proxy's HTTP(S) listening sockets come from: handed over by the proxy already
//! serving the address (`handover`), else bound here. Both happen in the network namespace
//! named by `listen_netns` when there is one: an agent in a container listens in the host's,
//! where the container that replaces it finds the same sockets.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpSocket};

use super::handover;

/// How long a taken port is retried while a handover may be under way (the name of a
/// proxy's offer is free for up to a tick while the holder changes).
const IN_USE_RETRIES: u32 = 8;
const IN_USE_WAIT: Duration = Duration::from_millis(250);

/// One listening address.
pub enum Socket {
    /// Bound, not yet listening: connections are refused until `listen`.
    Bound { addr: SocketAddr, socket: TcpSocket },
    /// Listening already: handed over by the proxy this one replaces, which accepts on it
    /// until this one does.
    HandedOver {
        addr: SocketAddr,
        listener: std::net::TcpListener,
    },
}

impl Socket {
    pub fn listen(self) -> Result<TcpListener> {
        let listener = match self {
            Socket::Bound { addr, socket } => socket
                .listen(1024)
                .with_context(|| format!("cannot listen on {addr}"))?,
            Socket::HandedOver { addr, listener } => {
                listener.set_nonblocking(true)?;
                TcpListener::from_std(listener).with_context(|| format!("cannot accept on {addr}"))?
            }
        };
        delay_first_ack(&listener);
        Ok(listener)
    }
}

/// Quick ACKs off on the listening socket, which the connections it accepts inherit (as
/// HAProxy does in HTTP mode): the ACK of a client's first request then rides on the
/// answer instead of being a segment of its own, one segment fewer per new connection,
/// which the client's CPU processes too. The kernel does the same by itself once requests
/// and answers alternate on a connection; this only starts it with the first request.
fn delay_first_ack(listener: &TcpListener) {
    if let Err(e) = socket2::SockRef::from(listener).set_tcp_quickack(false) {
        tracing::debug!("TCP_QUICKACK stays on: {e}");
    }
}

pub struct Sockets {
    pub http: Socket,
    pub https: Option<Socket>,
    /// The process that handed its sockets over, if one did.
    pub from_pid: Option<i32>,
}

/// The sockets for `http` and `https`, in `netns`: handed over when `handover` is on and a
/// running proxy offers them, else bound (a port held by anything else is an error naming it).
pub fn acquire(http: SocketAddr, https: Option<SocketAddr>, netns: Option<PathBuf>, handover: bool) -> Result<Sockets> {
    crate::netns::run_in(netns, move || {
        let mut retries = 0;
        loop {
            match try_acquire(http, https, handover) {
                Err(e) if handover && retries < IN_USE_RETRIES && in_use(&e) => {
                    retries += 1;
                    std::thread::sleep(IN_USE_WAIT);
                }
                done => return done,
            }
        }
    })
}

fn try_acquire(http: SocketAddr, https: Option<SocketAddr>, handover: bool) -> Result<Sockets> {
    let received = match handover.then(|| handover::take(http)).transpose() {
        Ok(r) => r.flatten(),
        Err(e) => {
            tracing::warn!("binding the listening sockets afresh: {e:#}");
            None
        }
    };
    let from_pid = received.as_ref().map(|r| r.from_pid);
    let mut handed = received.map(|r| r.listeners).unwrap_or_default();
    let mut socket = |addr: SocketAddr| -> Result<Socket> {
        // A received socket not configured here any more is closed (dropped) below.
        match handed.iter().position(|l| l.local_addr().ok() == Some(addr)) {
            Some(i) => Ok(Socket::HandedOver {
                addr,
                listener: handed.swap_remove(i),
            }),
            None => bind(addr),
        }
    };
    let sockets = Sockets {
        http: socket(http)?,
        https: https.map(&mut socket).transpose()?,
        from_pid,
    };
    Ok(sockets)
}

fn bind(addr: SocketAddr) -> Result<Socket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .with_context(|| format!("cannot make a socket for {addr}"))?;
    // As `TcpListener::bind` does: a restarted proxy can bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    Ok(Socket::Bound { addr, socket })
}

fn in_use(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::AddrInUse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_taken_by_another_program_is_an_error_naming_it() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = other.local_addr().unwrap();
        let e = acquire(addr, None, None, false).err().expect("the port is taken");
        assert!(format!("{e:#}").contains(&addr.to_string()), "{e:#}");
        assert!(in_use(&e), "{e:#}");
    }

    #[test]
    fn without_a_running_proxy_the_sockets_are_bound_here() {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let sockets = acquire(free, None, None, true).unwrap();
        assert!(matches!(sockets.http, Socket::Bound { .. }));
        assert_eq!(sockets.from_pid, None);
    }
}
