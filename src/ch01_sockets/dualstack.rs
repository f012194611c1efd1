//! IPv6 and dual stack: one `AF_INET6` listener on `::` that serves IPv4
//! clients too (as v4-mapped addresses), `IPV6_V6ONLY` that stops it,
//! `AI_PASSIVE` for the server's wildcard addresses, and `getnameinfo` to
//! turn an address back into text or a name.
//!
//! Calls: [`getaddrinfo(3)`](https://man7.org/linux/man-pages/man3/getaddrinfo.3.html)
//! with `AI_PASSIVE`,
//! [`getnameinfo(3)`](https://man7.org/linux/man-pages/man3/getnameinfo.3.html),
//! `IPV6_V6ONLY` ([`ipv6(7)`](https://man7.org/linux/man-pages/man7/ipv6.7.html)),
//! `net.ipv6.bindv6only` (its default).

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr;

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, Backlog, SockFlag, SockType, SockaddrLike, SockaddrStorage, sockopt,
};

use super::gai_error;
use crate::kit::error::errno_text;
use crate::kit::narrate::{heading, note};
use crate::kit::{Call, Error, Result, addr};
use crate::say;

/// `getaddrinfo(NULL, service, {AI_PASSIVE, AF_UNSPEC, SOCK_STREAM})`: the
/// addresses a server should bind to listen on every interface, as the
/// C library lists them (`0.0.0.0` and `::`, in its order).
pub fn passive_addresses(service: &str) -> Result<Vec<SockaddrStorage>> {
    let c_service = CString::new(service).map_err(|_| Error::msg("service has a NUL byte"))?;
    let hints = libc::addrinfo {
        ai_flags: libc::AI_PASSIVE,
        ai_family: libc::AF_UNSPEC,
        ai_socktype: libc::SOCK_STREAM,
        ai_protocol: 0,
        ai_addrlen: 0,
        ai_addr: ptr::null_mut(),
        ai_canonname: ptr::null_mut(),
        ai_next: ptr::null_mut(),
    };
    let mut res: *mut libc::addrinfo = ptr::null_mut();
    // SAFETY: a NULL node is allowed with AI_PASSIVE; the service and hints
    // outlive the call; `res` receives a list we free below, once.
    let rc = unsafe { libc::getaddrinfo(ptr::null(), c_service.as_ptr(), &hints, &mut res) };
    if rc != 0 {
        return Err(gai_error(
            format!("getaddrinfo(NULL, {service:?}, AI_PASSIVE)"),
            rc,
        ));
    }
    let mut out = Vec::new();
    let mut p = res;
    while !p.is_null() {
        // SAFETY: `p` is a node of the list getaddrinfo returned, not yet
        // freed; its ai_addr points at ai_addrlen bytes of address.
        let (addr, len, next) = unsafe { ((*p).ai_addr, (*p).ai_addrlen, (*p).ai_next) };
        // SAFETY: `addr` holds `len` bytes of a socket address (above).
        if let Some(a) = unsafe { SockaddrStorage::from_raw(addr, Some(len)) } {
            out.push(a);
        }
        p = next;
    }
    // SAFETY: `res` came from a successful getaddrinfo and is freed once.
    unsafe { libc::freeaddrinfo(res) };
    Ok(out)
}

