//! The generic option reader and writer: one raw `getsockopt(2)` /
//! `setsockopt(2)` for every option, told only the level, the name and the
//! type of the value to expect.

use std::fmt;
use std::mem::size_of;
use std::os::fd::AsFd;

use libc::c_int;
use nix::errno::Errno;

use super::tcpinfo::TcpSummary;
use crate::kit::Result;
use crate::kit::error::errno_text;

/// Longest congestion-control name the kernel hands back for
/// `TCP_CONGESTION` (`TCP_CA_NAME_MAX` in `<linux/tcp.h>`; libc lacks it).
/// An ABI size, like `sizeof(struct linger)`, not a tunable.
pub const TCP_CA_NAME_MAX: usize = 16;

/// The bytes [`get_option`] offers the kernel: more than any value it
/// expects (except `TCP_INFO`, which gets exactly `size_of::<libc::tcp_info>()`),
/// so a kernel that answers with more bytes than expected is caught, the way
/// UNIX Network Programming's `checkopts` catches it.
pub const SCRATCH: usize = 64;

/// The C type behind an option's value: how many bytes the kernel should
/// answer with and how to read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An `int` used as a boolean: zero is off, anything else on.
    Flag,
    /// An `int`.
    Int,
    /// `struct linger { int l_onoff; int l_linger; }`.
    Linger,
    /// `struct timeval { time_t tv_sec; suseconds_t tv_usec; }`.
    Timeval,
    /// A NUL-padded name of at most [`TCP_CA_NAME_MAX`] bytes.
    Text,
    /// `struct tcp_info`, of which an older kernel fills in only a prefix.
    TcpInfo,
}

impl Kind {
    /// How many bytes the kernel is expected to return for this type.
    pub fn size(self) -> usize {
        match self {
            Kind::Flag | Kind::Int => size_of::<c_int>(),
            Kind::Linger => size_of::<libc::linger>(),
            Kind::Timeval => size_of::<libc::timeval>(),
            Kind::Text => TCP_CA_NAME_MAX,
            Kind::TcpInfo => size_of::<libc::tcp_info>(),
        }
    }
}

/// A decoded option value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// [`Kind::Flag`]: on or off.
    Flag(bool),
    /// [`Kind::Int`].
    Int(i32),
    /// [`Kind::Linger`]: `l_onoff`, `l_linger` (seconds).
    Linger { onoff: i32, linger: i32 },
    /// [`Kind::Timeval`]: seconds and microseconds; `0, 0` means "no timeout".
    Timeval { sec: i64, usec: i64 },
    /// [`Kind::Text`]: the name up to its first NUL.
    Text(String),
    /// [`Kind::TcpInfo`]: the fields the kernel filled in (boxed: it is
    /// big beside the other values).
    TcpInfo(Box<TcpSummary>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Flag(on) => f.write_str(if *on { "on" } else { "off" }),
            Value::Int(n) => write!(f, "{n}"),
            Value::Linger { onoff, linger } => write!(f, "l_onoff = {onoff}, l_linger = {linger}"),
            Value::Timeval { sec, usec } => write!(f, "{sec} sec, {usec} usec"),
            Value::Text(name) => f.write_str(name),
            Value::TcpInfo(info) => write!(f, "{info}"),
        }
    }
}

/// Why an option could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// `getsockopt` failed with this errno (`ENOPROTOOPT`: the option does
    /// not exist at this level for this kind of socket).
    Errno(Errno),
    /// The kernel answered, but with `got` bytes where the type has
    /// `expected`: the type given was wrong (or the kernel is unusual).
    Size { expected: usize, got: usize },
    /// The fresh socket to read it from could not be made (no IPv6 here?).
    NoSocket(Errno),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Errno(e) => f.write_str(&errno_text(*e)),
            ReadError::Size { expected, got } => {
                write!(f, "size ({got}) not the expected {expected}")
            }
            ReadError::NoSocket(e) => write!(f, "no socket of this kind: {}", errno_text(*e)),
        }
    }
}

/// What reading one option gave: its value, or why not.
pub type Reading = std::result::Result<Value, ReadError>;

