//! Assignment 1: the loops behind `writen` and `readn`, counting their calls.
//!
//! TCP is a byte stream: one `write` may be cut into many `read`s, many
//! `write`s may arrive in one `read`, and a `write` may take fewer bytes than
//! you offered. `kit::io::readn` and `kit::io::writen` hide that; here you
//! write the loops yourself, and count how many calls they needed, so the
//! tests can show that more than one happened.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::unistd;

use crate::kit::wait;
use crate::kit::{Error, Result};

/// How long [`write_all_counting`] and [`read_exact_counting`] wait for a
/// nonblocking fd to become ready before they give up with `ETIMEDOUT`.
pub const READY_WAIT: Duration = Duration::from_secs(10);

// ANCHOR: ch02_write_all_counting
/// Write **all** of `buf` to `fd` with
/// [`write(2)`](https://man7.org/linux/man-pages/man2/write.2.html) and
/// return how many `write` calls *moved bytes* (returned a count > 0).
///
/// - `write` may take only part of what you offer (a *short write*): carry on
///   from where it stopped, until every byte is written.
/// - `EINTR` (a signal arrived before anything was written): just call again.
/// - `EAGAIN` (the fd is nonblocking and the send buffer is full): wait until
///   the fd is writable (`kit::wait::wait_writable(fd, READY_WAIT)`), then
///   call again. Calls that fail do not count.
/// - Any other error: return it, naming the call, e.g.
///   `Error::sys(format!("write({raw})"), errno)`.
///
/// An empty `buf` needs no call at all: return `Ok(0)`.
///
/// Hints: the loop is `kit::io::writen` plus a counter and the `EAGAIN` arm.
/// `nix::unistd::write(fd, &buf[done..])` takes any `impl AsFd`.
pub fn write_all_counting(fd: impl AsFd, buf: &[u8]) -> Result<usize> {
    let fd = fd.as_fd();
    // BEGIN SOLUTION
    let mut done = 0;
    let mut calls = 0;
    while done < buf.len() {
        match unistd::write(fd, &buf[done..]) {
            Ok(n) => {
                done += n;
                calls += 1;
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => wait::wait_writable(fd, READY_WAIT)?,
            Err(errno) => return Err(Error::sys(call_name("write", fd), errno)),
        }
    }
    Ok(calls)
    // END SOLUTION
}
// ANCHOR_END: ch02_write_all_counting

// ANCHOR: ch02_read_exact_counting
/// Read from `fd` with [`read(2)`](https://man7.org/linux/man-pages/man2/read.2.html)
/// until `buf` is full or the peer closes (EOF), and return
/// `(bytes read, read calls that returned data)`.
///
/// - `read` returns whatever has arrived, from 1 byte up to `buf.len()`:
///   keep reading into the rest of `buf` (a *short read* is normal).
/// - `read` returning 0 means EOF: the peer closed its side. Stop and
///   return what you have (fewer bytes than `buf.len()`); it is not an error.
/// - `EINTR`: call again. `EAGAIN` (nonblocking fd, nothing there yet): wait
///   until readable (`kit::wait::wait_readable(fd, READY_WAIT)`) and call
///   again. Neither counts as a call that returned data, nor does the final
///   `read` that returned 0.
/// - Any other error: return it, naming the call.
///
/// An empty `buf` needs no call: return `Ok((0, 0))`.
pub fn read_exact_counting(fd: impl AsFd, buf: &mut [u8]) -> Result<(usize, usize)> {
    let fd = fd.as_fd();
    // BEGIN SOLUTION
    let mut filled = 0;
    let mut calls = 0;
    while filled < buf.len() {
        match unistd::read(fd, &mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                calls += 1;
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => wait::wait_readable(fd, READY_WAIT)?,
            Err(errno) => return Err(Error::sys(call_name("read", fd), errno)),
        }
    }
    Ok((filled, calls))
    // END SOLUTION
}
// ANCHOR_END: ch02_read_exact_counting

/// `write(5)`: a call's name with its fd, for errors.
pub fn call_name(call: &str, fd: impl AsFd) -> String {
    use std::os::fd::AsRawFd;
    format!("{call}({})", fd.as_fd().as_raw_fd())
}
