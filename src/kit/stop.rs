//! Clean shutdown on Ctrl-C: the signal arrives as a readable fd.
//!
//! [`signalfd(2)`](https://man7.org/linux/man-pages/man2/signalfd.2.html)
//! turns SIGINT and SIGTERM into data on an fd, so a server loop can `poll`
//! its listener and the signal together and leave the loop by the front door:
//! no global flag, no `EINTR` games, no sleeping. The signals must be blocked
//! in every thread, so call [`Stop::on_ctrl_c`] in `main` before any thread
//! starts (threads inherit the mask).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::error::{Call, Error, Result};

/// A pending-shutdown signal you can poll.
#[derive(Debug)]
pub struct Stop {
    signals: SignalFd,
}

/// What [`Stop::wait`] saw first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// The watched fd is readable (for a listener: a connection is waiting).
    Ready,
    /// SIGINT or SIGTERM arrived: time to shut down.
    Stop,
    /// The timeout passed with neither.
    Timeout,
}

impl Stop {
    /// Block SIGINT and SIGTERM in this thread and open a nonblocking
    /// signalfd for them.
    pub fn on_ctrl_c() -> Result<Stop> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        mask.thread_block()
            .call("pthread_sigmask(SIG_BLOCK, {SIGINT, SIGTERM})")?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .call("signalfd(-1, {SIGINT, SIGTERM}, SFD_NONBLOCK)")?;
        Ok(Stop { signals })
    }

    /// The signalfd, to put in your own poll set.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.signals.as_fd()
    }

    /// Has a stop signal arrived? Never blocks; consumes the signal.
    pub fn requested(&self) -> Result<bool> {
        match self.signals.read_signal() {
            Ok(Some(_)) => Ok(true),
            Ok(None) | Err(Errno::EAGAIN) => Ok(false),
            Err(errno) => Err(Error::sys(
                format!("read(signalfd {})", self.fd().as_raw_fd()),
                errno,
            )),
        }
    }

    /// Wait until `fd` is readable or a stop signal arrives, for at most
    /// `timeout` (`None`: as long as it takes, which is what a server idle
    /// between clients does).
    pub fn wait(&self, fd: impl AsFd, timeout: Option<Duration>) -> Result<Woke> {
        let fd = fd.as_fd();
        let ms = match timeout {
            None => PollTimeout::NONE,
            Some(t) => PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX),
        };
        loop {
            let mut fds = [
                PollFd::new(fd, PollFlags::POLLIN),
                PollFd::new(self.fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, ms) {
                Ok(0) => return Ok(Woke::Timeout),
                Ok(_) => {
                    if self.requested()? {
                        return Ok(Woke::Stop);
                    }
                    if fds[0].any().unwrap_or(false) {
                        return Ok(Woke::Ready);
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    return Err(Error::sys(
                        format!("poll(fd {}, signalfd)", fd.as_raw_fd()),
                        errno,
                    ));
                }
            }
        }
    }
}