// ANCHOR: ch03_get_option
/// Read one socket option of any level with a raw
/// [`getsockopt(2)`](https://man7.org/linux/man-pages/man2/getsockopt.2.html),
/// checking the length the kernel returns against the type, as the classic
/// `checkopts` program does.
///
/// Task:
/// - Offer the kernel a buffer of [`SCRATCH`] bytes (exactly
///   `kind.size()` bytes for [`Kind::TcpInfo`]) and its length in a
///   `socklen_t`; call `libc::getsockopt(fd, level, name, buf, &mut len)`.
/// - On -1 return `Err(ReadError::Errno(Errno::last()))`, reading errno
///   right away.
/// - The kernel writes back how many bytes it filled in. For every kind but
///   `TcpInfo`, `len` must equal `kind.size()`, else
///   `Err(ReadError::Size { expected, got })`. For `TcpInfo` any length is
///   fine (an older kernel has a shorter struct): hand the filled-in bytes to
///   [`decode_tcp_info`](super::tcpinfo::decode_tcp_info).
/// - Decode native-endian bytes (`i32::from_ne_bytes`, `i64::…`): `Flag` is
///   an int that is on when non-zero; `Linger` two ints; `Timeval` two
///   64-bit numbers (check with `size_of::<libc::time_t>()` if you doubt);
///   `Text` the bytes up to the first NUL.
///
/// Hint: `buf.as_mut_ptr().cast()` gives the `*mut c_void`; the only
/// `unsafe` is the call itself.
pub fn get_option(fd: impl AsFd, level: c_int, name: c_int, kind: Kind) -> Reading {
    // BEGIN SOLUTION
    use super::tcpinfo::decode_tcp_info;
    use std::os::fd::AsRawFd;
    let raw = fd.as_fd().as_raw_fd();
    let offer = if kind == Kind::TcpInfo {
        kind.size()
    } else {
        SCRATCH
    };
    let mut buf = vec![0u8; offer];
    let mut len = offer as libc::socklen_t;
    // SAFETY: `buf` holds at least `offer` writable bytes and outlives the
    // call; the kernel writes at most `len` bytes there and the count in `len`.
    let rc = unsafe { libc::getsockopt(raw, level, name, buf.as_mut_ptr().cast(), &mut len) };
    if rc == -1 {
        return Err(ReadError::Errno(Errno::last()));
    }
    let got = (len as usize).min(offer);
    if kind == Kind::TcpInfo {
        return Ok(Value::TcpInfo(Box::new(decode_tcp_info(&buf[..got]))));
    }
    let expected = kind.size();
    if got != expected {
        return Err(ReadError::Size { expected, got });
    }
    let int_at = |at: usize| i32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let long_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[at..at + 8]);
        i64::from_ne_bytes(b)
    };
    Ok(match kind {
        Kind::Flag => Value::Flag(int_at(0) != 0),
        Kind::Int => Value::Int(int_at(0)),
        Kind::Linger => Value::Linger {
            onoff: int_at(0),
            linger: int_at(4),
        },
        Kind::Timeval => Value::Timeval {
            sec: long_at(0),
            usec: long_at(8),
        },
        Kind::Text => {
            let name = &buf[..got];
            let end = name.iter().position(|&b| b == 0).unwrap_or(got);
            Value::Text(String::from_utf8_lossy(&name[..end]).into_owned())
        }
        Kind::TcpInfo => unreachable!("handled above"),
    })
    // END SOLUTION
}
// ANCHOR_END: ch03_get_option

/// What [`set_and_explain`] saw: the value asked for, the value the kernel
/// reports afterwards, and whether they differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetReport {
    /// The value given to `setsockopt`.
    pub asked: Value,
    /// The value `getsockopt` returned right after.
    pub got: Value,
    /// Did the kernel store something other than what was asked?
    pub changed: bool,
}

