#![doc = include_str!("../../chapters/01-sockets.md")]
//!
//! ---
//!
//! # The code of this chapter
//!
//! - [`demo`]: the narrated tour (`cargo run`) and the `resolve` subcommand.
//! - Helpers the demo uses and you may use too: [`family_name`],
//!   [`socktype_name`], [`protocol_name`], [`getsockopt_int`],
//!   [`inet_pton_v4`], [`inet_pton_v6`], [`inet_ntop_v4`], [`inet_ntop_v6`],
//!   [`gai_error`], [`gai_error_name`].
//! - The assignments: [`sockaddr_in_from_text`], [`format_sockaddr`],
//!   [`resolve`], [`connect_first`] (and [`connect_to_host`], given, which
//!   uses the last two).
//! - Given: [`errno_name`], a table of errno names.

pub mod demo;
pub mod dualstack;

use std::ffi::{CStr, CString, c_char, c_int};
use std::mem;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::ptr;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    self, AddressFamily, SockFlag, SockType, SockaddrLike, SockaddrStorage, sockopt,
};

use crate::kit::error::Call;
use crate::kit::{Error, Result};

// ---------------------------------------------------------------------------
// Names of the numbers the kernel hands back
// ---------------------------------------------------------------------------

/// The C name of an address family (`SO_DOMAIN`, `sa_family`, `ai_family`):
/// `AF_INET`, `AF_INET6`, `AF_UNIX`, … or `"AF_?"` for one this chapter
/// does not name.
pub fn family_name(family: c_int) -> &'static str {
    match family {
        libc::AF_UNSPEC => "AF_UNSPEC",
        libc::AF_UNIX => "AF_UNIX",
        libc::AF_INET => "AF_INET",
        libc::AF_INET6 => "AF_INET6",
        libc::AF_NETLINK => "AF_NETLINK",
        libc::AF_PACKET => "AF_PACKET",
        _ => "AF_?",
    }
}

/// The C name of a socket type (`SO_TYPE`, `ai_socktype`): `SOCK_STREAM`,
/// `SOCK_DGRAM`, …
pub fn socktype_name(socktype: c_int) -> &'static str {
    match socktype {
        libc::SOCK_STREAM => "SOCK_STREAM",
        libc::SOCK_DGRAM => "SOCK_DGRAM",
        libc::SOCK_RAW => "SOCK_RAW",
        libc::SOCK_SEQPACKET => "SOCK_SEQPACKET",
        0 => "0",
        _ => "SOCK_?",
    }
}

/// The C name of a protocol number (`SO_PROTOCOL`, `ai_protocol`) in the
/// IP families: `IPPROTO_TCP`, `IPPROTO_UDP`, … (0 is `IPPROTO_IP` there, as
/// strace prints it: "the default"). In `AF_UNIX` there is only one protocol
/// and its number is 0: `"(none)"`.
pub fn protocol_name(family: c_int, protocol: c_int) -> &'static str {
    if family != libc::AF_INET && family != libc::AF_INET6 {
        return if protocol == 0 { "(none)" } else { "?" };
    }
    match protocol {
        0 => "IPPROTO_IP",
        libc::IPPROTO_TCP => "IPPROTO_TCP",
        libc::IPPROTO_UDP => "IPPROTO_UDP",
        libc::IPPROTO_ICMP => "IPPROTO_ICMP",
        libc::IPPROTO_ICMPV6 => "IPPROTO_ICMPV6",
        libc::IPPROTO_SCTP => "IPPROTO_SCTP",
        libc::IPPROTO_RAW => "IPPROTO_RAW",
        _ => "IPPROTO_?",
    }
}

// ---------------------------------------------------------------------------
// Raw libc forms the demo shows
// ---------------------------------------------------------------------------

