//! Graceful shutdown: stop accepting, give the connections still open a
//! deadline to finish by themselves, cut the rest, and return.
//!
//! The signal reaches the accept loop as a readable fd: the binary uses
//! `kit::stop::Stop` (a signalfd for SIGINT and SIGTERM); tests and the demo
//! use a [`Trigger`], the classic *self-pipe*. Either way the accept loop
//! polls the listener and the stop fd together and never sleeps.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::{pipe2, write};

use super::live::Live;
use crate::kit::{Call, Error, Result};

/// A self-pipe: [`Trigger::fire`] writes one byte, after which the read end
/// is readable for every thread that polls it, for good (nobody reads it).
/// That makes it a broadcast: one `fire` stops every accept loop.
#[derive(Debug)]
pub struct Trigger {
    read: OwnedFd,
    write: OwnedFd,
}

impl Trigger {
    /// `pipe2(O_NONBLOCK | O_CLOEXEC)`.
    pub fn new() -> Result<Trigger> {
        let (read, write) =
            pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).call("pipe2(O_NONBLOCK | O_CLOEXEC)")?;
        Ok(Trigger { read, write })
    }

    /// Make [`Trigger::fd`] readable. Firing twice is harmless.
    pub fn fire(&self) {
        // EAGAIN would mean the pipe is full: it is readable already.
        let _ = write(&self.write, b"!");
    }

    /// The end to poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

/// How a [`drain`] went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Connections open when the drain began.
    pub open: usize,
    /// Of those, how many were still open at the deadline and were cut.
    pub cut: usize,
}

/// How long cut connections get to leave before the drain gives up.
pub const CUT_WAIT: Duration = Duration::from_secs(2);

// ANCHOR: ch07_drain
/// **Assignment.** Drain a server that has stopped accepting: wait (with
/// [`Live::wait_until`]) up to `grace` for every connection in `live` to
/// finish by itself. If some are still open at the deadline, cut them all
/// with [`Live::cut_all`] (`shutdown(fd, SHUT_RDWR)`: their threads' blocked
/// reads return EOF) and wait up to [`CUT_WAIT`] for them to leave; if they
/// still have not, that is an error.
///
/// Return how many connections were open when you began, and how many you
/// cut. Do not sleep: the wait on `live` wakes as soon as a connection
/// leaves.
pub fn drain(live: &Live, grace: Duration) -> Result<Drained> {
    // BEGIN SOLUTION
    let open = live.conns();
    if live.wait_until(grace, |conns, _| conns == 0) {
        return Ok(Drained { open, cut: 0 });
    }
    let cut = live.cut_all()?;
    if !live.wait_until(CUT_WAIT, |conns, _| conns == 0) {
        return Err(Error::sys(
            format!(
                "drain: {} connection(s) still open after the cut",
                live.conns()
            ),
            Errno::ETIMEDOUT,
        ));
    }
    Ok(Drained { open, cut })
    // END SOLUTION
}
// ANCHOR_END: ch07_drain
