//! Checked, narrated wrappers for the calls every chapter makes, in the
//! spirit of UNIX Network Programming's `Socket`, `Bind`, `Listen`,
//! `Accept`: each does the call, prints it like strace, and turns a failure
//! into an [`Error`] that names the call and the errno. Chapter 2 writes
//! these calls out one by one; later chapters lean on this file.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{
    self, AddressFamily, Backlog, SockFlag, SockType, SockaddrLike, SockaddrStorage, sockopt,
};

use super::addr;
use super::error::{Call, Error, Result};
use crate::say;

/// The address family of an IPv4 or IPv6 address.
fn family_of(addr: &SockaddrStorage) -> Result<AddressFamily> {
    match addr.family() {
        Some(f @ (AddressFamily::Inet | AddressFamily::Inet6)) => Ok(f),
        other => Err(Error::msg(format!("not an IP address family: {other:?}"))),
    }
}

/// [`socket(2)`](https://man7.org/linux/man-pages/man2/socket.2.html) for a
/// TCP stream in the family of `addr`, close-on-exec.
pub fn tcp_socket(who: &str, family: AddressFamily) -> Result<OwnedFd> {
    let name = if family == AddressFamily::Inet6 {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .call(format!("socket({name}, SOCK_STREAM, 0)"))?;
    say!(who, "socket({name}, SOCK_STREAM, 0) = {}", fd.as_raw_fd());
    Ok(fd)
}

/// socket → setsockopt(SO_REUSEADDR) → bind → listen, narrated. Returns the
/// listening socket and the address it really got (the kernel picks the port
/// for `:0`), read back with `getsockname`.
pub fn tcp_listen(
    who: &str,
    addr: &SockaddrStorage,
    backlog: i32,
) -> Result<(OwnedFd, SockaddrStorage)> {
    let fd = tcp_socket(who, family_of(addr)?)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)
        .call(format!("setsockopt({}, SO_REUSEADDR, 1)", fd.as_raw_fd()))?;
    say!(
        who,
        "setsockopt({}, SOL_SOCKET, SO_REUSEADDR, 1) = 0",
        fd.as_raw_fd()
    );
    socket::bind(fd.as_raw_fd(), addr).call(format!("bind({}, {addr})", fd.as_raw_fd()))?;
    say!(who, "bind({}, {addr}) = 0", fd.as_raw_fd());
    let backlog_arg =
        Backlog::new(backlog).map_err(|e| Error::sys(format!("listen(backlog {backlog})"), e))?;
    socket::listen(&fd, backlog_arg).call(format!("listen({}, {backlog})", fd.as_raw_fd()))?;
    say!(who, "listen({}, {backlog}) = 0", fd.as_raw_fd());
    let bound = local_addr(&fd)?;
    say!(who, "getsockname({}) = {bound}", fd.as_raw_fd());
    Ok((fd, bound))
}

/// socket → connect, narrated.
pub fn tcp_connect(who: &str, addr: &SockaddrStorage) -> Result<OwnedFd> {
    let fd = tcp_socket(who, family_of(addr)?)?;
    socket::connect(fd.as_raw_fd(), addr).call(format!("connect({}, {addr})", fd.as_raw_fd()))?;
    say!(who, "connect({}, {addr}) = 0", fd.as_raw_fd());
    Ok(fd)
}

/// [`accept(2)`](https://man7.org/linux/man-pages/man2/accept.2.html) one
/// connection, narrated, with the peer's address as `accept4` itself
/// returns it (nix's `accept` drops it; `getpeername` would fail with
/// ENOTCONN on a connection the peer reset while it was queued, which Linux
/// still hands to `accept`). Retries `EINTR`. A failed accept is sorted by
/// [`super::accept::triage`]: one connection's problem, out of fds, or the
/// server's.
pub fn accept(who: &str, listener: impl AsFd) -> Result<(OwnedFd, SockaddrStorage)> {
    let lfd = listener.as_fd().as_raw_fd();
    // SAFETY: sockaddr_storage is plain old data; all zero bytes is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let raw = loop {
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
        if raw >= 0 {
            break (raw, len);
        }
        let errno = nix::errno::Errno::last();
        if errno != nix::errno::Errno::EINTR {
            return Err(Error::sys(format!("accept({lfd})"), errno));
        }
    };
    let (raw, len) = raw;
    // SAFETY: accept4 just returned this fd; nothing else owns it, and the
    // OwnedFd becomes its only owner, which closes it exactly once.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: the kernel filled `len` bytes of `ss` with the peer's address;
    // from_raw reads no more than `len` and checks the family.
    let peer =
        unsafe { SockaddrStorage::from_raw((&raw const ss).cast::<libc::sockaddr>(), Some(len)) }
            .ok_or_else(|| Error::msg(format!("accept({lfd}): unreadable peer address")))?;
    say!(who, "accept({lfd}) = {raw} peer={peer}");
    Ok((fd, peer))
}

/// [`getsockname(2)`](https://man7.org/linux/man-pages/man2/getsockname.2.html):
/// the local address of a socket.
pub fn local_addr(fd: impl AsFd) -> Result<SockaddrStorage> {
    let raw = fd.as_fd().as_raw_fd();
    socket::getsockname(raw).call(format!("getsockname({raw})"))
}

/// [`getpeername(2)`](https://man7.org/linux/man-pages/man2/getpeername.2.html):
/// the address of the connected peer.
pub fn peer_addr(fd: impl AsFd) -> Result<SockaddrStorage> {
    let raw = fd.as_fd().as_raw_fd();
    socket::getpeername(raw).call(format!("getpeername({raw})"))
}

/// The local port of a socket, in host byte order.
pub fn local_port(fd: impl AsFd) -> Result<u16> {
    let local = local_addr(fd)?;
    addr::port(&local).ok_or_else(|| Error::msg(format!("{local} has no port")))
}

/// Turn `O_NONBLOCK` on or off with
/// [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html).
pub fn set_nonblocking(fd: impl AsFd, on: bool) -> Result<()> {
    let fd = fd.as_fd();
    let raw = fd.as_raw_fd();
    let flags = fcntl(fd, FcntlArg::F_GETFL).call(format!("fcntl({raw}, F_GETFL)"))?;
    let mut flags = OFlag::from_bits_truncate(flags);
    flags.set(OFlag::O_NONBLOCK, on);
    fcntl(fd, FcntlArg::F_SETFL(flags)).call(format!("fcntl({raw}, F_SETFL, {flags:?})"))?;
    Ok(())
}