// The `libc` crate does not declare inet_pton and inet_ntop for Linux, so we
// declare them from their prototypes in <arpa/inet.h> (see inet_pton(3)):
//
//     int inet_pton(int af, const char *src, void *dst);
//     const char *inet_ntop(int af, const void *src, char *dst, socklen_t size);
//
// The C library provides them; the linker finds them there.
unsafe extern "C" {
    fn inet_pton(af: c_int, src: *const c_char, dst: *mut libc::c_void) -> c_int;
    fn inet_ntop(
        af: c_int,
        src: *const libc::c_void,
        dst: *mut c_char,
        size: libc::socklen_t,
    ) -> *const c_char;
}

/// [`getsockopt(2)`](https://man7.org/linux/man-pages/man2/getsockopt.2.html)
/// for an option whose value is a C `int`, the raw libc way. nix has no
/// `SO_DOMAIN` or `SO_PROTOCOL`, so the demo reads them with this.
/// `label` names the option in an error (`"SOL_SOCKET, SO_DOMAIN"`).
pub fn getsockopt_int(fd: impl AsFd, level: c_int, name: c_int, label: &str) -> Result<c_int> {
    let raw = fd.as_fd().as_raw_fd();
    let mut value: c_int = 0;
    let mut len = mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live locals for the whole call, and `len`
    // says truthfully how many bytes `value` can hold; `raw` is an open fd
    // borrowed from the caller.
    let rc = unsafe { libc::getsockopt(raw, level, name, (&raw mut value).cast(), &mut len) };
    if rc == -1 {
        return Err(Error::last_os(format!("getsockopt({raw}, {label})")));
    }
    Ok(value)
}

/// [`inet_pton(3)`](https://man7.org/linux/man-pages/man3/inet_pton.3.html)
/// with `AF_INET`: dotted-quad text to a `struct in_addr` (network byte
/// order). `None` when `text` is not an IPv4 address (inet_pton returned 0).
pub fn inet_pton_v4(text: &str) -> Option<libc::in_addr> {
    let c_text = CString::new(text).ok()?;
    let mut addr = libc::in_addr { s_addr: 0 };
    // SAFETY: `c_text` is a NUL-terminated string and `addr` is a writable
    // `struct in_addr`, which is what inet_pton needs for AF_INET.
    let rc = unsafe { inet_pton(libc::AF_INET, c_text.as_ptr(), (&raw mut addr).cast()) };
    (rc == 1).then_some(addr)
}

/// [`inet_pton(3)`](https://man7.org/linux/man-pages/man3/inet_pton.3.html)
/// with `AF_INET6`: IPv6 text to a `struct in6_addr`.
pub fn inet_pton_v6(text: &str) -> Option<libc::in6_addr> {
    let c_text = CString::new(text).ok()?;
    let mut addr = libc::in6_addr { s6_addr: [0; 16] };
    // SAFETY: `c_text` is a NUL-terminated string and `addr` is a writable
    // `struct in6_addr`, which is what inet_pton needs for AF_INET6.
    let rc = unsafe { inet_pton(libc::AF_INET6, c_text.as_ptr(), (&raw mut addr).cast()) };
    (rc == 1).then_some(addr)
}

/// [`inet_ntop(3)`](https://man7.org/linux/man-pages/man3/inet_ntop.3.html)
/// with `AF_INET`: a `struct in_addr` to dotted-quad text.
pub fn inet_ntop_v4(addr: &libc::in_addr) -> String {
    ntop(libc::AF_INET, ptr::from_ref(addr).cast())
}

/// [`inet_ntop(3)`](https://man7.org/linux/man-pages/man3/inet_ntop.3.html)
/// with `AF_INET6`: a `struct in6_addr` to text (`::1`, `fe80::1`,
/// `::ffff:192.0.2.1`).
pub fn inet_ntop_v6(addr: &libc::in6_addr) -> String {
    ntop(libc::AF_INET6, ptr::from_ref(addr).cast())
}

