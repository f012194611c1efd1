//! Bounded waits: every wait in the workbook has a deadline. A demo or a
//! test that waits on a socket waits for the socket itself (readable,
//! writable, a line) with [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html),
//! never with a sleep. An expired wait is reported as the poll call failing
//! with `ETIMEDOUT`.

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::error::{Error, Result};
use super::io::LineReader;

/// Wait until `fd` reports one of `events` (or an error or hang-up), for at
/// most `timeout`. Returns the `revents` poll reported. `EINTR` restarts the
/// wait with the time that is left.
pub fn wait_for(fd: impl AsFd, events: PollFlags, timeout: Duration) -> Result<PollFlags> {
    let fd = fd.as_fd();
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let call = || {
            format!(
                "poll(fd {}, {events:?}, {} ms)",
                fd.as_raw_fd(),
                left.as_millis()
            )
        };
        let mut fds = [PollFd::new(fd, events)];
        // Round up so a sub-millisecond remainder still waits.
        let ms = left.as_millis().min(i32::MAX as u128 - 1) as i32 + 1;
        let ms = if left.is_zero() { 0 } else { ms };
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) if Instant::now() >= deadline => {
                return Err(Error::sys(call(), Errno::ETIMEDOUT));
            }
            Ok(0) => continue,
            Ok(_) => return Ok(fds[0].revents().unwrap_or(PollFlags::empty())),
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(Error::sys(call(), errno)),
        }
    }
}

/// Wait until a read on `fd` will not block: data, EOF, a pending error, or
/// (for a listening socket) a connection ready for `accept`.
pub fn wait_readable(fd: impl AsFd, timeout: Duration) -> Result<()> {
    wait_for(fd, PollFlags::POLLIN, timeout).map(|_| ())
}

/// Wait until a write on `fd` will not block (or a nonblocking `connect`
/// has finished, one way or the other).
pub fn wait_writable(fd: impl AsFd, timeout: Duration) -> Result<()> {
    wait_for(fd, PollFlags::POLLOUT, timeout).map(|_| ())
}

/// Read the next line from `fd` through `reader`, waiting at most `timeout`
/// in all. `None` at EOF. Lines are capped at `max` bytes.
pub fn read_line_within(
    fd: impl AsFd,
    reader: &mut LineReader,
    max: usize,
    timeout: Duration,
) -> Result<Option<Vec<u8>>> {
    let fd = fd.as_fd();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(line) = reader.buffered_line() {
            return Ok(Some(line));
        }
        if reader.at_eof() {
            return reader.read_line(fd, max);
        }
        wait_readable(fd, deadline.saturating_duration_since(Instant::now()))?;
        reader.fill(fd)?;
        if reader.buffered_len() >= max && !reader.has_line() {
            return Err(Error::msg(format!("line longer than {max} bytes")));
        }
    }
}

/// Read until EOF, waiting at most `timeout` in all; at most `max` bytes.
pub fn read_to_end_within(fd: impl AsFd, max: usize, timeout: Duration) -> Result<Vec<u8>> {
    let fd = fd.as_fd();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        wait_readable(fd, deadline.saturating_duration_since(Instant::now()))?;
        match nix::unistd::read(fd, &mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(Error::sys(format!("read({})", fd.as_raw_fd()), errno)),
        }
        if out.len() > max {
            return Err(Error::msg(format!("more than {max} bytes before EOF")));
        }
    }
}
