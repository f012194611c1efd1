//! Assignment 4: connected UDP. `connect(2)` on a datagram socket sends
//! nothing; it records a default peer, makes the kernel drop datagrams from
//! anyone else, and lets the kernel report the ICMP errors that peer's host
//! sends back: a datagram to a closed port makes the *next* call on the
//! socket fail with `ECONNREFUSED`.

use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags, SockaddrLike, SockaddrStorage};

use super::dgram;
use crate::kit::{Call, Error, Result, wait};

// ANCHOR: ch08_ask_connected
/// **Assignment (2 points):** ask `server` one question over *connected*
/// UDP and return its answer (the first datagram from it, at most 65536
/// bytes), or the error that says why there is none.
///
/// - [`dgram::udp_socket`] in the server's family, then
///   [`connect(2)`](https://man7.org/linux/man-pages/man2/connect.2.html)
///   it to `server` and [`send(2)`](https://man7.org/linux/man-pages/man2/send.2.html)
///   `query` (no address: the socket has a peer now).
/// - Wait at most `timeout` for the socket to become readable, then `recv`.
///   When the server's port is closed, the ICMP port-unreachable that came
///   back is waiting on the socket as an error: `recv` fails with
///   `ECONNREFUSED`. Return that error (its errno must be `ECONNREFUSED`).
/// - Datagrams from other addresses never reach a connected socket: the
///   kernel drops them, you need not check the source.
/// - No answer in time: an error with `ETIMEDOUT`.
pub fn ask_connected(server: &SockaddrStorage, query: &[u8], timeout: Duration) -> Result<Vec<u8>> {
    let family = server
        .family()
        .ok_or_else(|| Error::msg(format!("{server}: no address family")))?;
    // BEGIN SOLUTION
    let fd = dgram::udp_socket("client", family)?;
    let raw = fd.as_raw_fd();
    socket::connect(raw, server).call(format!("connect({raw}, {server})"))?;
    socket::send(raw, query, MsgFlags::empty())
        .call(format!("send({raw}, {} bytes)", query.len()))?;
    wait::wait_readable(&fd, timeout)?;
    let mut buf = vec![0u8; 65536];
    let n = socket::recv(raw, &mut buf, MsgFlags::MSG_DONTWAIT).call(format!("recv({raw})"))?;
    buf.truncate(n);
    Ok(buf)
    // END SOLUTION
}
// ANCHOR_END: ch08_ask_connected

/// What an *unconnected* socket learns from the same ICMP: nothing, unless
/// it asked for the error queue with `IP_RECVERR` (see the demo).
pub fn errno_is_refused(e: &Error) -> bool {
    e.errno() == Some(Errno::ECONNREFUSED)
}