/// inet_ntop into a buffer big enough for any IPv6 text
/// (`INET6_ADDRSTRLEN`, 46 bytes with the NUL).
fn ntop(family: c_int, src: *const libc::c_void) -> String {
    let mut buf = [0 as c_char; 46];
    // SAFETY: `src` points to an in_addr (AF_INET) or in6_addr (AF_INET6)
    // borrowed by the caller; `buf` is writable and its true length is passed.
    let out = unsafe { inet_ntop(family, src, buf.as_mut_ptr(), buf.len() as libc::socklen_t) };
    if out.is_null() {
        // Only possible for a bad family or a short buffer, neither of which
        // this function allows.
        return String::from("?");
    }
    // SAFETY: on success inet_ntop wrote a NUL-terminated string into `buf`.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// The C name of a `getaddrinfo` error code (`EAI_NONAME`, `EAI_AGAIN`, …).
/// These are not errnos: getaddrinfo returns them, and only `EAI_SYSTEM`
/// means "look at errno".
pub fn gai_error_name(code: c_int) -> &'static str {
    match code {
        libc::EAI_AGAIN => "EAI_AGAIN",
        libc::EAI_BADFLAGS => "EAI_BADFLAGS",
        libc::EAI_FAIL => "EAI_FAIL",
        libc::EAI_FAMILY => "EAI_FAMILY",
        libc::EAI_MEMORY => "EAI_MEMORY",
        libc::EAI_NODATA => "EAI_NODATA",
        libc::EAI_NONAME => "EAI_NONAME",
        libc::EAI_SERVICE => "EAI_SERVICE",
        libc::EAI_SOCKTYPE => "EAI_SOCKTYPE",
        libc::EAI_SYSTEM => "EAI_SYSTEM",
        libc::EAI_OVERFLOW => "EAI_OVERFLOW",
        _ => "EAI_?",
    }
}

/// Turn a non-zero return `code` of `getaddrinfo` into an [`Error`] that
/// names `call` and the resolver's own words for it, from
/// [`gai_strerror(3)`](https://man7.org/linux/man-pages/man3/gai_strerror.3.html):
/// `getaddrinfo("nosuch", "80"): Name or service not known (EAI_NONAME)`.
/// For `EAI_SYSTEM` the cause is in errno, which is read at once: call this
/// right after getaddrinfo returned.
pub fn gai_error(call: impl Into<String>, code: c_int) -> Error {
    if code == libc::EAI_SYSTEM {
        return Error::sys(call, Errno::last());
    }
    // SAFETY: gai_strerror returns a pointer to a static NUL-terminated
    // string for any code (an "unknown error" text for codes it does not know).
    let text = unsafe { CStr::from_ptr(libc::gai_strerror(code)) }.to_string_lossy();
    Error::msg(format!(
        "{}: {text} ({})",
        call.into(),
        gai_error_name(code)
    ))
}

// ---------------------------------------------------------------------------
// Assignments
// ---------------------------------------------------------------------------

