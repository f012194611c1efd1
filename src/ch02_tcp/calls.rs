//! The calls of a TCP server and client, written out one by one and narrated
//! like strace. Chapter 2 teaches these; later chapters use the shorter
//! [`crate::kit::net`] wrappers.
//!
//! | seed (Java-ish) | the real calls |
//! |---|---|
//! | `new ServerSocket(port)` | [`listen_on`]: `socket` → `bind` → `listen` |
//! | `serverSocket.accept()` | [`accept_peer`]: `accept4` |
//! | `new Socket(host, port)` | [`connect_to`]: `socket` → `connect` |
//! | `getOutputStream().write` | `write(2)` / `send(2)` |
//! | `getInputStream().read` | `read(2)` / `recv(2)` |
//! | `socket.close()` | [`close_fd`]: `close(2)` |

use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    self, AddressFamily, Backlog, SockFlag, SockType, SockaddrLike, SockaddrStorage,
};

use crate::kit::stop::Woke;
use crate::kit::{Call, Error, Result};
use crate::say;

/// `"hello\n"` the way strace shows a buffer: escaped, at most 24 bytes,
/// then `...`.
pub fn show_bytes(bytes: &[u8]) -> String {
    const MAX: usize = 24;
    let shown = &bytes[..bytes.len().min(MAX)];
    let more = if bytes.len() > MAX { "..." } else { "" };
    format!("\"{}\"{more}", shown.escape_ascii())
}

/// The `AF_` name of an IP address's family.
fn family_of(addr: &SockaddrStorage) -> Result<(AddressFamily, &'static str)> {
    match addr.family() {
        Some(AddressFamily::Inet) => Ok((AddressFamily::Inet, "AF_INET")),
        Some(AddressFamily::Inet6) => Ok((AddressFamily::Inet6, "AF_INET6")),
        other => Err(Error::msg(format!("not an IP address: {other:?}"))),
    }
}

/// [`socket(2)`](https://man7.org/linux/man-pages/man2/socket.2.html): a TCP
/// socket (`SOCK_STREAM`) in the family of `addr`. `SOCK_CLOEXEC` keeps the
/// fd out of any program we might exec.
pub fn tcp_socket(who: &str, addr: &SockaddrStorage) -> Result<OwnedFd> {
    let (family, name) = family_of(addr)?;
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .call(format!("socket({name}, SOCK_STREAM|SOCK_CLOEXEC, 0)"))?;
    say!(
        who,
        "socket({name}, SOCK_STREAM|SOCK_CLOEXEC, 0) = {}",
        fd.as_raw_fd()
    );
    Ok(fd)
}

/// The server's half of the seed's `new ServerSocket(port)`:
/// [`socket(2)`](https://man7.org/linux/man-pages/man2/socket.2.html) →
/// [`bind(2)`](https://man7.org/linux/man-pages/man2/bind.2.html) →
/// [`listen(2)`](https://man7.org/linux/man-pages/man2/listen.2.html), then
/// [`getsockname(2)`](https://man7.org/linux/man-pages/man2/getsockname.2.html)
/// to learn the port the kernel picked when `addr` says port 0.
///
/// No `SO_REUSEADDR` here, on purpose: chapter 2 lets you meet `EADDRINUSE`;
/// chapter 3 explains the option (and `kit::net::tcp_listen` sets it).
pub fn listen_on(
    who: &str,
    addr: &SockaddrStorage,
    backlog: i32,
) -> Result<(OwnedFd, SockaddrStorage)> {
    let fd = tcp_socket(who, addr)?;
    let raw = fd.as_raw_fd();
    socket::bind(raw, addr).call(format!("bind({raw}, {addr})"))?;
    say!(who, "bind({raw}, {addr}) = 0");
    let backlog_arg =
        Backlog::new(backlog).map_err(|e| Error::sys(format!("listen({raw}, {backlog})"), e))?;
    socket::listen(&fd, backlog_arg).call(format!("listen({raw}, {backlog})"))?;
    say!(who, "listen({raw}, {backlog}) = 0");
    let bound: SockaddrStorage = socket::getsockname(raw).call(format!("getsockname({raw})"))?;
    say!(who, "getsockname({raw}) = {bound}");
    Ok((fd, bound))
}

/// The client's `new Socket(host, port)`:
/// [`socket(2)`](https://man7.org/linux/man-pages/man2/socket.2.html) →
/// [`connect(2)`](https://man7.org/linux/man-pages/man2/connect.2.html).
/// The kernel gives the socket an ephemeral local port during `connect`;
/// [`crate::kit::net::local_addr`] (`getsockname`) shows it.
pub fn connect_to(who: &str, addr: &SockaddrStorage) -> Result<OwnedFd> {
    let fd = tcp_socket(who, addr)?;
    let raw = fd.as_raw_fd();
    match socket::connect(raw, addr) {
        Ok(()) => {}
        // A signal during a blocking connect: the handshake goes on in the
        // kernel, and calling connect again would say EALREADY. Wait for it
        // to finish instead, then ask how it went (SO_ERROR).
        Err(Errno::EINTR) => {
            crate::kit::wait::wait_writable(&fd, Duration::from_secs(75))?;
            let err = socket::getsockopt(&fd, socket::sockopt::SocketError)
                .call(format!("getsockopt({raw}, SO_ERROR)"))?;
            if err != 0 {
                return Err(Error::sys(
                    format!("connect({raw}, {addr})"),
                    Errno::from_raw(err),
                ));
            }
        }
        Err(errno) => {
            say!(
                who,
                "connect({raw}, {addr}) = -1 {}",
                crate::kit::error::errno_text(errno)
            );
            return Err(Error::sys(format!("connect({raw}, {addr})"), errno));
        }
    }
    say!(who, "connect({raw}, {addr}) = 0");
    Ok(fd)
}

