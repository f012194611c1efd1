//! traceroute without a raw socket: UDP probes with a rising TTL, and the
//! ICMP answers read from the socket's *error queue*.
//!
//! Each router that decrements a probe's TTL to 0 drops it and sends back
//! ICMP "time exceeded" (type 11, code 0) from one of its addresses; the
//! destination, which has no program on the probe's port, answers ICMP
//! "port unreachable" (type 3, code 3). With `IP_RECVERR` set, the kernel
//! queues each such ICMP error on the UDP socket that sent the probe
//! instead of just setting `SO_ERROR`: `recvmsg(MSG_ERRQUEUE)` returns it as
//! an `IP_RECVERR` control message, a `sock_extended_err` (origin ICMP,
//! type, code) followed by the address of the node that sent it
//! (`SO_EE_OFFENDER`). See [`ip(7)`](https://man7.org/linux/man-pages/man7/ip.7.html)
//! (IP_RECVERR) and [`recvmsg(2)`](https://man7.org/linux/man-pages/man2/recvmsg.2.html).

use std::io::IoSliceMut;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    self, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, SockaddrIn, sockopt,
};

use crate::kit::{Call, Error, Result, wait};

/// One line of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub ttl: u8,
    /// Who answered; `None` when nobody did within the wait (`* * *`).
    pub from: Option<Ipv4Addr>,
    /// The ICMP type and code of the answer (11/0 time exceeded, 3/3 port
    /// unreachable).
    pub icmp: Option<(u8, u8)>,
    pub rtt: Option<Duration>,
}

impl Hop {
    /// Did this hop come from the destination itself (port unreachable)?
    pub fn reached(&self) -> bool {
        self.icmp == Some((3, 3))
    }
}

/// A UDP socket with `IP_RECVERR` on: ICMP errors for what it sends are
/// queued for `recvmsg(MSG_ERRQUEUE)`.
pub fn probe_socket() -> Result<OwnedFd> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .call("socket(AF_INET, SOCK_DGRAM, 0)")?;
    socket::setsockopt(&fd, sockopt::Ipv4RecvErr, &true).call("setsockopt(IP_RECVERR, 1)")?;
    Ok(fd)
}

/// Read one queued error: `(icmp type, code, offender)`; `None` when the
/// queue is empty.
pub fn read_error_queue(fd: &OwnedFd) -> Result<Option<(u8, u8, Option<Ipv4Addr>)>> {
    let mut data = [0u8; 512];
    let mut iov = [IoSliceMut::new(&mut data)];
    let mut cmsg = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in);
    let msg = match socket::recvmsg::<SockaddrIn>(
        fd.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(m) => m,
        Err(nix::errno::Errno::EAGAIN) => return Ok(None),
        Err(e) => {
            return Err(Error::sys(
                format!("recvmsg({}, MSG_ERRQUEUE)", fd.as_raw_fd()),
                e,
            ));
        }
    };
    for c in msg.cmsgs().map_err(|e| Error::sys("recvmsg cmsgs", e))? {
        if let ControlMessageOwned::Ipv4RecvErr(err, offender) = c
            && err.ee_origin == libc::SO_EE_ORIGIN_ICMP
        {
            let from = offender.map(|sin| Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            return Ok(Some((err.ee_type, err.ee_code, from)));
        }
    }
    Ok(None)
}

// ANCHOR: ch11_trace
/// Trace the route to `dst`: for TTL 1, 2, … `max_hops`, send one UDP probe
/// to `dst:(base_port + ttl)` with `IP_TTL` = ttl from one
/// [`probe_socket`], wait at most `wait` for an answer on its error queue
/// (the socket turns readable with `POLLERR` when one is queued: use
/// [`wait::wait_readable`]) and read it with [`read_error_queue`]. Record a
/// [`Hop`] per TTL (`from: None` when nothing came). Stop after the hop
/// that is port unreachable (3, 3): the destination answered.
///
/// Pitfalls: `IP_TTL` must be set *before* each `sendto`; an answer may be
/// for an earlier, late probe (compare the offender with what you expect
/// only through the TTL you sent last — here: drain the queue before each
/// probe); the error queue is not read by a plain `recv`.
pub fn trace(dst: Ipv4Addr, base_port: u16, max_hops: u8, wait: Duration) -> Result<Vec<Hop>> {
    // BEGIN SOLUTION
    let fd = probe_socket()?;
    let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
    let mut hops = Vec::new();
    for ttl in 1..=max_hops {
        while read_error_queue(&fd)?.is_some() {}
        socket::setsockopt(&fd, sockopt::Ipv4Ttl, &i32::from(ttl))
            .call(format!("setsockopt(IP_TTL, {ttl})"))?;
        let port = base_port.wrapping_add(u16::from(ttl));
        let to = SockaddrIn::from(SocketAddrV4::new(to.ip(), port));
        let sent = Instant::now();
        socket::sendto(fd.as_raw_fd(), b"sockbook probe", &to, MsgFlags::empty())
            .call(format!("sendto({dst}:{port}, ttl {ttl})"))?;
        let mut hop = Hop {
            ttl,
            from: None,
            icmp: None,
            rtt: None,
        };
        let deadline = sent + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || wait::wait_readable(&fd, left).is_err() {
                break;
            }
            if let Some((kind, code, from)) = read_error_queue(&fd)? {
                hop.from = from;
                hop.icmp = Some((kind, code));
                hop.rtt = Some(sent.elapsed());
                break;
            }
        }
        let done = hop.reached();
        hops.push(hop);
        if done {
            break;
        }
    }
    Ok(hops)
    // END SOLUTION
}
// ANCHOR_END: ch11_trace
