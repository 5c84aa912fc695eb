//! Handing the listening sockets over to the proxy that replaces this one, so that a restart
//! or an upgrade refuses no connection (what HAProxy's `-x` and Envoy's hot restart do).
//!
//! A proxy holding listeners offers them on an abstract unix socket named after its HTTP
//! address, in the namespace its listeners live in (`offer`). A starting proxy asks there
//! first (`take`). It gets the same kernel sockets, already listening: connections queue on
//! them throughout, and whichever process accepts first serves. The old proxy accepts until
//! it drains (SIGTERM); the new one from when its first routes are in place.
//!
//! An abstract name, because it goes away with its last holder (nothing is left behind by a
//! crash) and lives in a network namespace, like the listeners it names. Sockets are handed
//! only to, and taken only from, a process with this process's user id.
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, recvmsg, sendmsg, sockopt, ControlMessage, ControlMessageOwned, MsgFlags};
use tokio::sync::watch;

/// How long a starting proxy waits for the running one's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a holder checks for a successor, for its stop, and (while another holder has
/// the name) whether the name is free again.
const TICK: Duration = Duration::from_millis(250);
/// The most sockets one handover carries (HTTP and HTTPS today).
const MAX_SOCKETS: usize = 4;

/// The abstract name under which the listeners of the proxy serving `http` are offered.
pub fn name(http: SocketAddr) -> String {
    format!("interlock/listeners/{http}")
}

/// Listening sockets received from a running proxy.
pub struct Received {
    pub from_pid: i32,
    pub listeners: Vec<TcpListener>,
}

/// Asks the proxy offering `http`'s listeners for them; `None` when no proxy offers them.
/// Runs in the namespace the listeners live in.
pub fn take(http: SocketAddr) -> Result<Option<Received>> {
    let name = name(http);
    let stream = match UnixStream::connect_addr(&UnixAddr::from_abstract_name(&name)?) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("asking @{name} for the listening sockets")),
    };
    let from_pid = same_user(&stream)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; MAX_SOCKETS]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .with_context(|| format!("receiving the listening sockets from process {from_pid} (@{name})"))?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            fds.extend(raw.into_iter().map(received));
        }
    }
    if fds.is_empty() {
        return Ok(None);
    }
    let mut listeners = Vec::with_capacity(fds.len());
    for fd in fds {
        if !getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false) {
            bail!("process {from_pid} (@{name}) handed over a socket that is not listening");
        }
        listeners.push(TcpListener::from(fd));
    }
    Ok(Some(Received { from_pid, listeners }))
}

/// Offers `listeners` under `name(http)` from a thread in `netns` until `stop` turns true:
/// from its drain on, this process lets go of the name, and a successor holding the same
/// sockets takes it.
pub fn offer(netns: Option<PathBuf>, http: SocketAddr, listeners: Vec<OwnedFd>, stop: watch::Receiver<bool>) {
    let spawned = std::thread::Builder::new().name("handover".into()).spawn(move || {
        if let Some(path) = &netns {
            if let Err(e) = crate::netns::enter(path) {
                tracing::warn!("not offering the listening sockets to a successor: {e:#}");
                return;
            }
        }
        serve(http, &listeners, &stop);
    });
    if let Err(e) = spawned {
        tracing::warn!("not offering the listening sockets to a successor: {e}");
    }
}

fn serve(http: SocketAddr, listeners: &[OwnedFd], stop: &watch::Receiver<bool>) {
    let name = name(http);
    let mut server: Option<UnixListener> = None;
    let mut warned = false;
    while !*stop.borrow() {
        let Some(unix) = &server else {
            // Another holder (the proxy these sockets came from, still draining) may have the
            // name: the first of us to find it free offers them from then on.
            match UnixAddr::from_abstract_name(&name).and_then(|a| UnixListener::bind_addr(&a)) {
                Ok(l) if l.set_nonblocking(true).is_ok() => server = Some(l),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
                Err(e) if !warned => {
                    tracing::warn!("cannot offer the listening sockets under @{name}: {e}");
                    warned = true;
                }
                Err(_) => {}
            }
            std::thread::sleep(TICK);
            continue;
        };
        if !readable(unix, TICK) {
            continue;
        }
        match unix.accept() {
            Ok((stream, _)) => match hand_over(&stream, listeners) {
                Ok(pid) => tracing::info!(pid, "handed the listening sockets over to a new proxy"),
                Err(e) => tracing::warn!("handing the listening sockets over: {e:#}"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                tracing::warn!("accepting on @{name}: {e}");
                std::thread::sleep(TICK);
            }
        }
    }
}

fn hand_over(stream: &UnixStream, listeners: &[OwnedFd]) -> Result<i32> {
    let pid = same_user(stream)?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    let fds: Vec<RawFd> = listeners.iter().map(|l| l.as_raw_fd()).collect();
    sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(b"L")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .with_context(|| format!("sending the listening sockets to process {pid}"))?;
    Ok(pid)
}

/// The peer's pid, when it runs with this process's user id.
fn same_user(stream: &UnixStream) -> Result<i32> {
    let peer = getsockopt(stream, sockopt::PeerCredentials).context("reading the peer's credentials")?;
    let me = nix::unistd::geteuid().as_raw();
    if peer.uid() != me {
        bail!(
            "process {} runs as uid {}, not {me}: no listening sockets for it",
            peer.pid(),
            peer.uid()
        );
    }
    Ok(peer.pid())
}

/// Waits up to `timeout` for `unix` to have a connection to accept.
fn readable(unix: &UnixListener, timeout: Duration) -> bool {
    let mut fds = [PollFd::new(unix.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    matches!(poll(&mut fds, timeout), Ok(n) if n > 0) && fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLIN))
}

/// Takes ownership of a descriptor received in an SCM_RIGHTS message. nix 0.32 hands them
/// over as raw numbers; this is the one place they become owned.
#[allow(unsafe_code)]
fn received(fd: RawFd) -> OwnedFd {
    // SAFETY: the kernel installed this descriptor in this process for this message just
    // now; nothing else holds it, and each one is owned here once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_successor_gets_the_same_listening_socket_and_nobody_else_offers_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(take(addr).unwrap().is_none(), "nothing offered yet");

        let (stop_tx, stop_rx) = watch::channel(false);
        offer(
            None,
            addr,
            vec![listener.as_fd().try_clone_to_owned().unwrap()],
            stop_rx,
        );
        let received = (0..40)
            .find_map(|_| {
                std::thread::sleep(Duration::from_millis(50));
                take(addr).unwrap()
            })
            .expect("the offer answers");
        assert_eq!(received.from_pid as u32, std::process::id());
        assert_eq!(received.listeners.len(), 1);
        let got = &received.listeners[0];
        assert_eq!(got.local_addr().unwrap(), addr);
        // The same socket: a connection made now is accepted through the received one.
        drop(listener);
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (_, peer) = got.accept().unwrap();
        assert_eq!(peer.ip(), addr.ip());

        stop_tx.send_replace(true);
        std::thread::sleep(TICK * 3);
        assert!(take(addr).unwrap().is_none(), "a stopped offer lets go of the name");
    }
}
