//! ICMP echo ([RFC 792](https://www.rfc-editor.org/rfc/rfc792)), the
//! messages `ping` sends and receives:
//!
//! ```text
//!  0      7 8     15 16            31
//! +--------+--------+----------------+
//! |  type  |  code  |    checksum    |   type 8 request, 0 reply; code 0
//! +--------+--------+----------------+
//! |   identifier    | sequence number|   chosen by the sender, echoed back
//! +-----------------+----------------+
//! |  data ... (echoed back unchanged)
//! ```

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{self, MsgFlags, SockaddrIn};

use super::checksum::internet_checksum;
use crate::kit::{Call, Error, Result, wait};

/// ICMP type of an echo request.
pub const ECHO_REQUEST: u8 = 8;
/// ICMP type of an echo reply.
pub const ECHO_REPLY: u8 = 0;

/// An ICMP echo request or reply, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Echo {
    /// [`ECHO_REQUEST`] or [`ECHO_REPLY`].
    pub kind: u8,
    pub id: u16,
    pub seq: u16,
    pub payload: Vec<u8>,
}

/// Why bytes are not a good ICMP echo message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpError {
    /// Fewer than the 8 bytes of the header.
    TooShort,
    /// A type other than echo request or reply (e.g. 3, destination
    /// unreachable), or a code other than 0.
    NotEcho,
    /// The checksum over the whole message does not verify.
    BadChecksum,
}

// ANCHOR: ch11_build_echo_request
/// Build an ICMP echo **request** (type 8, code 0) with identifier `id`,
/// sequence number `seq` and `payload`, checksum filled in.
///
/// Layout: type, code, checksum (2 bytes), identifier (2), sequence (2),
/// payload. Numbers are big-endian. The checksum is
/// [`internet_checksum`] of the whole message computed with the checksum
/// field set to 0, then stored big-endian. The kernel drops an echo request
/// whose checksum is wrong, silently: no reply is the only symptom.
pub fn build_echo_request(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    // BEGIN SOLUTION
    let mut msg = Vec::with_capacity(8 + payload.len());
    msg.extend_from_slice(&[ECHO_REQUEST, 0, 0, 0]);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&seq.to_be_bytes());
    msg.extend_from_slice(payload);
    let sum = internet_checksum(&msg);
    msg[2..4].copy_from_slice(&sum.to_be_bytes());
    msg
    // END SOLUTION
}
// ANCHOR_END: ch11_build_echo_request

// ANCHOR: ch11_parse_echo
/// Decode an ICMP echo request or reply: `icmp` starts at the ICMP header
/// (no IP header in front). Refuse a message shorter than 8 bytes
/// ([`IcmpError::TooShort`]), one that is not type 0 or 8 with code 0
/// ([`IcmpError::NotEcho`]), and one whose checksum does not verify
/// ([`IcmpError::BadChecksum`]: the checksum of the whole message, field
/// included, is 0).
pub fn parse_echo(icmp: &[u8]) -> std::result::Result<Echo, IcmpError> {
    // BEGIN SOLUTION
    if icmp.len() < 8 {
        return Err(IcmpError::TooShort);
    }
    if !(icmp[0] == ECHO_REQUEST || icmp[0] == ECHO_REPLY) || icmp[1] != 0 {
        return Err(IcmpError::NotEcho);
    }
    if internet_checksum(icmp) != 0 {
        return Err(IcmpError::BadChecksum);
    }
    Ok(Echo {
        kind: icmp[0],
        id: u16::from_be_bytes([icmp[4], icmp[5]]),
        seq: u16::from_be_bytes([icmp[6], icmp[7]]),
        payload: icmp[8..].to_vec(),
    })
    // END SOLUTION
}
// ANCHOR_END: ch11_parse_echo

/// `socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)`: every ICMP message this host
/// receives is copied to it, **with the IPv4 header in front**; what you
/// send is the ICMP message only (the kernel writes the IP header). Needs
/// `CAP_NET_RAW`. See [`raw(7)`](https://man7.org/linux/man-pages/man7/raw.7.html).
pub fn raw_icmp_socket() -> Result<OwnedFd> {
    socket::socket(
        socket::AddressFamily::Inet,
        socket::SockType::Raw,
        socket::SockFlag::SOCK_CLOEXEC,
        socket::SockProtocol::Icmp,
    )
    .call("socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)")
}

/// The length of the IPv4 header at the start of `packet` (IHL × 4), if
/// the packet is long enough to hold it.
pub fn ipv4_header_len(packet: &[u8]) -> Option<usize> {
    let ihl = usize::from(*packet.first()? & 0x0f) * 4;
    (ihl >= 20 && packet.len() >= ihl).then_some(ihl)
}

// ANCHOR: ch11_ping_once
/// Ping `dst` once over the raw ICMP socket `fd`: send an echo request
/// with `id`, `seq` and `payload` (built with [`build_echo_request`]), then
/// read until **our** reply arrives or `timeout` passes; return the round
/// trip time.
///
/// A raw ICMP socket receives *every* ICMP message of the host: replies to
/// other programs' pings (another identifier), our own request itself when
/// pinging this host (type 8, not 0), errors. Each datagram starts with the
/// IPv4 header: skip it with its real length ([`ipv4_header_len`]), decode
/// the rest with [`parse_echo`], and keep only an echo *reply* with our
/// `id` and `seq` and our payload. Wait with [`wait::wait_readable`] so the
/// timeout holds; on timeout return an error naming `dst`, `id` and `seq`.
pub fn ping_once(
    fd: &OwnedFd,
    dst: Ipv4Addr,
    id: u16,
    seq: u16,
    payload: &[u8],
    timeout: Duration,
) -> Result<Duration> {
    // BEGIN SOLUTION
    let request = build_echo_request(id, seq, payload);
    let to = SockaddrIn::from(std::net::SocketAddrV4::new(dst, 0));
    let sent_at = Instant::now();
    socket::sendto(fd.as_raw_fd(), &request, &to, MsgFlags::empty())
        .call(format!("sendto({}, {dst})", fd.as_raw_fd()))?;
    let deadline = sent_at + timeout;
    let mut buf = [0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || wait::wait_readable(fd, left).is_err() {
            return Err(Error::msg(format!(
                "no echo reply from {dst} (id {id}, seq {seq}) within {timeout:?}"
            )));
        }
        let n = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())
            .call(format!("recv({})", fd.as_raw_fd()))?;
        let packet = &buf[..n];
        let Some(ihl) = ipv4_header_len(packet) else {
            continue;
        };
        if let Ok(echo) = parse_echo(&packet[ihl..])
            && echo.kind == ECHO_REPLY
            && echo.id == id
            && echo.seq == seq
            && echo.payload == payload
        {
            return Ok(sent_at.elapsed());
        }
    }
    // END SOLUTION
}
// ANCHOR_END: ch11_ping_once
