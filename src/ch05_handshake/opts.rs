//! The TCP options this chapter leans on, which nix does not wrap:
//! `TCP_SYNCNT` (how many times `connect` resends its SYN) and
//! `TCP_DEFER_ACCEPT` (a listener that waits for data before waking
//! `accept`), both from [`tcp(7)`](https://man7.org/linux/man-pages/man7/tcp.7.html).
//! The raw `libc::setsockopt` form is the C API itself.

use std::os::fd::{AsFd, AsRawFd};

use crate::kit::tcp::{state_name, tcp_info};
use crate::kit::{Error, Result};

/// `setsockopt(fd, IPPROTO_TCP, name, &value, sizeof value)` for an `int`
/// option, in its raw C form.
pub fn set_tcp_int(fd: impl AsFd, name: libc::c_int, label: &str, value: i32) -> Result<()> {
    let raw = fd.as_fd().as_raw_fd();
    // SAFETY: the pointer and length describe `value`, an int that lives
    // across the call; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            raw,
            libc::IPPROTO_TCP,
            name,
            (&raw const value).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(Error::last_os(format!(
            "setsockopt({raw}, IPPROTO_TCP, {label}, {value})"
        )));
    }
    Ok(())
}

/// `getsockopt(fd, IPPROTO_TCP, name)` for an `int` option.
pub fn get_tcp_int(fd: impl AsFd, name: libc::c_int, label: &str) -> Result<i32> {
    let raw = fd.as_fd().as_raw_fd();
    let mut value: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: the pointers describe `value` and `len`, which outlive the
    // call; the kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            raw,
            libc::IPPROTO_TCP,
            name,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if rc == -1 {
        return Err(Error::last_os(format!(
            "getsockopt({raw}, IPPROTO_TCP, {label})"
        )));
    }
    Ok(value)
}

/// `TCP_SYNCNT`: give up `connect` after `count` SYN retransmissions
/// instead of `net.ipv4.tcp_syn_retries` (1..=127).
pub fn set_syncnt(fd: impl AsFd, count: i32) -> Result<()> {
    set_tcp_int(fd, libc::TCP_SYNCNT, "TCP_SYNCNT", count)
}

/// `TCP_DEFER_ACCEPT`: on a listener, wake `accept` only when data has
/// arrived (or the deferring period is over). The kernel rounds `secs` up to
/// a whole number of SYN-ACK retransmission periods: read it back with
/// [`defer_accept`].
pub fn set_defer_accept(fd: impl AsFd, secs: i32) -> Result<()> {
    set_tcp_int(fd, libc::TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT", secs)
}

/// `TCP_DEFER_ACCEPT` as the kernel stored it, in seconds.
pub fn defer_accept(fd: impl AsFd) -> Result<i32> {
    get_tcp_int(fd, libc::TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT")
}

/// The TCP state of a socket you hold, by name, from `TCP_INFO`.
pub fn state_of(fd: impl AsFd) -> Result<&'static str> {
    Ok(state_name(tcp_info(fd)?.state()))
}
