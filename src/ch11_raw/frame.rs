//! Decoding a captured packet: the IPv4 header
//! ([RFC 791](https://www.rfc-editor.org/rfc/rfc791)) and the TCP, UDP or
//! ICMP header after it. A capture is untrusted input: any length, any
//! bytes. The decoder never panics and never reads past the end.
//!
//! ```text
//!  0       4       8              16      19                      31
//! +-------+-------+---------------+-------------------------------+
//! |version|  IHL  |     TOS       |         total length          |
//! +-------+-------+---------------+-------+-----------------------+
//! |        identification         | flags |   fragment offset     |
//! +---------------+---------------+-------+-----------------------+
//! |      TTL      |   protocol    |        header checksum        |
//! +---------------+---------------+-------------------------------+
//! |                       source address                          |
//! |                     destination address                       |
//! |                options (IHL > 5) ... padding                  |
//! +---------------------------------------------------------------+
//! ```

use std::net::Ipv4Addr;

/// The IPv4 header's fields that a capture tool prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4 {
    /// Header length in bytes: IHL × 4 (20 without options, up to 60).
    pub header_len: usize,
    /// Total length of the datagram as the header says.
    pub total_len: u16,
    pub id: u16,
    /// The MF ("more fragments") flag.
    pub more_fragments: bool,
    /// Fragment offset in bytes (the field × 8).
    pub fragment_offset: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

/// What follows the IPv4 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Tcp {
        src_port: u16,
        dst_port: u16,
        seq: u32,
        ack: u32,
        /// The flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
        flags: u8,
        /// TCP header length in bytes (data offset × 4).
        header_len: usize,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
        /// The UDP length field (header + data).
        len: u16,
    },
    Icmp {
        kind: u8,
        code: u8,
    },
    /// A fragment other than the first: its bytes continue another
    /// fragment's, there is no transport header here.
    LaterFragment,
    /// The capture ends inside the transport header.
    Truncated,
    /// Another protocol (by number): not decoded.
    Other(u8),
}

/// A decoded packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub ip: Ipv4,
    pub transport: Transport,
}

/// Why bytes could not be decoded at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than 20 bytes, or shorter than the header length IHL says.
    Truncated,
    /// Version is not 4, or IHL < 5.
    NotIpv4,
}

// ANCHOR: ch11_parse_ipv4
/// Decode an IPv4 packet (`bytes` starts at the IPv4 header, as a
/// `SOCK_DGRAM` packet socket or a raw socket delivers it).
///
/// - Version must be 4 and IHL at least 5, else [`FrameError::NotIpv4`].
/// - The header is IHL × 4 bytes **including options**: never assume 20.
///   Fewer bytes than that: [`FrameError::Truncated`].
/// - Flags and fragment offset share 16 bits: MF is 0x2000, the offset is
///   the low 13 bits in units of 8 bytes.
/// - A fragment with offset > 0 carries no transport header:
///   [`Transport::LaterFragment`].
/// - Otherwise decode TCP (protocol 6: ports, seq, ack, flags byte 13, data
///   offset = high nibble of byte 12 × 4), UDP (17: ports, length) or ICMP
///   (1: type, code); [`Transport::Truncated`] when the capture ends before
///   that header does (TCP: before its 20 fixed bytes; UDP 8; ICMP 4);
///   [`Transport::Other`] for other protocols.
/// - Never index past `bytes.len()`: use `get` or check lengths first.
pub fn parse_ipv4(bytes: &[u8]) -> Result<Packet, FrameError> {
    // BEGIN SOLUTION
    let first = *bytes.first().ok_or(FrameError::Truncated)?;
    if first >> 4 != 4 || first & 0x0f < 5 {
        return Err(FrameError::NotIpv4);
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if bytes.len() < header_len {
        return Err(FrameError::Truncated);
    }
    let be16 = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
    let flags_frag = be16(6);
    let ip = Ipv4 {
        header_len,
        total_len: be16(2),
        id: be16(4),
        more_fragments: flags_frag & 0x2000 != 0,
        fragment_offset: (flags_frag & 0x1fff) * 8,
        ttl: bytes[8],
        protocol: bytes[9],
        src: Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]),
        dst: Ipv4Addr::new(bytes[16], bytes[17], bytes[18], bytes[19]),
    };
    let rest = &bytes[header_len..];
    let r16 = |i: usize| u16::from_be_bytes([rest[i], rest[i + 1]]);
    let r32 = |i: usize| u32::from_be_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
    let transport = if ip.fragment_offset > 0 {
        Transport::LaterFragment
    } else {
        match ip.protocol {
            6 if rest.len() >= 20 => Transport::Tcp {
                src_port: r16(0),
                dst_port: r16(2),
                seq: r32(4),
                ack: r32(8),
                flags: rest[13],
                header_len: usize::from(rest[12] >> 4) * 4,
            },
            17 if rest.len() >= 8 => Transport::Udp {
                src_port: r16(0),
                dst_port: r16(2),
                len: r16(4),
            },
            1 if rest.len() >= 4 => Transport::Icmp {
                kind: rest[0],
                code: rest[1],
            },
            6 | 17 | 1 => Transport::Truncated,
            other => Transport::Other(other),
        }
    };
    Ok(Packet { ip, transport })
    // END SOLUTION
}
// ANCHOR_END: ch11_parse_ipv4

impl Packet {
    /// One line, tcpdump style: `IP 127.0.0.1.5000 > 127.0.0.2.53: UDP, length 12`.
    pub fn summary(&self) -> String {
        let (s, d) = (self.ip.src, self.ip.dst);
        match &self.transport {
            Transport::Tcp {
                src_port,
                dst_port,
                flags,
                seq,
                ..
            } => format!(
                "IP {s}.{src_port} > {d}.{dst_port}: Flags [{}], seq {seq}, length {}",
                tcp_flags(*flags),
                self.ip.total_len
            ),
            Transport::Udp {
                src_port,
                dst_port,
                len,
            } => format!(
                "IP {s}.{src_port} > {d}.{dst_port}: UDP, length {}",
                len.saturating_sub(8)
            ),
            Transport::Icmp { kind, code } => format!(
                "IP {s} > {d}: ICMP {}, length {}",
                icmp_name(*kind, *code),
                self.ip.total_len
            ),
            Transport::LaterFragment => format!(
                "IP {s} > {d}: fragment at offset {} (proto {})",
                self.ip.fragment_offset, self.ip.protocol
            ),
            Transport::Truncated => format!("IP {s} > {d}: proto {} [truncated]", self.ip.protocol),
            Transport::Other(p) => format!("IP {s} > {d}: proto {p}, length {}", self.ip.total_len),
        }
    }
}

fn tcp_flags(flags: u8) -> String {
    let mut out = String::new();
    for (bit, c) in [
        (0x02, 'S'),
        (0x01, 'F'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x10, '.'),
    ] {
        if flags & bit != 0 {
            out.push(c);
        }
    }
    out
}

/// A name for common ICMP types: `echo request`, `time exceeded`…
pub fn icmp_name(kind: u8, code: u8) -> String {
    match (kind, code) {
        (0, _) => "echo reply".into(),
        (8, _) => "echo request".into(),
        (3, 3) => "port unreachable".into(),
        (3, 1) => "host unreachable".into(),
        (3, 4) => "fragmentation needed".into(),
        (3, c) => format!("destination unreachable (code {c})"),
        (11, 0) => "time exceeded in transit".into(),
        (k, c) => format!("type {k} code {c}"),
    }
}
