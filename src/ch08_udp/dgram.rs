//! The datagram calls every part of the chapter uses: a UDP socket bound and
//! narrated, `sendto`, and a `recvmsg` that says how long the datagram
//! really was (`MSG_TRUNC`) and who sent it.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, SockFlag, SockType, SockaddrLike, SockaddrStorage,
};

use crate::kit::{Call, Error, Result, wait};
use crate::say;

/// The largest UDP payload over IPv4: 65535 (the IP length field) minus a
/// 20-byte IP header and an 8-byte UDP header.
pub const MAX_UDP4: usize = 65535 - 20 - 8;

/// The largest UDP payload over IPv6 without jumbograms: 65535 (the payload
/// length field, which excludes the 40-byte IPv6 header) minus 8.
pub const MAX_UDP6: usize = 65535 - 8;

/// [`socket(2)`](https://man7.org/linux/man-pages/man2/socket.2.html)
/// `SOCK_DGRAM` in `family`, close-on-exec.
pub fn udp_socket(who: &str, family: AddressFamily) -> Result<OwnedFd> {
    let name = if family == AddressFamily::Inet6 {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    let fd = socket::socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .call(format!("socket({name}, SOCK_DGRAM, 0)"))?;
    if !who.is_empty() {
        say!(who, "socket({name}, SOCK_DGRAM, 0) = {}", fd.as_raw_fd());
    }
    Ok(fd)
}

/// (Narrated unless `who` is empty.)
/// socket → [`bind(2)`](https://man7.org/linux/man-pages/man2/bind.2.html),
/// narrated; returns the socket and the address it got (`getsockname`).
/// There is no `listen` and no `accept`: a bound UDP socket is ready.
pub fn udp_bind(who: &str, addr: &SockaddrStorage) -> Result<(OwnedFd, SockaddrStorage)> {
    let family = addr
        .family()
        .ok_or_else(|| Error::msg(format!("{addr}: no address family")))?;
    let fd = udp_socket(who, family)?;
    socket::bind(fd.as_raw_fd(), addr).call(format!("bind({}, {addr})", fd.as_raw_fd()))?;
    let bound = crate::kit::net::local_addr(&fd)?;
    if !who.is_empty() {
        say!(who, "bind({}, {addr}) = 0 -> {bound}", fd.as_raw_fd());
    }
    Ok((fd, bound))
}

/// `127.0.0.1:0` as a nix address.
pub fn loopback_any() -> SockaddrStorage {
    SockaddrStorage::from(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        0,
    ))
}

/// [`sendto(2)`](https://man7.org/linux/man-pages/man2/sendto.2.html) one
/// datagram to `to`. The whole datagram goes, or none of it: there are no
/// short sends on UDP.
pub fn send_to(fd: impl AsFd, data: &[u8], to: &SockaddrStorage) -> Result<usize> {
    let raw = fd.as_fd().as_raw_fd();
    socket::sendto(raw, data, to, MsgFlags::empty())
        .call(format!("sendto({raw}, {} bytes, {to})", data.len()))
}

/// One datagram as `recvmsg` returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The bytes that fit in the buffer.
    pub data: Vec<u8>,
    /// The datagram's real length (with `MSG_TRUNC` in the flags the kernel
    /// returns it even when the buffer was shorter).
    pub len: usize,
    /// Did the kernel cut it (`MSG_TRUNC` in `msg_flags`)? The rest is gone.
    pub truncated: bool,
    /// The sender.
    pub from: Option<SockaddrStorage>,
}

/// [`recvmsg(2)`](https://man7.org/linux/man-pages/man2/recvmsg.2.html) one
/// datagram into a buffer of `buf_len` bytes, with `MSG_TRUNC` among the
/// flags (see [`udp(7)`](https://man7.org/linux/man-pages/man7/udp.7.html)),
/// so that the return value is the real length. Retries `EINTR`.
pub fn recv_datagram(fd: impl AsFd, buf_len: usize, flags: MsgFlags) -> Result<Datagram> {
    let raw = fd.as_fd().as_raw_fd();
    let mut buf = vec![0u8; buf_len];
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match socket::recvmsg::<SockaddrStorage>(raw, &mut iov, None, flags | MsgFlags::MSG_TRUNC) {
            Ok(msg) => {
                let (len, truncated, from) = (
                    msg.bytes,
                    msg.flags.contains(MsgFlags::MSG_TRUNC),
                    msg.address,
                );
                buf.truncate(len.min(buf_len));
                return Ok(Datagram {
                    data: buf,
                    len,
                    truncated,
                    from,
                });
            }
            Err(Errno::EINTR) => continue,
            Err(errno) => {
                return Err(Error::sys(
                    format!("recvmsg({raw}, {buf_len}-byte buffer, MSG_TRUNC)"),
                    errno,
                ));
            }
        }
    }
}