/// **Assignment 1: build a `struct sockaddr_in` by hand.**
///
/// Turn `text`, an IPv4 address and port written `a.b.c.d:port`
/// (`"127.0.0.1:8080"`), into the C struct that `bind(2)` and `connect(2)`
/// read, without help from `std::net`, nix or `inet_pton`:
///
/// - `sin_family` = `AF_INET` (host byte order, it never leaves the machine);
/// - `sin_port` = the port in **network byte order**: `htons(port)`, which in
///   Rust is `port.to_be()`;
/// - `sin_addr.s_addr` = the four octets in network byte order, so that in
///   memory they read `a b c d`: `htonl` of the address as a number;
/// - `sin_zero` all zero.
///
/// Accept exactly four dot-separated decimal octets (each 0–255, digits
/// only), a colon, and a decimal port 0–65535 (digits only). Anything else
/// (missing or extra parts, values out of range, empty parts, `[v6]:port`)
/// is an `Err` that quotes the text.
///
/// Hints: `str::split_once`, `str::split('.')`,
/// `bytes().all(|b| b.is_ascii_digit())`, `u8::from_str`, `u16::from_str`,
/// `u32::from_be_bytes`, `u16::to_be`. `libc::sockaddr_in` can be written as
/// a struct literal: every field is public. Check yourself against the
/// table the demo prints (`cargo run`, part 3).
pub fn sockaddr_in_from_text(text: &str) -> Result<libc::sockaddr_in> {
    // BEGIN SOLUTION
    let bad = || Error::msg(format!("not an a.b.c.d:port address: {text:?}"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());

    let (ip, port) = text.split_once(':').ok_or_else(bad)?;
    if !digits(port) {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;

    let mut octets = [0u8; 4];
    let mut parts = ip.split('.');
    for octet in &mut octets {
        let part = parts.next().filter(|p| digits(p)).ok_or_else(bad)?;
        *octet = part.parse().map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }

    Ok(libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        // htons: host order to network order (big-endian).
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            // The address as a number is a<<24 | b<<16 | c<<8 | d;
            // htonl stores it big-endian, so memory reads a b c d.
            s_addr: u32::from_be_bytes(octets).to_be(),
        },
        sin_zero: [0; 8],
    })
    // END SOLUTION
}

