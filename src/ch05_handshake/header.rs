//! Decoding the headers of a captured packet: IPv4
//! ([RFC 791](https://www.rfc-editor.org/rfc/rfc791#section-3.1)) and TCP
//! ([RFC 9293](https://www.rfc-editor.org/rfc/rfc9293#section-3.1)).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Sequence Number                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Acknowledgment Number                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Data |       |C|E|U|A|P|R|S|F|                               |
//! | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//! |       |       |R|E|G|K|H|T|N|N|                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Checksum            |         Urgent Pointer        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options (Data Offset - 5 words)            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                             Data                              |
//! ```

use std::net::Ipv4Addr;

use crate::kit::{Error, Result};

/// TCP flag bits, in the low byte of header bytes 12–13.
pub mod flags {
    /// No more data from the sender: the connection's close.
    pub const FIN: u8 = 0x01;
    /// Synchronize sequence numbers: the handshake's first two segments.
    pub const SYN: u8 = 0x02;
    /// Reset: abort the connection.
    pub const RST: u8 = 0x04;
    /// Push: deliver to the application now.
    pub const PSH: u8 = 0x08;
    /// The acknowledgment number is valid.
    pub const ACK: u8 = 0x10;
    /// The urgent pointer is valid.
    pub const URG: u8 = 0x20;
    /// ECN echo.
    pub const ECE: u8 = 0x40;
    /// Congestion window reduced.
    pub const CWR: u8 = 0x80;
}

/// One TCP option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpOption {
    /// Kind 2: maximum segment size.
    Mss(u16),
    /// Kind 3: window scale shift count.
    WindowScale(u8),
    /// Kind 4: selective acknowledgments are allowed.
    SackPermitted,
    /// Kind 5: selective acknowledgment blocks `(left, right)`.
    Sack(Vec<(u32, u32)>),
    /// Kind 8: timestamps (`TSval`, `TSecr`).
    Timestamps(u32, u32),
    /// Any other kind, with its data bytes (without kind and length).
    Other(u8, Vec<u8>),
}

/// A decoded TCP header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpHeader {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    /// Header length in bytes (data offset × 4), options included.
    pub header_len: usize,
    /// The eight flag bits (see [`flags`]).
    pub flags: u8,
    /// The receive window as sent (before any window scaling).
    pub window: u16,
    pub checksum: u16,
    pub urgent: u16,
    /// The options in the order they appear; NOP (kind 1) and End of
    /// Option List (kind 0) are not included.
    pub options: Vec<TcpOption>,
    /// Bytes of data after the header.
    pub payload_len: usize,
}