impl SetReport {
    /// A sentence on what the kernel did with the value, for the common
    /// cases: kept, doubled (socket(7) on `SO_RCVBUF`/`SO_SNDBUF`), doubled
    /// after clamping to a ceiling, rounded, replaced.
    pub fn explain(&self) -> String {
        if !self.changed {
            return "kept as asked".to_string();
        }
        match (&self.asked, &self.got) {
            (Value::Int(a), Value::Int(g)) if i64::from(*g) == 2 * i64::from(*a) => {
                "doubled: the extra half is room for the kernel's bookkeeping (socket(7))"
                    .to_string()
            }
            (Value::Int(a), Value::Int(g)) if g % 2 == 0 && *g / 2 < *a => format!(
                "clamped to a ceiling of {} (a sysctl such as net.core.rmem_max), then doubled",
                g / 2
            ),
            (Value::Int(a), Value::Int(g)) if g > a => {
                "raised: a minimum, or rounded up to the kernel's own units".to_string()
            }
            (Value::Int(_), Value::Int(_)) => {
                "lowered: a maximum, or rounded down to the kernel's own units".to_string()
            }
            (Value::Timeval { .. }, Value::Timeval { .. }) => {
                "rounded: the kernel keeps timeouts in its own clock ticks (jiffies)".to_string()
            }
            _ => "changed by the kernel".to_string(),
        }
    }
}

// ANCHOR: ch03_set_and_explain
/// Set an option with a raw
/// [`setsockopt(2)`](https://man7.org/linux/man-pages/man2/setsockopt.2.html),
/// read it back with [`get_option`], and report whether the kernel stored
/// something other than what was asked (on Linux `SO_RCVBUF` reads back
/// doubled, socket(7); `TCP_DEFER_ACCEPT` is rounded to whole retransmits).
///
/// Task:
/// - Encode `value` as the C type of `kind`: `Flag` as the `c_int` 1 or 0,
///   `Int` as a `c_int`, `Linger` as a `libc::linger`, `Timeval` as a
///   `libc::timeval`, `Text` as the bytes of the name (no NUL needed).
///   A `value` that does not fit `kind` is `Err(Error::msg(..))`; so is
///   `TcpInfo`, which cannot be set.
/// - `libc::setsockopt(fd, level, name, ptr, len)`; on -1 return
///   `Err(Error::last_os("setsockopt(…)"))` at once (errno first!).
/// - Read the value back with `get_option(fd, level, name, kind)`; a failed
///   read is an error too (`Error::sys` with its errno, or `Error::msg`).
/// - Return `SetReport { asked, got, changed: asked != got }`.
pub fn set_and_explain(
    fd: impl AsFd,
    level: c_int,
    name: c_int,
    kind: Kind,
    value: &Value,
) -> Result<SetReport> {
    // BEGIN SOLUTION
    use crate::kit::Error;
    use std::os::fd::AsRawFd;
    let fd = fd.as_fd();
    let raw = fd.as_raw_fd();
    let call = || format!("setsockopt({raw}, level {level}, option {name}, {value})");
    let int = |n: i32| n.to_ne_bytes().to_vec();
    let bytes: Vec<u8> = match (kind, value) {
        (Kind::Flag, Value::Flag(on)) => int(i32::from(*on)),
        (Kind::Int, Value::Int(n)) => int(*n),
        (Kind::Linger, Value::Linger { onoff, linger }) => {
            let mut b = int(*onoff);
            b.extend_from_slice(&linger.to_ne_bytes());
            b
        }
        (Kind::Timeval, Value::Timeval { sec, usec }) => {
            let mut b = sec.to_ne_bytes().to_vec();
            b.extend_from_slice(&usec.to_ne_bytes());
            b
        }
        (Kind::Text, Value::Text(text)) => text.as_bytes().to_vec(),
        (kind, value) => {
            return Err(Error::msg(format!(
                "{value:?} is not a value of kind {kind:?} that can be set"
            )));
        }
    };
    // SAFETY: `bytes` is initialised, outlives the call, and `len` is its
    // length; the kernel only reads from it.
    let rc = unsafe {
        libc::setsockopt(
            raw,
            level,
            name,
            bytes.as_ptr().cast(),
            bytes.len() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(Error::last_os(call()));
    }
    let got = get_option(fd, level, name, kind).map_err(|e| match e {
        ReadError::Errno(errno) | ReadError::NoSocket(errno) => Error::sys(
            format!("getsockopt({raw}, level {level}, option {name})"),
            errno,
        ),
        other => Error::msg(format!("reading back option {name}: {other}")),
    })?;
    Ok(SetReport {
        changed: got != *value,
        asked: value.clone(),
        got,
    })
    // END SOLUTION
}
// ANCHOR_END: ch03_set_and_explain
