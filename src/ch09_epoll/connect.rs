//! A `connect` that gives up when you say: the nonblocking connect.
//!
//! A blocking `connect` to a host that does not answer waits for the
//! kernel's SYN retries (`net.ipv4.tcp_syn_retries`, two minutes or so).
//! Nonblocking, it returns `EINPROGRESS` at once; the socket becomes
//! *writable* when the handshake has finished, one way or the other, and
//! `getsockopt(SO_ERROR)` says which: 0, or the errno the connect would
//! have returned (`ECONNREFUSED`, `ETIMEDOUT`, `EHOSTUNREACH`…).

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, SockFlag, SockType, SockaddrLike, SockaddrStorage, sockopt,
};

use crate::kit::{Call, Error, Result, net, wait};

/// **Assignment 3 (nonblocking connect with a deadline).** Connect a TCP
/// socket to `addr`, waiting at most `timeout`; return it connected and
/// back in *blocking* mode.
///
/// 1. `socket(family of addr, SOCK_STREAM, SOCK_NONBLOCK | SOCK_CLOEXEC)`.
/// 2. `connect`: `Ok` (it can finish at once on loopback) → done;
///    `EINPROGRESS` → step 3; any other errno → return it.
/// 3. Wait until the socket is writable, at most `timeout`
///    ([`wait::wait_writable`], or your own epoll). Past the deadline:
///    return an error whose errno is `ETIMEDOUT` (and let the socket drop:
///    closing it abandons the handshake).
/// 4. Writable: `getsockopt(fd, SO_ERROR)`. Not 0 → return that errno
///    (`Errno::from_raw`), naming the call. Writable is *not* success.
/// 5. Clear `O_NONBLOCK` ([`net::set_nonblocking`]) and return the socket.
pub fn connect_within(addr: &SockaddrStorage, timeout: Duration) -> Result<OwnedFd> {
    // BEGIN SOLUTION
    let family = match addr.family() {
        Some(f @ (AddressFamily::Inet | AddressFamily::Inet6)) => f,
        other => return Err(Error::msg(format!("not an IP address: {other:?}"))),
    };
    let fd = socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .call("socket(SOCK_STREAM, SOCK_NONBLOCK)")?;
    let raw = fd.as_raw_fd();
    match socket::connect(raw, addr) {
        Ok(()) => {}
        Err(Errno::EINPROGRESS) => {
            if let Err(e) = wait::wait_writable(&fd, timeout) {
                if e.errno() == Some(Errno::ETIMEDOUT) {
                    return Err(Error::sys(
                        format!("connect({raw}, {addr}) within {} ms", timeout.as_millis()),
                        Errno::ETIMEDOUT,
                    ));
                }
                return Err(e);
            }
            let err = socket::getsockopt(&fd, sockopt::SocketError)
                .call(format!("getsockopt({raw}, SO_ERROR)"))?;
            if err != 0 {
                return Err(Error::sys(
                    format!("connect({raw}, {addr}) (from SO_ERROR)"),
                    Errno::from_raw(err),
                ));
            }
        }
        Err(errno) => return Err(Error::sys(format!("connect({raw}, {addr})"), errno)),
    }
    net::set_nonblocking(&fd, false)?;
    Ok(fd)
    // END SOLUTION
}
