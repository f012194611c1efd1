//! Options that change what the socket *does*: the two assignments of this
//! file set an option, and the tests watch the kernel behave differently.
//!
//! - [`set_read_timeout`]: `SO_RCVTIMEO` bounds a blocking read; after the
//!   timeout it fails with `EAGAIN` instead of waiting for ever.
//! - [`enable_keepalive`]: `SO_KEEPALIVE` with `TCP_KEEPIDLE`,
//!   `TCP_KEEPINTVL` and `TCP_KEEPCNT` makes the kernel probe an idle
//!   connection, and give up on it (`ETIMEDOUT`) when the probes go
//!   unanswered.

use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use nix::sys::socket::{self, sockopt};

use crate::kit::{Call, Error, Result};

/// **Assignment 5: bound a blocking read with `SO_RCVTIMEO`.**
///
/// A blocking `read`/`recv` on a socket whose peer says nothing waits for
/// ever. Set the receive timeout of `fd` to `timeout`, so that such a read
/// fails with `EAGAIN` (== `EWOULDBLOCK`) once `timeout` has passed without
/// data ([socket(7)](https://man7.org/linux/man-pages/man7/socket.7.html),
/// `SO_RCVTIMEO`). Data that arrives in time is read as usual.
///
/// - The option's value is a `struct timeval` (`libc::timeval`): whole
///   seconds in `tv_sec`, the rest in **micro**seconds in `tv_usec`
///   (0..=999_999). Round a fraction of a microsecond up, so that a tiny
///   timeout does not become 0.
/// - A timeval of 0 means "no timeout" to the kernel, the very opposite of
///   a short one: `Duration::ZERO` is an `Err` here, and the socket is left
///   as it was.
/// - Call `setsockopt(2)` yourself with libc (the raw form: a pointer to the
///   timeval and its size) or with nix's `sockopt::ReceiveTimeout` and a
///   `TimeVal`. Name the call and the errno in the error
///   (`crate::kit::Call::call` does it for a nix result).
///
/// Not `SO_SNDTIMEO`: that one bounds blocking *writes*. The kernel rounds
/// the value to its clock tick (`HZ`), so `getsockopt` may read back a
/// little more than you set; the tests compare with what an independent
/// `setsockopt` of the same timeval reads back.
pub fn set_read_timeout(fd: impl AsFd, timeout: Duration) -> Result<()> {
    // BEGIN SOLUTION
    let raw = fd.as_fd().as_raw_fd();
    if timeout.is_zero() {
        return Err(Error::msg(format!(
            "SO_RCVTIMEO on fd {raw}: a zero timeout would mean \"wait for ever\""
        )));
    }
    let micros = timeout.as_nanos().div_ceil(1000);
    let tv = libc::timeval {
        tv_sec: (micros / 1_000_000) as libc::time_t,
        tv_usec: (micros % 1_000_000) as libc::suseconds_t,
    };
    // SAFETY: `tv` is a live timeval and its true size is passed; `raw` is
    // an open fd borrowed from the caller for the call.
    let rc = unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(Error::last_os(format!(
            "setsockopt({raw}, SOL_SOCKET, SO_RCVTIMEO, {{{}, {}}})",
            tv.tv_sec, tv.tv_usec
        )));
    }
    Ok(())
    // END SOLUTION
}

/// **Assignment 6: keepalive, so an idle connection is checked.**
///
/// A connection on which nobody sends looks the same whether the peer is
/// quietly waiting or its machine died an hour ago: TCP sends nothing. With
/// keepalive the kernel sends a *probe* (an empty segment the peer must
/// ACK) after `idle_secs` without traffic, then every `interval_secs`; when
/// `probes` probes in a row go unanswered, it drops the connection and the
/// next call on the socket fails with `ETIMEDOUT`
/// ([tcp(7)](https://man7.org/linux/man-pages/man7/tcp.7.html)).
///
/// Set, on `fd`, in this order:
///
/// 1. `SOL_SOCKET, SO_KEEPALIVE` = 1 (without it the three below are
///    stored but nothing is ever sent);
/// 2. `IPPROTO_TCP, TCP_KEEPIDLE` = `idle_secs` (default
///    `/proc/sys/net/ipv4/tcp_keepalive_time`, 7200 s: two hours!);
/// 3. `IPPROTO_TCP, TCP_KEEPINTVL` = `interval_secs` (default
///    `tcp_keepalive_intvl`, 75 s);
/// 4. `IPPROTO_TCP, TCP_KEEPCNT` = `probes` (default
///    `tcp_keepalive_probes`, 9).
///
/// All four values are C `int`s. The kernel checks the ranges (1..=32767
/// seconds, 1..=127 probes) and answers `EINVAL` outside them: return that
/// error, naming the call, and do not check the ranges yourself. nix has
/// `sockopt::KeepAlive`, `TcpKeepIdle`, `TcpKeepInterval`, `TcpKeepCount`
/// (all `u32`); a value too large for an `int` is an `Err` too.
pub fn enable_keepalive(
    fd: impl AsFd,
    idle_secs: u32,
    interval_secs: u32,
    probes: u32,
) -> Result<()> {
    // BEGIN SOLUTION
    let fd = fd.as_fd();
    let raw = fd.as_raw_fd();
    for (name, value) in [
        ("TCP_KEEPIDLE", idle_secs),
        ("TCP_KEEPINTVL", interval_secs),
        ("TCP_KEEPCNT", probes),
    ] {
        if i32::try_from(value).is_err() {
            return Err(Error::msg(format!(
                "{name} = {value}: too large for an int"
            )));
        }
    }
    socket::setsockopt(&fd, sockopt::KeepAlive, &true)
        .call(format!("setsockopt({raw}, SOL_SOCKET, SO_KEEPALIVE, 1)"))?;
    socket::setsockopt(&fd, sockopt::TcpKeepIdle, &idle_secs).call(format!(
        "setsockopt({raw}, IPPROTO_TCP, TCP_KEEPIDLE, {idle_secs})"
    ))?;
    socket::setsockopt(&fd, sockopt::TcpKeepInterval, &interval_secs).call(format!(
        "setsockopt({raw}, IPPROTO_TCP, TCP_KEEPINTVL, {interval_secs})"
    ))?;
    socket::setsockopt(&fd, sockopt::TcpKeepCount, &probes).call(format!(
        "setsockopt({raw}, IPPROTO_TCP, TCP_KEEPCNT, {probes})"
    ))?;
    Ok(())
    // END SOLUTION
}