/// Wait at most `timeout` for a datagram, then receive it (see
/// [`recv_datagram`]). An expired wait is an error with `ETIMEDOUT`.
pub fn recv_within(fd: impl AsFd, buf_len: usize, timeout: Duration) -> Result<Datagram> {
    let fd = fd.as_fd();
    wait::wait_readable(fd, timeout)?;
    recv_datagram(fd, buf_len, MsgFlags::MSG_DONTWAIT)
}

/// Set an `int` socket option with raw
/// [`setsockopt(2)`](https://man7.org/linux/man-pages/man2/setsockopt.2.html):
/// for the options nix lacks (`IP_MULTICAST_IF` takes an `in_addr`, see
/// [`set_multicast_if`]), and to show the C form once.
pub fn set_int_option(
    fd: impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
    what: &str,
) -> Result<()> {
    let raw = fd.as_fd().as_raw_fd();
    // SAFETY: value is a live c_int and we pass its exact size.
    let rc = unsafe {
        libc::setsockopt(
            raw,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(Error::last_os(format!(
            "setsockopt({raw}, {what}, {value})"
        )));
    }
    Ok(())
}

/// Read an `int` socket option with raw `getsockopt(2)`.
pub fn get_int_option(
    fd: impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    what: &str,
) -> Result<libc::c_int> {
    let raw = fd.as_fd().as_raw_fd();
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are live locals; len says how big value is.
    let rc = unsafe {
        libc::getsockopt(
            raw,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == -1 {
        return Err(Error::last_os(format!("getsockopt({raw}, {what})")));
    }
    Ok(value)
}

/// `IP_MULTICAST_IF` ([`ip(7)`](https://man7.org/linux/man-pages/man7/ip.7.html)):
/// the interface, named by one of its addresses, that multicast from this
/// socket leaves by. The workbook always sets it to 127.0.0.1 before it
/// sends to a group, so nothing leaves the machine.
pub fn set_multicast_if(fd: impl AsFd, local: std::net::Ipv4Addr) -> Result<()> {
    let raw = fd.as_fd().as_raw_fd();
    let addr = libc::in_addr {
        s_addr: u32::from(local).to_be(),
    };
    // SAFETY: addr is a live in_addr and we pass its exact size.
    let rc = unsafe {
        libc::setsockopt(
            raw,
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&addr as *const libc::in_addr).cast(),
            size_of::<libc::in_addr>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(Error::last_os(format!(
            "setsockopt({raw}, IP_MULTICAST_IF, {local})"
        )));
    }
    Ok(())
}

/// The counters of the `Udp:` line in `/proc/net/snmp` (the whole network
/// namespace): `InDatagrams`, `RcvbufErrors`, …
pub fn udp_snmp() -> Result<Vec<(String, u64)>> {
    let text = std::fs::read_to_string("/proc/net/snmp")
        .map_err(|e| Error::msg(format!("read /proc/net/snmp: {e}")))?;
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return Err(Error::msg("/proc/net/snmp has no Udp: lines"));
    };
    Ok(names
        .split_whitespace()
        .skip(1)
        .zip(values.split_whitespace().skip(1))
        .map(|(n, v)| (n.to_string(), v.parse().unwrap_or(0)))
        .collect())
}

/// One counter of [`udp_snmp`], 0 if absent.
pub fn udp_counter(name: &str) -> u64 {
    udp_snmp()
        .ok()
        .and_then(|all| all.into_iter().find(|(n, _)| n == name).map(|(_, v)| v))
        .unwrap_or(0)
}

/// A number from a file under `/proc/sys` (e.g. `net/core/rmem_max`).
pub fn sysctl(path: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/{path}"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
