//! [`timerfd_create(2)`](https://man7.org/linux/man-pages/man2/timerfd_create.2.html):
//! a timer you read like a socket. It becomes readable when it expires, so
//! an epoll loop waits for timeouts the same way it waits for data, with
//! no timeout arithmetic around `epoll_wait`. Called through raw `libc`
//! here (nix has it only behind a feature the workbook does not enable),
//! which is also what the C looks like.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;

use crate::kit::{Error, Result};

/// A one-shot monotonic timer on an fd.
#[derive(Debug)]
pub struct Timer {
    fd: OwnedFd,
}

impl Timer {
    /// `timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)`.
    pub fn new() -> Result<Timer> {
        // SAFETY: takes two integers, returns a new fd or -1.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw == -1 {
            return Err(Error::last_os(
                "timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK|TFD_CLOEXEC)",
            ));
        }
        // SAFETY: the fd was just created and nothing else owns it.
        Ok(Timer {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    /// `timerfd_settime`: expire once, `after` from now (a zero duration
    /// disarms it). Setting it again restarts it and clears any expiry not
    /// yet read.
    pub fn arm(&self, after: Duration) -> Result<()> {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec that outlives the call; the
        // old-value pointer may be null.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc == -1 {
            return Err(Error::last_os(format!(
                "timerfd_settime({}, {after:?})",
                self.fd.as_raw_fd()
            )));
        }
        Ok(())
    }

    /// Read the expiry count (8 bytes); 0 if it has not expired since it
    /// was last set or read (`EAGAIN`).
    pub fn expirations(&self) -> Result<u64> {
        let mut buf = [0u8; 8];
        match nix::unistd::read(&self.fd, &mut buf) {
            Ok(8) => Ok(u64::from_ne_bytes(buf)),
            Ok(n) => Err(Error::msg(format!(
                "timerfd read returned {n} bytes, not 8"
            ))),
            Err(Errno::EAGAIN) => Ok(0),
            Err(errno) => Err(Error::sys(
                format!("read(timerfd {})", self.fd.as_raw_fd()),
                errno,
            )),
        }
    }
}

impl AsFd for Timer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
