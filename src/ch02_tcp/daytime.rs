//! The daytime service ([RFC 867](https://www.rfc-editor.org/rfc/rfc867)):
//! the server ignores anything the client sends, writes the date and time as
//! one line of text, and closes. The smallest useful TCP server; the client
//! reads until EOF, which is how it knows the answer is complete.

use std::ffi::c_char;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::sys::socket::SockaddrStorage;

use super::calls::{accept_peer, close_fd, connect_to, listen_on, wait_readable_or_stop};
use crate::kit::accept::{self, AcceptError};
use crate::kit::stop::Woke;
use crate::kit::{Error, Result};
use crate::say;

/// The time now, UTC, in RFC 867's suggested form:
/// `Sunday, November 23, 2025 23:41:07-UTC`. Built with the C library's
/// `time(2)`, `gmtime_r(3)` and `strftime(3)`.
pub fn daytime_now() -> Result<String> {
    // SAFETY: time() accepts a null pointer and then only returns the value.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    let mut tm = MaybeUninit::<libc::tm>::uninit();
    // SAFETY: `now` is a valid time_t and `tm` points to writable space for
    // one struct tm, which gmtime_r fills in when it returns non-null.
    if unsafe { libc::gmtime_r(&now, tm.as_mut_ptr()) }.is_null() {
        return Err(Error::last_os("gmtime_r"));
    }
    // SAFETY: gmtime_r returned non-null, so it initialised `tm`.
    let tm = unsafe { tm.assume_init() };
    let mut buf = [0u8; 96];
    let format = c"%A, %B %d, %Y %H:%M:%S-UTC";
    // SAFETY: `buf` is writable for `buf.len()` bytes, `format` is a
    // NUL-terminated C string and `tm` a valid struct tm; strftime writes at
    // most `buf.len()` bytes and returns how many (0 if they did not fit).
    let n = unsafe {
        libc::strftime(
            buf.as_mut_ptr().cast::<c_char>(),
            buf.len(),
            format.as_ptr(),
            &tm,
        )
    };
    if n == 0 {
        return Err(Error::msg("strftime: the date did not fit"));
    }
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Serve daytime on `listener` until `stop` is readable: accept, write one
/// line (`\r\n`-terminated, as the old Internet services do), close.
/// Returns how many clients got the time. A client that resets before we
/// write costs one error message, never the server.
pub fn serve_daytime(listener: BorrowedFd<'_>, stop: BorrowedFd<'_>) -> Result<u64> {
    let mut served = 0;
    loop {
        if wait_readable_or_stop(listener, stop, None)? == Woke::Stop {
            return Ok(served);
        }
        let (conn, peer) = match accept_peer("daytime", listener) {
            Ok(accepted) => accepted,
            Err(e) => match accept::triage("daytime", &e) {
                AcceptError::Again | AcceptError::Dropped => continue,
                AcceptError::OutOfFds => {
                    accept::back_off(stop);
                    continue;
                }
                AcceptError::Fatal => return Err(e),
            },
        };
        let line = format!("{}\r\n", daytime_now()?);
        let raw = conn.as_raw_fd();
        // send + MSG_NOSIGNAL: a client already gone gives ECONNRESET or
        // EPIPE, never SIGPIPE.
        match nix::sys::socket::send(
            raw,
            line.as_bytes(),
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        ) {
            Ok(n) => {
                say!("daytime", "send({raw}, {:?}, MSG_NOSIGNAL) = {n}", line);
                served += 1;
            }
            Err(errno) => say!(
                "daytime",
                "send({raw}) to {peer}: {} (that client only)",
                crate::kit::error::errno_text(errno)
            ),
        }
        if let Err(e) = close_fd("daytime", conn) {
            say!("daytime", "{e}");
        }
    }
}

/// The `daytime-server` subcommand.
pub fn run_server(addr: &SockaddrStorage, stop: BorrowedFd<'_>) -> Result<()> {
    let was_quiet = crate::kit::narrate::is_quiet();
    crate::kit::narrate::set_quiet(true);
    let listening = listen_on("daytime", addr, 16);
    crate::kit::narrate::set_quiet(was_quiet);
    let (listener, bound) = listening.map_err(super::echo::with_hint)?;
    println!("listening on {bound}");
    let port = crate::kit::addr::port(&bound).unwrap_or(0);
    crate::kit::narrate::note(format!(
        "try: nc 127.0.0.1 {port}  or  ch02_tcp daytime-client --addr {bound}"
    ));
    let served = serve_daytime(listener.as_fd(), stop)?;
    close_fd("daytime", listener)?;
    crate::kit::narrate::note(format!("stopped after {served} clients"));
    Ok(())
}

/// The `daytime-client` subcommand: connect, read until EOF (at most
/// `timeout`), print what came.
pub fn run_client(addr: &SockaddrStorage, timeout: Duration) -> Result<String> {
    let fd = connect_to("client", addr)?;
    let text = crate::kit::wait::read_to_end_within(&fd, 4096, timeout)?;
    say!(
        "client",
        "read({}) ... = 0 (EOF: the answer is complete)",
        fd.as_raw_fd()
    );
    close_fd("client", fd)?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}
