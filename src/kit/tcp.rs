//! The TCP state of a socket you hold, from `TCP_INFO`
//! ([`tcp(7)`](https://man7.org/linux/man-pages/man7/tcp.7.html)).
//!
//! nix has no `TCP_INFO` option, and a typed getter that insists on the full
//! `size_of::<libc::tcp_info>()` would panic on a kernel older than the
//! struct libc knows (the kernel returns fewer bytes). So this is a raw
//! `libc::getsockopt` into a zeroed struct that accepts any returned length
//! up to the full size and remembers it: fields past it are absent.
//! Chapter 3 explains it; chapters 5 to 7 use it.

use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, AsRawFd};

use super::error::{Error, Result};

/// A `TCP_INFO` snapshot and how many bytes of it the kernel filled in.
#[derive(Clone, Copy)]
pub struct TcpInfo {
    /// The struct, zero past `len`.
    pub raw: libc::tcp_info,
    /// Bytes the kernel returned.
    pub len: usize,
}

impl std::fmt::Debug for TcpInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpInfo")
            .field("state", &state_name(self.raw.tcpi_state))
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl TcpInfo {
    /// Did the kernel fill in the field that ends `end` bytes into the
    /// struct? Use `offset_of!(libc::tcp_info, field) + size_of::<T>()`.
    pub fn covers(&self, end: usize) -> bool {
        end <= self.len
    }

    /// `tcpi_state`: the connection's state (see [`state_name`]).
    pub fn state(&self) -> u8 {
        self.raw.tcpi_state
    }

    /// `tcpi_total_retrans`, if this kernel reports it.
    pub fn total_retrans(&self) -> Option<u32> {
        let end = offset_of!(libc::tcp_info, tcpi_total_retrans) + size_of::<u32>();
        self.covers(end).then_some(self.raw.tcpi_total_retrans)
    }
}

/// `getsockopt(fd, IPPROTO_TCP, TCP_INFO, …)`, tolerating a short answer.
pub fn tcp_info(fd: impl AsFd) -> Result<TcpInfo> {
    let raw_fd = fd.as_fd().as_raw_fd();
    // SAFETY: tcp_info is plain old data (integers only); all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the pointer and length describe `info`, which outlives the
    // call; the kernel writes at most `len` bytes and stores the count in `len`.
    let rc = unsafe {
        libc::getsockopt(
            raw_fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    if rc == -1 {
        return Err(Error::last_os(format!(
            "getsockopt({raw_fd}, IPPROTO_TCP, TCP_INFO)"
        )));
    }
    Ok(TcpInfo {
        raw: info,
        len: (len as usize).min(size_of::<libc::tcp_info>()),
    })
}

/// Linux's TCP states, by the number `tcpi_state` and `/proc/net/tcp`'s
/// `st` column use (libc has no constants for them).
pub const STATES: [(u8, &str); 12] = [
    (1, "ESTABLISHED"),
    (2, "SYN_SENT"),
    (3, "SYN_RECV"),
    (4, "FIN_WAIT1"),
    (5, "FIN_WAIT2"),
    (6, "TIME_WAIT"),
    (7, "CLOSE"),
    (8, "CLOSE_WAIT"),
    (9, "LAST_ACK"),
    (10, "LISTEN"),
    (11, "CLOSING"),
    (12, "NEW_SYN_RECV"),
];

/// The name of a TCP state number, `"?"` for one Linux does not define.
pub fn state_name(state: u8) -> &'static str {
    STATES
        .iter()
        .find(|(n, _)| *n == state)
        .map_or("?", |(_, name)| name)
}