/// [`accept4(2)`](https://man7.org/linux/man-pages/man2/accept.2.html),
/// called through raw `libc` so the kernel fills in the peer's address (nix
/// 0.31's `accept` throws it away). Returns the new *connected* socket, a
/// different fd from the listener, and who is on the other end. Retries
/// `EINTR`.
///
/// This is the C API underneath, in full:
///
/// ```c
/// struct sockaddr_storage ss;
/// socklen_t len = sizeof ss;
/// int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
/// ```
pub fn accept_peer(who: &str, listener: impl AsFd) -> Result<(OwnedFd, SockaddrStorage)> {
    let lfd = listener.as_fd().as_raw_fd();
    loop {
        // SAFETY: sockaddr_storage is plain old data; all zero bytes is a
        // valid (AF_UNSPEC) value.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `ss` is writable for `len` bytes and `len` is a valid
        // in/out length; the kernel writes at most `len` bytes.
        let raw = unsafe {
            libc::accept4(
                lfd,
                (&raw mut ss).cast::<libc::sockaddr>(),
                &mut len,
                libc::SOCK_CLOEXEC,
            )
        };
        if raw < 0 {
            let err = Error::last_os(format!("accept4({lfd})"));
            if err.errno() == Some(Errno::EINTR) {
                continue;
            }
            return Err(err);
        }
        // SAFETY: accept4 just returned this fd and nothing else owns it;
        // the OwnedFd becomes its only owner and closes it exactly once.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the kernel filled `len` bytes of `ss` with a socket
        // address; from_raw reads no more than `len` and checks the family.
        let peer = unsafe {
            SockaddrStorage::from_raw((&raw const ss).cast::<libc::sockaddr>(), Some(len))
        }
        .ok_or_else(|| Error::msg(format!("accept4({lfd}): unreadable peer address")))?;
        say!(who, "accept4({lfd}, {{{peer}}}, SOCK_CLOEXEC) = {raw}");
        return Ok((fd, peer));
    }
}

/// [`close(2)`](https://man7.org/linux/man-pages/man2/close.2.html), said out
/// loud. Dropping an `OwnedFd` closes it too, silently; this shows the call
/// and reports its (rare) error.
pub fn close_fd(who: &str, fd: OwnedFd) -> Result<()> {
    let raw = fd.as_raw_fd();
    nix::unistd::close(fd).call(format!("close({raw})"))?;
    say!(who, "close({raw}) = 0");
    Ok(())
}

/// Wait until `fd` is readable (data, EOF, an error, or for a listener a
/// connection) or `stop` is readable, for at most `timeout` (`None`: no
/// limit), with one [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html).
/// `stop` wins when both are ready. Retries `EINTR` (with the full timeout:
/// good enough for an idle limit).
///
/// Given, not an assignment: chapter 4 is about waiting on many fds.
pub fn wait_readable_or_stop(
    fd: BorrowedFd<'_>,
    stop: BorrowedFd<'_>,
    timeout: Option<Duration>,
) -> Result<Woke> {
    wait_or_stop(fd, PollFlags::POLLIN, stop, timeout)
}

/// Wait until a write on `fd` will not block (or the connection has failed:
/// the write will then say why) or `stop` is readable, for at most
/// `timeout`. Like [`wait_readable_or_stop`], for the other direction.
pub fn wait_writable_or_stop(
    fd: BorrowedFd<'_>,
    stop: BorrowedFd<'_>,
    timeout: Option<Duration>,
) -> Result<Woke> {
    wait_or_stop(fd, PollFlags::POLLOUT, stop, timeout)
}

fn wait_or_stop(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    stop: BorrowedFd<'_>,
    timeout: Option<Duration>,
) -> Result<Woke> {
    let ms = match timeout {
        None => PollTimeout::NONE,
        Some(t) => PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX),
    };
    loop {
        let mut fds = [
            PollFd::new(fd, events),
            PollFd::new(stop, PollFlags::POLLIN),
        ];
        match poll(&mut fds, ms) {
            Ok(0) => return Ok(Woke::Timeout),
            Ok(_) => {
                if fds[1].any().unwrap_or(false) {
                    return Ok(Woke::Stop);
                }
                return Ok(Woke::Ready);
            }
            Err(Errno::EINTR) => continue,
            Err(errno) => {
                return Err(Error::sys(
                    format!(
                        "poll([{} {events:?}, {} POLLIN])",
                        fd.as_raw_fd(),
                        stop.as_raw_fd()
                    ),
                    errno,
                ));
            }
        }
    }
}
