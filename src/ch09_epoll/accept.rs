//! Accepting on a nonblocking listener: every waiting connection, and
//! what to do when the process has no fd left (`EMFILE`).
//!
//! A listener with connections waiting is readable. If `accept` fails with
//! `EMFILE`, the connection stays in the queue, the listener stays
//! readable, and a level-triggered loop wakes again at once, forever: 100 %
//! CPU serving nobody. The **reserve fd** trick (libev's and nginx's): keep
//! one spare fd open (on `/dev/null`); when `accept` says `EMFILE`, close
//! the spare, accept the connection into its slot, close that connection
//! at once (the client sees EOF, not silence), and open the spare again.
//! The queue drains and the loop sleeps.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::socket::{self, SockFlag};
use nix::sys::stat::Mode;

use crate::kit::{Call, Error, Result};

/// A spare fd, held so that it can be given up when the process runs out.
#[derive(Debug)]
pub struct Reserve {
    spare: Option<OwnedFd>,
}

impl Reserve {
    /// Open the spare: `open("/dev/null", O_RDONLY | O_CLOEXEC)`.
    pub fn new() -> Result<Reserve> {
        Ok(Reserve {
            spare: Some(open_spare()?),
        })
    }

    /// Is the spare open?
    pub fn held(&self) -> bool {
        self.spare.is_some()
    }

    /// Close the spare (its fd number is free again). Returns whether there
    /// was one to close.
    pub fn release(&mut self) -> bool {
        self.spare.take().is_some()
    }

    /// Open the spare again, if it is not open. Fails with `EMFILE` if the
    /// slot was taken meanwhile.
    pub fn restore(&mut self) -> Result<()> {
        if self.spare.is_none() {
            self.spare = Some(open_spare()?);
        }
        Ok(())
    }
}

fn open_spare() -> Result<OwnedFd> {
    open(
        "/dev/null",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .call("open(\"/dev/null\", O_RDONLY | O_CLOEXEC)")
}

/// What one [`accept_all`] did.
#[derive(Debug, Default)]
pub struct Accepted {
    /// The new connections, nonblocking and close-on-exec.
    pub fds: Vec<OwnedFd>,
    /// Connections accepted only to be closed at once, for lack of fds.
    pub shed: usize,
}

/// **Assignment 4 (EMFILE survival).** Accept every connection waiting on
/// the nonblocking `listener`, until `accept4` says `EAGAIN`.
///
/// - `accept4(listener, SOCK_NONBLOCK | SOCK_CLOEXEC)` in a loop; wrap each
///   fd in an `OwnedFd` at once and push it onto `fds`.
/// - `EAGAIN`: the queue is empty, return. Under edge-triggered epoll you
///   will not be told again, so never stop before this.
/// - `EINTR`, `ECONNABORTED`, `EPROTO`: that one connection is gone; carry on.
/// - `EMFILE` or `ENFILE`: out of fds. If `reserve` holds its spare,
///   [`Reserve::release`] it, accept one connection, drop it (close),
///   [`Reserve::restore`] the spare and count it in `shed`; then carry on.
///   Careful: `accept` looks for a free fd *before* it looks at the queue,
///   so `EMFILE` comes even when nobody waits; if the accept into the
///   spare's slot says `EAGAIN`, restore the spare and return.
///   If there is no spare (restoring failed), return what you have: the
///   caller retries later.
/// - Any other error is the listener's: return it, naming the call.
///
/// Wrong answers the tests catch: stopping after one accept (edge-triggered
/// epoll never reports the rest), treating `EMFILE` as fatal (the server
/// dies), ignoring it (the listener stays readable: a busy loop), and not
/// reopening the spare (the second time, a busy loop).
pub fn accept_all(listener: BorrowedFd<'_>, reserve: &mut Reserve) -> Result<Accepted> {
    // BEGIN SOLUTION
    let lfd = listener.as_raw_fd();
    let mut got = Accepted::default();
    loop {
        match socket::accept4(lfd, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC) {
            Ok(raw) => {
                // SAFETY: accept4 just returned this fd and nothing else owns
                // it; the OwnedFd becomes its only owner.
                got.fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
            Err(Errno::EAGAIN) => return Ok(got),
            Err(Errno::EINTR | Errno::ECONNABORTED | Errno::EPROTO) => continue,
            Err(Errno::EMFILE | Errno::ENFILE) => {
                if !reserve.release() {
                    return Ok(got);
                }
                // accept checks for a free fd before it looks at the queue:
                // EMFILE does not mean a connection is waiting.
                let waiting = match socket::accept4(lfd, SockFlag::SOCK_CLOEXEC) {
                    Ok(raw) => {
                        // SAFETY: as above; dropping it closes the connection.
                        drop(unsafe { OwnedFd::from_raw_fd(raw) });
                        got.shed += 1;
                        true
                    }
                    Err(Errno::EAGAIN) => false,
                    Err(_) => true,
                };
                if reserve.restore().is_err() || !waiting {
                    return Ok(got);
                }
            }
            Err(errno) => return Err(Error::sys(format!("accept4({lfd})"), errno)),
        }
    }
    // END SOLUTION
}
