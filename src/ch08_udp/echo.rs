//! Assignment 1: a UDP echo server (RFC 862 over UDP) that never blocks,
//! never truncates silently, and serves every client from one socket.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::mpsc::Sender;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{self, MsgFlags};

use super::dgram::{self, MAX_UDP6};
use crate::kit::{Error, Result};

/// How the echo server runs.
#[derive(Debug, Clone)]
pub struct EchoConfig {
    /// The receive buffer handed to `recvmsg`. A datagram longer than this
    /// is truncated by the kernel: the server must notice (`MSG_TRUNC`),
    /// report it, and not echo the stump.
    pub buf_len: usize,
    /// Where to report each event (tests listen here); `None` to stay quiet.
    pub events: Option<Sender<EchoEvent>>,
}

impl Default for EchoConfig {
    fn default() -> Self {
        EchoConfig {
            // Big enough for the largest datagram of either family.
            buf_len: MAX_UDP6 + 1,
            events: None,
        }
    }
}

/// What happened to one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchoEvent {
    /// Echoed `len` bytes to `peer`.
    Echoed { peer: String, len: usize },
    /// A datagram of `len` bytes did not fit the `buf_len`-byte buffer: it
    /// was not echoed.
    Truncated {
        peer: String,
        len: usize,
        buf_len: usize,
    },
    /// The echo to `peer` could not be sent (`EAGAIN`: our send buffer is
    /// full; `ECONNREFUSED`: an earlier echo hit a closed port). Dropped.
    SendFailed { peer: String, errno: i32 },
}

/// What the server did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EchoStats {
    /// Datagrams echoed.
    pub echoed: u64,
    /// Datagrams that did not fit and were not echoed.
    pub truncated: u64,
    /// Echoes the kernel refused to send.
    pub send_failed: u64,
}

impl EchoStats {
    fn record(&mut self, event: &EchoEvent, config: &EchoConfig) {
        match event {
            EchoEvent::Echoed { .. } => self.echoed += 1,
            EchoEvent::Truncated { .. } => self.truncated += 1,
            EchoEvent::SendFailed { .. } => self.send_failed += 1,
        }
        if let Some(tx) = &config.events {
            let _ = tx.send(event.clone());
        }
    }
}

// ANCHOR: ch08_serve_echo
/// **Assignment (3 points):** serve UDP echo on `sock` until `stop` is
/// readable (a byte, EOF, or a signal on a signalfd), then return the
/// counts.
///
/// - Make `sock` nonblocking, and wait for `sock` and `stop` together with
///   [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html). The
///   server must never block in `recvmsg` or `sendto`: one slow or gone
///   client must not stop the others.
/// - Receive with [`dgram::recv_datagram`] (`recvmsg` with `MSG_TRUNC`) into
///   a buffer of `config.buf_len` bytes. A datagram that did not fit
///   (`truncated`) is reported as [`EchoEvent::Truncated`] with its real
///   length, and not echoed.
/// - Echo the others whole to the address they came from
///   ([`sendto(2)`](https://man7.org/linux/man-pages/man2/sendto.2.html)
///   with `MSG_DONTWAIT`), and report [`EchoEvent::Echoed`]; a failed send
///   is [`EchoEvent::SendFailed`] and the server goes on. A receive that
///   fails with `ECONNREFUSED` (an ICMP from an earlier echo to a closed
///   port) is not the server's end either.
/// - Report every event with `stats.record(&event, &config)`.
pub fn serve_echo(sock: OwnedFd, stop: impl AsFd, config: EchoConfig) -> Result<EchoStats> {
    let stop = stop.as_fd();
    let mut stats = EchoStats::default();
    // BEGIN SOLUTION
    crate::kit::net::set_nonblocking(&sock, true)?;
    let raw = sock.as_raw_fd();
    loop {
        let mut fds = [
            PollFd::new(sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop, PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(Error::sys(format!("poll({raw}, stop)"), errno)),
        }
        if fds[1].any().unwrap_or(false) {
            return Ok(stats);
        }
        // Drain what is queued, a bounded batch at a time.
        for _ in 0..64 {
            let d = match dgram::recv_datagram(&sock, config.buf_len, MsgFlags::MSG_DONTWAIT) {
                Ok(d) => d,
                Err(e) if e.errno() == Some(Errno::EAGAIN) => break,
                Err(e) if e.errno() == Some(Errno::ECONNREFUSED) => continue,
                Err(e) => return Err(e),
            };
            let Some(from) = d.from else { continue };
            let peer = from.to_string();
            if d.truncated {
                let event = EchoEvent::Truncated {
                    peer,
                    len: d.len,
                    buf_len: config.buf_len,
                };
                stats.record(&event, &config);
                continue;
            }
            let event = match socket::sendto(raw, &d.data, &from, MsgFlags::MSG_DONTWAIT) {
                Ok(_) => EchoEvent::Echoed { peer, len: d.len },
                Err(errno) => EchoEvent::SendFailed {
                    peer,
                    errno: errno as i32,
                },
            };
            stats.record(&event, &config);
        }
    }
    // END SOLUTION
}
// ANCHOR_END: ch08_serve_echo
