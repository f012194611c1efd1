//! Closing well, and telling how the other side closed: the chapter's
//! assignments.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{self, Shutdown};

use crate::kit::{Call, Error, Result, wait};

// ANCHOR: ch06_graceful_close
/// Close `fd` gracefully: tell the peer we are done sending, collect what
/// it still sends until it closes too, then close.
///
/// Task (UNP 6.6, "shutdown"):
/// 1. `shutdown(fd, SHUT_WR)`: the kernel sends FIN after any data still
///    queued. We can no longer write, but can still read.
/// 2. Read until EOF (`read` returns 0: the peer's FIN), keeping every byte,
///    but wait at most `timeout` in all (`kit::wait::wait_readable` with the
///    time that is left). If the deadline passes first, return an error
///    whose errno is `ETIMEDOUT`.
/// 3. Close the socket (drop the `OwnedFd`) in every case, and return the
///    bytes read.
///
/// Hint: `nix::sys::socket::shutdown(raw, Shutdown::Write)`,
/// `nix::unistd::read`; retry `EINTR`.
pub fn graceful_close(fd: OwnedFd, timeout: Duration) -> Result<Vec<u8>> {
    // BEGIN SOLUTION
    let raw = fd.as_raw_fd();
    socket::shutdown(raw, Shutdown::Write).call(format!("shutdown({raw}, SHUT_WR)"))?;
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = wait::wait_readable(&fd, left) {
            return Err(Error::sys(
                format!("graceful_close({raw}): no EOF within {timeout:?}"),
                e.errno().unwrap_or(Errno::ETIMEDOUT),
            ));
        }
        match nix::unistd::read(&fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys(format!("read({raw})"), e)),
        }
    }
    drop(fd);
    Ok(got)
    // END SOLUTION
}
// ANCHOR_END: ch06_graceful_close

/// How a peer ended the conversation, as seen from our side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerLeft {
    /// An orderly close: FIN. `bytes` of data came before it.
    Fin { bytes: usize },
    /// An abort: RST, seen as `ECONNRESET` (or `EPIPE`). `bytes` of data
    /// came before it.
    Reset { bytes: usize },
    /// Neither before the deadline: the peer is still there (or gone
    /// without a word, which looks the same). `bytes` of data came meanwhile.
    Silent { bytes: usize },
}

// ANCHOR: ch06_how_peer_left
/// Read from `fd` until the peer leaves or `timeout` passes, and say how
/// it left.
///
/// Task: loop, waiting for the socket to be readable with the time that is
/// left, then `read`:
/// - `Ok(0)` is EOF: the peer sent FIN → [`PeerLeft::Fin`].
/// - `Err(ECONNRESET)` (or `EPIPE`) means an RST arrived →
///   [`PeerLeft::Reset`].
/// - data: count it and go on.
/// - the deadline passing → [`PeerLeft::Silent`] (not an error).
///
/// Any other error is returned as an error. Count every data byte read.
///
/// Note: `poll` on a reset socket reports `POLLIN | POLLERR | POLLHUP`;
/// the `read` then returns the error: let `read` tell you.
pub fn how_peer_left(fd: impl AsFd, timeout: Duration) -> Result<PeerLeft> {
    // BEGIN SOLUTION
    let fd = fd.as_fd();
    let raw = fd.as_raw_fd();
    let deadline = Instant::now() + timeout;
    let mut bytes = 0;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match wait::wait_readable(fd, left) {
            Ok(()) => {}
            Err(e) if e.errno() == Some(Errno::ETIMEDOUT) => {
                return Ok(PeerLeft::Silent { bytes });
            }
            Err(e) => return Err(e),
        }
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return Ok(PeerLeft::Fin { bytes }),
            Ok(n) => bytes += n,
            Err(Errno::ECONNRESET | Errno::EPIPE) => return Ok(PeerLeft::Reset { bytes }),
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(e) => return Err(Error::sys(format!("read({raw})"), e)),
        }
    }
    // END SOLUTION
}
// ANCHOR_END: ch06_how_peer_left

// ANCHOR: ch06_half_close_exchange
/// Send all of `input` on `fd`, then half-close, and return every byte the
/// peer sends back until it closes.
///
/// Task: the client of a request/reply server that answers as it reads
/// (an echo, an upper-caser). Writing all the input first and reading the
/// replies afterwards deadlocks once the input is larger than the buffers:
/// the server blocks writing replies nobody reads, so it stops reading, so
/// our writes block. Instead (UNP 6.7, `str_cli` with `select` and
/// `shutdown`):
/// 1. Put the socket in nonblocking mode (`kit::net::set_nonblocking`).
/// 2. Loop with `poll`: ask for `POLLOUT` while input is left, and always
///    `POLLIN`. Write what the socket takes (`EAGAIN` is fine); read what has
///    arrived into the result.
/// 3. When all input is written, `shutdown(SHUT_WR)` once: the server reads
///    EOF and can still send its last replies.
/// 4. Keep reading until EOF; return everything read, with the socket back
///    in blocking mode.
///
/// Give up with an `ETIMEDOUT` error if the whole exchange takes longer than
/// `timeout`.
pub fn half_close_exchange(fd: impl AsFd, input: &[u8], timeout: Duration) -> Result<Vec<u8>> {
    // BEGIN SOLUTION
    let fd = fd.as_fd();
    let raw = fd.as_raw_fd();
    crate::kit::net::set_nonblocking(fd, true)?;
    let deadline = Instant::now() + timeout;
    let mut sent = 0;
    let mut shut = false;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if sent == input.len() && !shut {
            socket::shutdown(raw, Shutdown::Write).call(format!("shutdown({raw}, SHUT_WR)"))?;
            shut = true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::sys(
                format!(
                    "half_close_exchange({raw}): {sent} of {} bytes sent, no EOF within {timeout:?}",
                    input.len()
                ),
                Errno::ETIMEDOUT,
            ));
        }
        let mut events = PollFlags::POLLIN;
        if !shut {
            events |= PollFlags::POLLOUT;
        }
        let mut fds = [PollFd::new(fd, events)];
        let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128 - 1) as i32 + 1)
            .unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys(format!("poll({raw})"), e)),
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if !shut && revents.contains(PollFlags::POLLOUT) {
            match nix::unistd::write(fd, &input[sent..]) {
                Ok(n) => sent += n,
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => return Err(Error::sys(format!("write({raw})"), e)),
            }
        }
        if revents.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => return Err(Error::sys(format!("read({raw})"), e)),
            }
        }
    }
    crate::kit::net::set_nonblocking(fd, false)?;
    Ok(out)
    // END SOLUTION
}
// ANCHOR_END: ch06_half_close_exchange