/// **Assignment 2: format any socket address.**
///
/// `addr` holds a socket address of `len` bytes, as `accept(2)`,
/// `getsockname(2)` or `recvfrom(2)` fill it in: a `sockaddr_storage` is big
/// enough and aligned for every family, and its first field, `ss_family`,
/// says which struct it really holds. Return the address as text, the way
/// `std::net` and nix print it:
///
/// | `ss_family` | struct | text |
/// |---|---|---|
/// | `AF_INET` | `sockaddr_in` | `127.0.0.1:8080` |
/// | `AF_INET6` | `sockaddr_in6` | `[::1]:8080`, or `[fe80::1%2]:8080` when `sin6_scope_id` is not 0 |
/// | `AF_UNIX` | `sockaddr_un` | the path (`/tmp/s.sock`); `@"name"` for an abstract name (first byte of `sun_path` is NUL; print each byte of the rest with `char::escape_default`); `<unbound UNIX socket>` when no path bytes are present |
///
/// Ports are in network byte order (`u16::from_be`). For IPv6 text use
/// [`inet_ntop_v6`] (or `inet_ntop(3)` yourself); IPv4 may use
/// [`inet_ntop_v4`] or the four bytes of `s_addr` as they lie in memory.
/// For `AF_UNIX` the path is the bytes of `sun_path` within `len` (that is
/// `len - offset_of!(sockaddr_un, sun_path)` of them) without a trailing
/// NUL, which Linux appends in getsockname.
///
/// Return `Err` for any other family, and when `len` is too short for the
/// family's struct (for `AF_UNIX`: shorter than `sun_family`) or longer than
/// a `sockaddr_storage`.
///
/// Hints: cast with `ptr::from_ref(addr).cast::<libc::sockaddr_in>()` and
/// read through it in a small `unsafe` block (say why it is sound);
/// `mem::size_of`, `mem::offset_of!`.
pub fn format_sockaddr(addr: &libc::sockaddr_storage, len: libc::socklen_t) -> Result<String> {
    // BEGIN SOLUTION
    let len = len as usize;
    let family = c_int::from(addr.ss_family);
    let too_short = |need: usize| {
        Error::msg(format!(
            "{} address of {len} bytes: too short, needs {need}",
            family_name(family)
        ))
    };
    if len > mem::size_of::<libc::sockaddr_storage>() {
        return Err(Error::msg(format!(
            "socket address of {len} bytes: longer than a sockaddr_storage"
        )));
    }
    match family {
        libc::AF_INET => {
            let need = mem::size_of::<libc::sockaddr_in>();
            if len < need {
                return Err(too_short(need));
            }
            // SAFETY: ss_family says the storage holds a sockaddr_in, and a
            // sockaddr_storage is large and aligned enough for one.
            let sin = unsafe { &*ptr::from_ref(addr).cast::<libc::sockaddr_in>() };
            Ok(format!(
                "{}:{}",
                inet_ntop_v4(&sin.sin_addr),
                u16::from_be(sin.sin_port)
            ))
        }
        libc::AF_INET6 => {
            let need = mem::size_of::<libc::sockaddr_in6>();
            if len < need {
                return Err(too_short(need));
            }
            // SAFETY: ss_family says the storage holds a sockaddr_in6, and a
            // sockaddr_storage is large and aligned enough for one.
            let sin6 = unsafe { &*ptr::from_ref(addr).cast::<libc::sockaddr_in6>() };
            let ip = inet_ntop_v6(&sin6.sin6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Ok(match sin6.sin6_scope_id {
                0 => format!("[{ip}]:{port}"),
                scope => format!("[{ip}%{scope}]:{port}"),
            })
        }
        libc::AF_UNIX => {
            let start = mem::offset_of!(libc::sockaddr_un, sun_path);
            if len < start {
                return Err(too_short(start));
            }
            // SAFETY: ss_family says the storage holds a sockaddr_un, and a
            // sockaddr_storage is large and aligned enough for one.
            let sun = unsafe { &*ptr::from_ref(addr).cast::<libc::sockaddr_un>() };
            // `len` is at most the storage's size, so this stays in bounds.
            let path: Vec<u8> = sun.sun_path[..(len - start).min(sun.sun_path.len())]
                .iter()
                .map(|&c| c as u8)
                .collect();
            Ok(match path.split_first() {
                None => String::from("<unbound UNIX socket>"),
                Some((0, name)) => {
                    let escaped: String = name
                        .iter()
                        .flat_map(|&b| char::from(b).escape_default())
                        .collect();
                    format!("@\"{escaped}\"")
                }
                Some(_) => {
                    let path = path.strip_suffix(&[0]).unwrap_or(&path);
                    String::from_utf8_lossy(path).into_owned()
                }
            })
        }
        other => Err(Error::msg(format!(
            "cannot format a socket address of family {other} ({})",
            family_name(other)
        ))),
    }
    // END SOLUTION
}

/// **Assignment 3: resolve a name to all its addresses.**
///
/// Call [`getaddrinfo(3)`](https://man7.org/linux/man-pages/man3/getaddrinfo.3.html)
/// for `host` and `port` and return every address it lists, in its order,
/// with the port set. Use these hints, so you get the same list as
/// `std::net::ToSocketAddrs` (one entry per address, not one per socket
/// type):
///
/// - `ai_family = AF_UNSPEC` (IPv4 and IPv6), `ai_socktype = SOCK_STREAM`,
///   `ai_protocol = 0`;
/// - `ai_flags = AI_NUMERICSERV` and the port as decimal text for `service`
///   (the resolver then never looks the service up in /etc/services).
///
/// getaddrinfo allocates the list; you must hand it back to
/// `freeaddrinfo(3)` **exactly once**: after you have copied every address
/// out, and never when getaddrinfo failed (it did not allocate anything
/// then). Copy each `ai_addr` of `ai_addrlen` bytes with
/// `SockaddrStorage::from_raw(ai_addr, Some(ai_addrlen))` and follow
/// `ai_next` until it is null.
///
/// On failure return the error from [`gai_error`], whose text names
/// `getaddrinfo` and says what `gai_strerror(3)` says about the code. A
/// `host` with a NUL byte in it is an `Err` too.
///
/// Hints: `CString::new`, a `libc::addrinfo` struct literal with null
/// pointers (`ptr::null_mut()`), `let mut list: *mut libc::addrinfo =
/// ptr::null_mut();`, a `while !p.is_null()` walk. A small struct whose
/// `Drop` calls freeaddrinfo makes "exactly once" hard to get wrong.
pub fn resolve(host: &str, port: u16) -> Result<Vec<SockaddrStorage>> {
    // BEGIN SOLUTION
    let call = format!("getaddrinfo({host:?}, \"{port}\")");
    let c_host =
        CString::new(host).map_err(|_| Error::msg(format!("{call}: the name has a NUL byte")))?;
    let c_port =
        CString::new(port.to_string()).map_err(|_| Error::msg(format!("{call}: bad port text")))?;
    let hints = libc::addrinfo {
        ai_flags: libc::AI_NUMERICSERV,
        ai_family: libc::AF_UNSPEC,
        ai_socktype: libc::SOCK_STREAM,
        ai_protocol: 0,
        ai_addrlen: 0,
        ai_addr: ptr::null_mut(),
        ai_canonname: ptr::null_mut(),
        ai_next: ptr::null_mut(),
    };
    let mut list: *mut libc::addrinfo = ptr::null_mut();
    // SAFETY: the strings are NUL-terminated and `hints` is a valid addrinfo
    // with null pointers; `list` is a writable out-pointer. All outlive the call.
    let code = unsafe { libc::getaddrinfo(c_host.as_ptr(), c_port.as_ptr(), &hints, &mut list) };
    if code != 0 {
        // Nothing was allocated: nothing to free.
        return Err(gai_error(call, code));
    }

    /// Owns the list; frees it exactly once, when dropped.
    struct List(*mut libc::addrinfo);
    impl Drop for List {
        fn drop(&mut self) {
            // SAFETY: the pointer came from a successful getaddrinfo and is
            // freed only here, once.
            unsafe { libc::freeaddrinfo(self.0) }
        }
    }
    let list = List(list);

    let mut addrs = Vec::new();
    let mut p = list.0;
    while !p.is_null() {
        // SAFETY: `p` is an entry of the list getaddrinfo returned, which
        // stays allocated until `list` is dropped below.
        let entry = unsafe { &*p };
        // SAFETY: ai_addr points to ai_addrlen readable bytes of a sockaddr.
        if let Some(addr) = unsafe {
            <SockaddrStorage as nix::sys::socket::SockaddrLike>::from_raw(
                entry.ai_addr,
                Some(entry.ai_addrlen),
            )
        } {
            addrs.push(addr);
        }
        p = entry.ai_next;
    }
    drop(list);
    Ok(addrs)
    // END SOLUTION
}

/// **Assignment 4: try each address until one answers.**
///
/// A name has several addresses (`localhost` is often `::1` and
/// `127.0.0.1`), and some of them may not answer: nothing listens there
/// (the kernel answers the SYN with a RST: `ECONNREFUSED` at once), or the
/// SYNs vanish (a firewall that drops, a host that is down, a full accept
/// queue): a blocking `connect(2)` then waits for the kernel's SYN retries,
/// minutes on Linux. Every real client therefore tries the addresses one by
/// one, each with a short timeout of its own. Write that loop:
///
/// 1. Order: every IPv6 address (`AF_INET6`) first, then the others, each
///    group in the order given (the default of RFC 6724 on most hosts).
/// 2. For each address, a TCP socket of its family, **nonblocking**
///    (`SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC`), and `connect`:
///    - `Ok`: connected already (possible on loopback);
///    - `Err(EINPROGRESS)`: the handshake is under way. Wait with
///      [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html) for
///      `POLLOUT` at most `timeout`. Writable does **not** mean connected:
///      a refused connect is writable too. Read the outcome with
///      `getsockopt(fd, SOL_SOCKET, SO_ERROR)` (nix: `sockopt::SocketError`):
///      0 is success, anything else is the errno connect would have
///      returned. poll returning 0 (time is up) is a failure you report as
///      `ETIMEDOUT`;
///    - any other `Err`: this address failed.
///
///    A failed attempt's socket is closed (dropping its `OwnedFd` does it)
///    before the next address is tried.
/// 3. Return the first connected socket **in blocking mode again**
///    ([`crate::kit::net::set_nonblocking`]`(&fd, false)`): the caller
///    expects a plain socket, and a nonblocking one would make its first
///    `read` fail with `EAGAIN`.
/// 4. When no address answers (or `addrs` is empty), return an error whose
///    text lists **every** address tried, each with its errno's name
///    (`[::1]:7: ECONNREFUSED; 127.0.0.1:7: ETIMEDOUT`): that is what a user
///    needs to see which address failed and how.
///
/// Man pages: connect(2) (the `EINPROGRESS` paragraph describes exactly
/// this), poll(2), socket(7) (`SO_ERROR`). Hints: `Instant` and
/// `saturating_duration_since` for the time left when `poll` returns
/// `EINTR`; `PollTimeout::try_from(ms)`; `Errno::from_raw(err)` turns the
/// `SO_ERROR` value into an errno whose `{:?}` is its name.
/// [`connect_to_host`] (which resolves with your [`resolve`] and calls
/// this) shows it in use.
pub fn connect_first(addrs: &[SockaddrStorage], timeout: Duration) -> Result<OwnedFd> {
    // BEGIN SOLUTION
    /// One attempt: nonblocking connect, poll for POLLOUT at most `timeout`,
    /// then SO_ERROR says how it ended.
    fn connect_within(addr: &SockaddrStorage, timeout: Duration) -> Result<OwnedFd> {
        let family = addr
            .family()
            .ok_or_else(|| Error::msg(format!("{addr}: no address family")))?;
        let fd = socket::socket(
            family,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .call(format!("socket({family:?}, SOCK_STREAM|SOCK_NONBLOCK, 0)"))?;
        let raw = fd.as_raw_fd();
        match socket::connect(raw, addr) {
            Ok(()) => {}
            Err(Errno::EINPROGRESS) => {
                let deadline = Instant::now() + timeout;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let ms = u32::try_from(left.as_millis()).unwrap_or(u32::MAX);
                    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
                    match poll(
                        &mut fds,
                        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
                    ) {
                        Ok(0) => {
                            return Err(Error::sys(
                                format!("connect({raw}, {addr}) within {timeout:?}"),
                                Errno::ETIMEDOUT,
                            ));
                        }
                        Ok(_) => break,
                        Err(Errno::EINTR) => continue,
                        Err(e) => return Err(Error::sys(format!("poll({raw}, POLLOUT)"), e)),
                    }
                }
                let err = socket::getsockopt(&fd, sockopt::SocketError)
                    .call(format!("getsockopt({raw}, SO_ERROR)"))?;
                if err != 0 {
                    return Err(Error::sys(
                        format!("connect({raw}, {addr})"),
                        Errno::from_raw(err),
                    ));
                }
            }
            Err(e) => return Err(Error::sys(format!("connect({raw}, {addr})"), e)),
        }
        crate::kit::net::set_nonblocking(&fd, false)?;
        Ok(fd)
    }

    let is_v6 = |a: &&SockaddrStorage| a.family() == Some(AddressFamily::Inet6);
    let ordered = addrs
        .iter()
        .filter(is_v6)
        .chain(addrs.iter().filter(|a| !is_v6(a)));
    let mut failures: Vec<String> = Vec::new();
    for addr in ordered {
        match connect_within(addr, timeout) {
            Ok(fd) => return Ok(fd),
            Err(e) => failures.push(format!("{addr}: {e}")),
        }
    }
    Err(Error::msg(format!(
        "no address answered ({} tried): {}",
        failures.len(),
        failures.join("; ")
    )))
    // END SOLUTION
}

/// Resolve `host` with [`resolve`] and connect to the first of its addresses
/// that answers within `timeout`, IPv6 first ([`connect_first`]): the whole
/// client side of "connect to a name".
pub fn connect_to_host(host: &str, port: u16, timeout: Duration) -> Result<OwnedFd> {
    let addrs = resolve(host, port)?;
    connect_first(&addrs, timeout)
}

/// **Name an errno** (given code; it was an assignment once).
///
/// When a call fails, the kernel says why with a number in `errno`: 111, 98,
/// 104. People (and `strace`) say `ECONNREFUSED`, `EADDRINUSE`, `ECONNRESET`.
/// Return the C name of `code`, or `None` when it is not an errno this
/// system knows (0, negative numbers, numbers past the last one).
///
/// Where two names share a number, give the one `errno.h` defines first
/// (the other is an alias defined in terms of it): `EAGAIN` (not
/// `EWOULDBLOCK`), `EDEADLK` (not `EDEADLOCK`), `EOPNOTSUPP` (not
/// `ENOTSUP`).
///
/// nix's `Errno` prints these names too (`format!("{e:?}")`); this is how
/// such a table is built, two ways:
///
/// - a table (what this function does): the names are in `/usr/include/asm-generic/errno-base.h` and
///   `errno.h`, and each is a constant in the `libc` crate
///   (`libc::ECONNREFUSED`); a `macro_rules!` that turns a list of names
///   into `libc::NAME => Some("NAME")` arms saves typing;
/// - glibc 2.32 and later have
///   [`strerrorname_np(3)`](https://man7.org/linux/man-pages/man3/strerrorname_np.3.html),
///   which the `libc` crate does not declare: declare it yourself in an
///   `unsafe extern "C"` block (it returns a `*const c_char`, null for an
///   unknown code). A program that does so needs that glibc to link.
pub fn errno_name(code: i32) -> Option<&'static str> {
    macro_rules! names {
        ($($name:ident)*) => {
            match code {
                $(libc::$name => Some(stringify!($name)),)*
                _ => None,
            }
        };
    }
    names! {
        EPERM ENOENT ESRCH EINTR EIO ENXIO E2BIG ENOEXEC EBADF ECHILD EAGAIN
        ENOMEM EACCES EFAULT ENOTBLK EBUSY EEXIST EXDEV ENODEV ENOTDIR EISDIR
        EINVAL ENFILE EMFILE ENOTTY ETXTBSY EFBIG ENOSPC ESPIPE EROFS EMLINK
        EPIPE EDOM ERANGE EDEADLK ENAMETOOLONG ENOLCK ENOSYS ENOTEMPTY ELOOP
        ENOMSG EIDRM ECHRNG EL2NSYNC EL3HLT EL3RST ELNRNG EUNATCH ENOCSI
        EL2HLT EBADE EBADR EXFULL ENOANO EBADRQC EBADSLT EBFONT ENOSTR ENODATA
        ETIME ENOSR ENONET ENOPKG EREMOTE ENOLINK EADV ESRMNT ECOMM EPROTO
        EMULTIHOP EDOTDOT EBADMSG EOVERFLOW ENOTUNIQ EBADFD EREMCHG ELIBACC
        ELIBBAD ELIBSCN ELIBMAX ELIBEXEC EILSEQ ERESTART ESTRPIPE EUSERS
        ENOTSOCK EDESTADDRREQ EMSGSIZE EPROTOTYPE ENOPROTOOPT EPROTONOSUPPORT
        ESOCKTNOSUPPORT EOPNOTSUPP EPFNOSUPPORT EAFNOSUPPORT EADDRINUSE
        EADDRNOTAVAIL ENETDOWN ENETUNREACH ENETRESET ECONNABORTED ECONNRESET
        ENOBUFS EISCONN ENOTCONN ESHUTDOWN ETOOMANYREFS ETIMEDOUT ECONNREFUSED
        EHOSTDOWN EHOSTUNREACH EALREADY EINPROGRESS ESTALE EUCLEAN ENOTNAM
        ENAVAIL EISNAM EREMOTEIO EDQUOT ENOMEDIUM EMEDIUMTYPE ECANCELED ENOKEY
        EKEYEXPIRED EKEYREVOKED EKEYREJECTED EOWNERDEAD ENOTRECOVERABLE
        ERFKILL EHWPOISON
    }
}
