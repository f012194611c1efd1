//! What every design does with one connection: echo each byte back until
//! the peer closes. Also the refusal a bounded server sends.

use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, send};
use nix::unistd;

use crate::kit::io::writen;
use crate::kit::{Error, Result};

/// Bytes one `read` may bring in. On the serving thread's stack.
pub const CHUNK: usize = 16 * 1024;

/// Echo: `read` what the peer sent and `write` it all back, until EOF.
/// Returns the number of bytes echoed. A reset peer is an error that names
/// the call (`read(5): ECONNRESET`), never a panic.
pub fn serve(fd: impl AsFd) -> Result<u64> {
    let fd = fd.as_fd();
    let mut buf = [0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match unistd::read(fd, &mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(Error::sys(format!("read({})", fd.as_raw_fd()), errno)),
        };
        writen(fd, &buf[..n])?;
        total += n as u64;
    }
}

/// Tell a connection we will not serve it: one [`crate::ch07_threads::BUSY`]
/// line sent without blocking (`MSG_DONTWAIT`) and without risking SIGPIPE
/// (`MSG_NOSIGNAL`); the caller then closes it. Failing to send is not an
/// error worth stopping for: the peer may already be gone.
pub fn refuse(fd: impl AsFd) {
    let raw = fd.as_fd().as_raw_fd();
    let _ = send(
        raw,
        super::BUSY.as_bytes(),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
    );
}