// ANCHOR: ch05_decode_tcp
/// Decode the TCP header at the start of `bytes` (a TCP segment: header,
/// options, data).
///
/// Task: read the fixed 20 bytes (all fields big-endian, "network order"),
/// then the options, which fill bytes 20 up to the data offset × 4:
/// - kind 0 (End of Option List) ends the options; kind 1 (NOP) is a single
///   padding byte; every other kind is followed by a length byte that counts
///   the kind and length bytes too.
/// - decode kinds 2 (MSS, u16), 3 (window scale, u8), 4 (SACK permitted),
///   5 (SACK: pairs of u32), 8 (timestamps: two u32); keep any other kind as
///   [`TcpOption::Other`].
///
/// Return `Error::msg` (never panic, never index past the end) when the
/// segment is shorter than 20 bytes, the data offset is below 5 or past the
/// end of `bytes`, or an option's length is below 2 or runs past the
/// header. `payload_len` is what follows the header.
///
/// Hint: `u16::from_be_bytes([b[0], b[1]])`; the data offset is the high
/// nibble of byte 12; the flags are byte 13.
pub fn decode_tcp(bytes: &[u8]) -> Result<TcpHeader> {
    // BEGIN SOLUTION
    fn be16(b: &[u8]) -> u16 {
        u16::from_be_bytes([b[0], b[1]])
    }
    fn be32(b: &[u8]) -> u32 {
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    if bytes.len() < 20 {
        return Err(Error::msg(format!(
            "TCP header: {} bytes, need at least 20",
            bytes.len()
        )));
    }
    let header_len = usize::from(bytes[12] >> 4) * 4;
    if header_len < 20 || header_len > bytes.len() {
        return Err(Error::msg(format!(
            "TCP header: data offset {header_len} bytes with {} bytes captured",
            bytes.len()
        )));
    }
    let mut options = Vec::new();
    let mut rest = &bytes[20..header_len];
    while let Some(&kind) = rest.first() {
        match kind {
            0 => break,
            1 => {
                rest = &rest[1..];
                continue;
            }
            _ => {}
        }
        let len = usize::from(
            *rest
                .get(1)
                .ok_or_else(|| Error::msg(format!("TCP option {kind}: no length byte")))?,
        );
        if len < 2 || len > rest.len() {
            return Err(Error::msg(format!(
                "TCP option {kind}: length {len} with {} bytes left",
                rest.len()
            )));
        }
        let data = &rest[2..len];
        options.push(match (kind, data.len()) {
            (2, 2) => TcpOption::Mss(be16(data)),
            (3, 1) => TcpOption::WindowScale(data[0]),
            (4, 0) => TcpOption::SackPermitted,
            (5, n) if n % 8 == 0 => TcpOption::Sack(
                data.chunks(8)
                    .map(|c| (be32(&c[..4]), be32(&c[4..])))
                    .collect(),
            ),
            (8, 8) => TcpOption::Timestamps(be32(data), be32(&data[4..])),
            _ => TcpOption::Other(kind, data.to_vec()),
        });
        rest = &rest[len..];
    }
    Ok(TcpHeader {
        src_port: be16(&bytes[0..]),
        dst_port: be16(&bytes[2..]),
        seq: be32(&bytes[4..]),
        ack: be32(&bytes[8..]),
        header_len,
        flags: bytes[13],
        window: be16(&bytes[14..]),
        checksum: be16(&bytes[16..]),
        urgent: be16(&bytes[18..]),
        options,
        payload_len: bytes.len() - header_len,
    })
    // END SOLUTION
}
// ANCHOR_END: ch05_decode_tcp

impl TcpHeader {
    /// Is every bit of `mask` set?
    pub fn has(&self, mask: u8) -> bool {
        self.flags & mask == mask
    }

    /// The flags the way `tcpdump` writes them: `S`, `S.`, `.`, `F.`, `R`,
    /// `P.` (a dot is ACK).
    pub fn flag_text(&self) -> String {
        let mut s = String::new();
        for (bit, c) in [
            (flags::SYN, 'S'),
            (flags::FIN, 'F'),
            (flags::RST, 'R'),
            (flags::PSH, 'P'),
            (flags::URG, 'U'),
            (flags::ECE, 'E'),
            (flags::CWR, 'W'),
        ] {
            if self.has(bit) {
                s.push(c);
            }
        }
        if self.has(flags::ACK) {
            s.push('.');
        }
        if s.is_empty() {
            s.push_str("none");
        }
        s
    }

    /// The flags by name: `SYN+ACK`, `FIN+ACK`, `RST`, `PSH+ACK`.
    pub fn flag_names(&self) -> String {
        let names: Vec<&str> = [
            (flags::SYN, "SYN"),
            (flags::FIN, "FIN"),
            (flags::RST, "RST"),
            (flags::PSH, "PSH"),
            (flags::URG, "URG"),
            (flags::ACK, "ACK"),
        ]
        .iter()
        .filter(|(bit, _)| self.has(*bit))
        .map(|(_, n)| *n)
        .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join("+")
        }
    }

    /// The options the way `tcpdump` writes them: `mss 65495,sackOK,TS val
    /// 1 ecr 0,nop,wscale 7` (NOPs left out).
    pub fn options_text(&self) -> String {
        self.options
            .iter()
            .map(|o| match o {
                TcpOption::Mss(m) => format!("mss {m}"),
                TcpOption::WindowScale(w) => format!("wscale {w}"),
                TcpOption::SackPermitted => "sackOK".into(),
                TcpOption::Sack(blocks) => format!("sack {}", blocks.len()),
                TcpOption::Timestamps(v, e) => format!("TS val {v} ecr {e}"),
                TcpOption::Other(k, d) => format!("opt-{k}[{}]", d.len()),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The parts of an IPv4 header a TCP capture needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Header {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// 6 for TCP.
    pub protocol: u8,
    /// Header length in bytes (IHL × 4).
    pub header_len: usize,
    /// The whole datagram's length, from the header.
    pub total_len: usize,
    pub ttl: u8,
}

/// Decode an IPv4 header (not an assignment: chapter 11 builds one by hand).
pub fn decode_ipv4(bytes: &[u8]) -> Result<Ipv4Header> {
    if bytes.len() < 20 || bytes[0] >> 4 != 4 {
        return Err(Error::msg("not an IPv4 packet"));
    }
    let header_len = usize::from(bytes[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    if header_len < 20 || header_len > bytes.len() || total_len < header_len {
        return Err(Error::msg("IPv4 header: bad length fields"));
    }
    Ok(Ipv4Header {
        src: Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]),
        dst: Ipv4Addr::new(bytes[16], bytes[17], bytes[18], bytes[19]),
        protocol: bytes[9],
        header_len,
        total_len,
        ttl: bytes[8],
    })
}