/// [`getnameinfo(3)`](https://man7.org/linux/man-pages/man3/getnameinfo.3.html):
/// an address back to `(host, service)` text. With `numeric` the host is
/// the address itself (`NI_NUMERICHOST | NI_NUMERICSERV`); without, a name
/// from `/etc/hosts` or DNS where there is one (`NI_NAMEREQD` is not set,
/// so an address without a name comes back as numbers).
pub fn name_of(addr: &SockaddrStorage, numeric: bool) -> Result<(String, String)> {
    let mut host = [0 as libc::c_char; 1025]; // NI_MAXHOST
    let mut serv = [0 as libc::c_char; 32]; // NI_MAXSERV
    let flags = if numeric {
        libc::NI_NUMERICHOST | libc::NI_NUMERICSERV
    } else {
        libc::NI_NUMERICSERV
    };
    // SAFETY: the address pointer and length describe `addr`; the host and
    // service buffers are writable for the lengths passed.
    let rc = unsafe {
        libc::getnameinfo(
            addr.as_ptr(),
            addr.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            serv.as_mut_ptr(),
            serv.len() as libc::socklen_t,
            flags,
        )
    };
    if rc != 0 {
        return Err(gai_error(format!("getnameinfo({addr})"), rc));
    }
    // SAFETY: on success both buffers hold NUL-terminated strings.
    let text = |b: &[libc::c_char]| {
        unsafe { CStr::from_ptr(b.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    Ok((text(&host), text(&serv)))
}

/// An `AF_INET6` stream socket with `IPV6_V6ONLY` set to `v6only`, bound to
/// `[::]:port` and listening. Returns it and its port.
fn listener_v6(v6only: bool, port: u16) -> Result<(OwnedFd, u16)> {
    let fd = socket::socket(
        AddressFamily::Inet6,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .call("socket(AF_INET6, SOCK_STREAM, 0)")?;
    let raw = fd.as_raw_fd();
    let default = socket::getsockopt(&fd, sockopt::Ipv6V6Only).call("getsockopt(IPV6_V6ONLY)")?;
    socket::setsockopt(&fd, sockopt::Ipv6V6Only, &v6only).call("setsockopt(IPV6_V6ONLY)")?;
    say!(
        "server",
        "socket(AF_INET6, SOCK_STREAM, 0) = {raw}; IPV6_V6ONLY was {}, setsockopt(IPV6_V6ONLY, {}) = 0",
        u8::from(default),
        u8::from(v6only)
    );
    let any = addr::parse(&format!("[::]:{port}"))?;
    socket::bind(raw, &any).call(format!("bind({raw}, {any})"))?;
    socket::listen(&fd, Backlog::new(8).call("Backlog")?).call(format!("listen({raw})"))?;
    let bound = socket::getsockname::<SockaddrStorage>(raw).call("getsockname")?;
    let port = bound
        .as_sockaddr_in6()
        .map(|a| a.port())
        .ok_or_else(|| Error::msg("listener is not AF_INET6"))?;
    say!(
        "server",
        "bind({raw}, {any}) = 0; listen({raw}, 8) = 0; getsockname = {bound}"
    );
    Ok((fd, port))
}

/// Connect a client of `to`'s family to `to`; the result, narrated.
fn try_connect(to: &SockaddrStorage) -> Result<Option<OwnedFd>> {
    let family = if to.as_sockaddr_in6().is_some() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd =
        socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).call("socket")?;
    let raw = fd.as_raw_fd();
    match socket::connect(raw, to) {
        Ok(()) => {
            say!("client", "connect({raw}, {to}) = 0");
            Ok(Some(fd))
        }
        Err(e) => {
            say!("client", "connect({raw}, {to}) = -1 {}", errno_text(e));
            Ok(None)
        }
    }
}

/// Accept one connection and print its peer the way `accept` returned it,
/// numerically and by name (`getnameinfo`).
fn accept_and_name(listener: &OwnedFd) -> Result<()> {
    let (conn, peer) = crate::kit::net::accept("server", listener)?;
    let (host, serv) = name_of(&peer, true)?;
    say!(
        "server",
        "getnameinfo(peer, NI_NUMERICHOST|NI_NUMERICSERV) = {host:?}, {serv:?}"
    );
    drop(conn);
    Ok(())
}

/// The narrated part (the tour's part 7, and the `dualstack` subcommand).
/// Runs in a private network namespace where the kernel allows one, so the
/// wildcard listeners exist only there; elsewhere it binds `::` on this
/// machine for a moment (a random port, only our own loopback connections).
pub fn demo(in_private_netns: bool) -> Result<()> {
    heading("7. IPv6 and dual stack: one listener on [::] for both families");
    if in_private_netns {
        note("in a private network namespace: the [::] listeners below exist only there");
    } else {
        note("on this machine's own stack: [::] listeners on a random port, for a moment");
    }
    let bindv6only = std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "(unreadable)".into());
    note(format!(
        "net.ipv6.bindv6only = {bindv6only}: the default of IPV6_V6ONLY for new AF_INET6 sockets"
    ));
    let passive = passive_addresses("8080")?;
    say!(
        "server",
        "getaddrinfo(NULL, \"8080\", {{AI_PASSIVE, AF_UNSPEC, SOCK_STREAM}}) = [{}]",
        passive
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    note(
        "AI_PASSIVE with no host: the wildcard addresses, what a server binds to listen on every \
         interface (without AI_PASSIVE you would get the loopback addresses instead)",
    );

    note("7a. IPV6_V6ONLY = 0: an IPv4 client reaches the [::] listener");
    let (listener, port) = listener_v6(false, 0)?;
    let v4 = addr::parse(&format!("127.0.0.1:{port}"))?;
    let v6 = addr::parse(&format!("[::1]:{port}"))?;
    for to in [&v4, &v6] {
        if let Some(_client) = try_connect(to)? {
            accept_and_name(&listener)?;
        }
    }
    note(
        "the IPv4 client appears as ::ffff:127.0.0.1, a v4-mapped IPv6 address: the kernel speaks \
         IPv4 on the wire and shows the server one family",
    );
    reverse_lookup_localhost()?;
    note("while this listener holds [::]:PORT, it holds 0.0.0.0:PORT too:");
    let v4_any = addr::parse(&format!("0.0.0.0:{port}"))?;
    report_v4_bind(&v4_any)?;
    drop(listener);

    note("7b. IPV6_V6ONLY = 1: the same listener for IPv6 only");
    let (listener, port) = listener_v6(true, 0)?;
    let v4 = addr::parse(&format!("127.0.0.1:{port}"))?;
    let v6 = addr::parse(&format!("[::1]:{port}"))?;
    for to in [&v4, &v6] {
        if let Some(_client) = try_connect(to)? {
            accept_and_name(&listener)?;
        }
    }
    note(
        "refused over IPv4: nothing listens on 127.0.0.1:PORT now; and the port is free for an IPv4 socket:",
    );
    let v4_any = addr::parse(&format!("0.0.0.0:{port}"))?;
    report_v4_bind(&v4_any)?;
    drop(listener);
    note(
        "so: one [::] socket with IPV6_V6ONLY = 0 serves both families; or two sockets, [::] with \
         IPV6_V6ONLY = 1 and 0.0.0.0. Set the option yourself: its default is a sysctl",
    );
    note(
        "the client side, trying each getaddrinfo result in turn until one connects, is this \
         chapter's try-each-address assignment",
    );
    Ok(())
}

/// `getnameinfo` without `NI_NUMERICHOST`: a name for 127.0.0.1, but only
/// when `/etc/hosts` lists that address, so the answer comes from the file
/// and no DNS query leaves the machine.
fn reverse_lookup_localhost() -> Result<()> {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let listed = hosts.lines().any(|l| {
        let l = l.split('#').next().unwrap_or("");
        l.split_whitespace().next() == Some("127.0.0.1")
    });
    if !listed {
        note("(/etc/hosts has no 127.0.0.1 line: no reverse lookup, it would ask DNS)");
        return Ok(());
    }
    let a = addr::parse("127.0.0.1:8080")?;
    match name_of(&a, false) {
        Ok((host, serv)) => say!(
            "",
            "getnameinfo(127.0.0.1:8080, NI_NUMERICSERV) = {host:?}, {serv:?}   (the name, from /etc/hosts)"
        ),
        Err(e) => say!("", "getnameinfo(127.0.0.1:8080, NI_NUMERICSERV): {e}"),
    }
    Ok(())
}

/// Bind an IPv4 socket to `at` and say what happened.
fn report_v4_bind(at: &SockaddrStorage) -> Result<()> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .call("socket(AF_INET)")?;
    let raw = fd.as_raw_fd();
    match socket::bind(raw, at) {
        Ok(()) => say!("other", "bind({raw}, {at}) = 0"),
        Err(Errno::EADDRINUSE) => say!(
            "other",
            "bind({raw}, {at}) = -1 {}",
            errno_text(Errno::EADDRINUSE)
        ),
        Err(e) => return Err(Error::sys(format!("bind({raw}, {at})"), e)),
    }
    Ok(())
}

/// Move into a private user+network namespace for this part if the kernel
/// allows it (single-threaded callers only); otherwise print why not and
/// stay. Returns whether it moved.
pub fn enter_namespace_if_allowed() -> bool {
    if let Some(why) = crate::kit::netns::refusal() {
        note(format!("no private namespace: {why}"));
        return false;
    }
    match crate::kit::netns::enter_private_netns() {
        Ok(()) => true,
        Err(e) => {
            note(format!("no private namespace: {e}"));
            false
        }
    }
}
