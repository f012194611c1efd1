//! Packet sockets ([`packet(7)`](https://man7.org/linux/man-pages/man7/packet.7.html)):
//! `socket(AF_PACKET, SOCK_RAW | SOCK_DGRAM, htons(protocol))`, bound to one
//! interface with a `sockaddr_ll`. `SOCK_RAW` hands over the whole frame,
//! link-layer header included (14 bytes of Ethernet header on `lo`, its MAC
//! addresses all zero); `SOCK_DGRAM` strips it and starts at the network
//! header. `recvfrom` fills a `sockaddr_ll` whose `sll_pkttype` says which
//! way the packet went: `PACKET_OUTGOING` (sent by this host) or
//! `PACKET_HOST` (addressed to it). On `lo` every packet is both, so a
//! capture there sees each one twice.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::kit::{Error, Result, wait};

/// `ETH_P_ALL` (every protocol) and `ETH_P_IP` (IPv4 only), host order.
pub const ETH_P_ALL: u16 = libc::ETH_P_ALL as u16;
pub const ETH_P_IP: u16 = libc::ETH_P_IP as u16;

/// How the packet socket delivers frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The whole frame, link header included.
    Raw,
    /// From the network header on (the "cooked" form).
    Dgram,
}

/// One captured packet.
#[derive(Debug, Clone)]
pub struct Captured {
    pub bytes: Vec<u8>,
    /// `sll_pkttype`: [`libc::PACKET_HOST`], [`libc::PACKET_OUTGOING`]…
    pub pkttype: u8,
    /// The packet's length on the wire (may exceed `bytes.len()`).
    pub wire_len: usize,
    pub at: Instant,
}

impl Captured {
    /// `outgoing` or `host` (or the number).
    pub fn direction(&self) -> String {
        match self.pkttype {
            libc::PACKET_HOST => "host".into(),
            libc::PACKET_OUTGOING => "outgoing".into(),
            libc::PACKET_BROADCAST => "broadcast".into(),
            libc::PACKET_MULTICAST => "multicast".into(),
            other => format!("pkttype {other}"),
        }
    }
}

/// `socket(AF_PACKET, kind, htons(protocol))` bound to interface `ifname`.
/// Needs `CAP_NET_RAW`. The socket is nonblocking; use [`recv_packet`].
pub fn open(kind: Kind, protocol: u16, ifname: &str) -> Result<OwnedFd> {
    let ty = match kind {
        Kind::Raw => libc::SOCK_RAW,
        Kind::Dgram => libc::SOCK_DGRAM,
    };
    let shown = format!(
        "socket(AF_PACKET, {}, htons({protocol:#06x}))",
        if kind == Kind::Raw {
            "SOCK_RAW"
        } else {
            "SOCK_DGRAM"
        }
    );
    // SAFETY: plain socket(2) with constant arguments; checked below.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            i32::from(protocol.to_be()),
        )
    };
    if raw == -1 {
        return Err(Error::last_os(shown));
    }
    // SAFETY: socket() just returned this fd and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let ifindex = nix::net::if_::if_nametoindex(ifname)
        .map_err(|e| Error::sys(format!("if_nametoindex({ifname})"), e))?;
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: passes a pointer to a sockaddr_ll we own and its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(Error::last_os(format!(
            "bind({}, sockaddr_ll {{ ifindex {ifindex} ({ifname}) }})",
            fd.as_raw_fd()
        )));
    }
    Ok(fd)
}

/// The next packet, waiting at most `timeout`; `None` on timeout. Uses
/// `recvfrom` with a `sockaddr_ll` to learn the packet type, and
/// `MSG_TRUNC` to learn the full length even when `max` cut it.
pub fn recv_packet(fd: &OwnedFd, max: usize, timeout: Duration) -> Result<Option<Captured>> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; max];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || wait::wait_readable(fd, left).is_err() {
            return Ok(None);
        }
        // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: buf and sll are ours and sized as passed.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
                (&mut sll as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n == -1 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            }
            return Err(Error::last_os(format!(
                "recvfrom({}, AF_PACKET)",
                fd.as_raw_fd()
            )));
        }
        let wire_len = n as usize;
        return Ok(Some(Captured {
            bytes: buf[..wire_len.min(max)].to_vec(),
            pkttype: sll.sll_pkttype,
            wire_len,
            at: Instant::now(),
        }));
    }
}

/// `getsockopt(PACKET_STATISTICS)`: packets the socket received and
/// dropped since the last call (reading resets the counters).
pub fn statistics(fd: &OwnedFd) -> Result<(u32, u32)> {
    // SAFETY: tpacket_stats is two u32s; all-zero is valid.
    let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: passes a tpacket_stats we own and its size.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if rc == -1 {
        return Err(Error::last_os("getsockopt(PACKET_STATISTICS)"));
    }
    Ok((st.tp_packets, st.tp_drops))
}
