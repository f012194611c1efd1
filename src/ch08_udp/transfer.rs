//! Assignment 3: reliable transfer over UDP, through the lossy relay.
//!
//! The wire format is fixed (so any sender works with any receiver):
//!
//! ```text
//! DATA  'D' | seq: u32 BE | flags: u8 (1 = last) | up to CHUNK bytes
//! ACK   'A' | next: u32 BE        (every packet before `next` has arrived)
//! ```
//!
//! Packet `seq` carries bytes `seq*CHUNK ..`. An empty file is one DATA
//! packet, `seq` 0, flagged last, with no bytes. The ACK is cumulative: it
//! names the first packet the receiver still lacks, so one lost ACK is made
//! good by the next.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, SockaddrStorage};

use super::dgram;
use crate::kit::{Error, Result, wait};

/// Bytes of file per DATA packet.
pub const CHUNK: usize = 1024;

/// Flag bit: this DATA packet is the last.
pub const LAST: u8 = 1;

/// A decoded packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `seq`, is it the last, the bytes.
    Data {
        seq: u32,
        last: bool,
        bytes: Vec<u8>,
    },
    /// Cumulative acknowledgement: all packets before `next` arrived.
    Ack { next: u32 },
}

/// Encode a DATA packet.
pub fn data_packet(seq: u32, last: bool, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + bytes.len());
    out.push(b'D');
    out.extend_from_slice(&seq.to_be_bytes());
    out.push(if last { LAST } else { 0 });
    out.extend_from_slice(bytes);
    out
}

/// Encode an ACK.
pub fn ack_packet(next: u32) -> Vec<u8> {
    let mut out = vec![b'A'];
    out.extend_from_slice(&next.to_be_bytes());
    out
}

/// Decode a packet; `None` for anything malformed (garbage is ignored).
pub fn decode(datagram: &[u8]) -> Option<Packet> {
    let seq = u32::from_be_bytes(datagram.get(1..5)?.try_into().ok()?);
    match datagram[0] {
        b'D' if datagram.len() >= 6 && datagram.len() <= 6 + CHUNK => Some(Packet::Data {
            seq,
            last: datagram[5] & LAST != 0,
            bytes: datagram[6..].to_vec(),
        }),
        b'A' if datagram.len() == 5 => Some(Packet::Ack { next: seq }),
        _ => None,
    }
}

/// The file cut into packets' worth of bytes (one empty chunk for an empty file).
pub fn chunks(data: &[u8]) -> Vec<&[u8]> {
    if data.is_empty() {
        vec![&data[..0]]
    } else {
        data.chunks(CHUNK).collect()
    }
}

/// Timers and sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferConfig {
    /// Packets in flight at most (1 = stop-and-wait).
    pub window: u32,
    /// Retransmission timeout: resend when the oldest unacknowledged packet
    /// has waited this long.
    pub rto: Duration,
    /// Give up (`ETIMEDOUT`) after this long without progress.
    pub give_up: Duration,
    /// The receiver, once it has everything, keeps acknowledging until
    /// it has heard nothing for this long (its last ACK may be lost, and
    /// then the sender resends the last packet).
    pub linger: Duration,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            window: 32,
            rto: Duration::from_millis(50),
            give_up: Duration::from_secs(5),
            linger: Duration::from_millis(300),
        }
    }
}

/// What a sender did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// DATA packets in the file.
    pub packets: u32,
    /// DATA datagrams sent, retransmissions included.
    pub datagrams: u32,
    /// From the first send to the last packet's ACK.
    pub elapsed: Duration,
}

/// What a receiver got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// The file.
    pub data: Vec<u8>,
    /// DATA packets that arrived again (duplicates, retransmissions).
    pub duplicates: u32,
    /// DATA packets that arrived before one they follow.
    pub early: u32,
}

fn timed_out(what: String) -> Error {
    Error::sys(what, Errno::ETIMEDOUT)
}

/// Wait at most `left` for a datagram; `None` when the time ran out.
fn next_datagram(sock: BorrowedFd<'_>, left: Duration) -> Result<Option<dgram::Datagram>> {
    match wait::wait_readable(sock, left) {
        Ok(()) => {}
        Err(e) if e.errno() == Some(Errno::ETIMEDOUT) => return Ok(None),
        Err(e) => return Err(e),
    }
    match dgram::recv_datagram(sock, 2 * CHUNK, MsgFlags::MSG_DONTWAIT) {
        Ok(d) => Ok(Some(d)),
        // Readable but gone (EAGAIN), or an ICMP error for an earlier send:
        // no datagram this time; the caller's clock decides what next.
        Err(e) if matches!(e.errno(), Some(Errno::EAGAIN | Errno::ECONNREFUSED)) => {
            Ok(Some(dgram::Datagram {
                data: Vec::new(),
                len: 0,
                truncated: false,
                from: None,
            }))
        }
        Err(e) => Err(e),
    }
}

/// The baseline: stop-and-wait. Send packet `i`, wait up to `rto` for an
/// ACK beyond it, resend until one comes. One packet per round trip at
/// best: the number the sliding window is graded against.
pub fn send_stop_and_wait(
    sock: impl AsFd,
    to: &SockaddrStorage,
    data: &[u8],
    config: TransferConfig,
) -> Result<Sent> {
    let sock = sock.as_fd();
    let start = Instant::now();
    let parts = chunks(data);
    let mut sent = Sent {
        packets: parts.len() as u32,
        ..Sent::default()
    };
    for (i, part) in parts.iter().enumerate() {
        let packet = data_packet(i as u32, i + 1 == parts.len(), part);
        let progress = Instant::now();
        'resend: loop {
            if progress.elapsed() > config.give_up {
                return Err(timed_out(format!(
                    "stop-and-wait: packet {i} never acknowledged"
                )));
            }
            dgram::send_to(sock, &packet, to)?;
            sent.datagrams += 1;
            let deadline = Instant::now() + config.rto;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let Some(d) = next_datagram(sock, left)? else {
                    continue 'resend;
                };
                if let Some(Packet::Ack { next }) = decode(&d.data)
                    && next as usize > i
                {
                    break 'resend;
                }
            }
        }
    }
    sent.elapsed = start.elapsed();
    Ok(sent)
}

/// The baseline's receiver: go-back-N's, which keeps only the packet it
/// expects next and acknowledges every DATA packet with the cumulative ACK.
pub fn receive_in_order(sock: impl AsFd, config: TransferConfig) -> Result<Received> {
    let sock = sock.as_fd();
    let mut got = Received::default();
    let mut expected = 0u32;
    let mut done = false;
    loop {
        let wait = if done { config.linger } else { config.give_up };
        let Some(d) = next_datagram(sock, wait)? else {
            return if done {
                Ok(got)
            } else {
                Err(timed_out(format!("receive: nothing for {wait:?}")))
            };
        };
        let (Some(Packet::Data { seq, last, bytes }), Some(from)) = (decode(&d.data), d.from)
        else {
            continue;
        };
        if seq == expected && !done {
            got.data.extend_from_slice(&bytes);
            expected += 1;
            done = last;
        } else if seq < expected {
            got.duplicates += 1;
        } else {
            got.early += 1;
        }
        dgram::send_to(sock, &ack_packet(expected), &from)?;
    }
}

// ANCHOR: ch08_send_file
/// **Assignment (3 points, with [`receive_file`]):** send `data` reliably
/// to `to` with a sliding window, and return when every packet is
/// acknowledged.
///
/// - Cut the file with [`chunks`]; packet `i` is
///   [`data_packet`]`(i, i is the last, chunk i)`.
/// - Keep `base` (the oldest unacknowledged packet) and `next` (the next
///   never sent). Send while `next < base + config.window`.
/// - Wait for ACKs ([`wait::wait_readable`] with the time left until the
///   retransmission timer fires, then [`dgram::recv_datagram`] with
///   `MSG_DONTWAIT`). An ACK `n` with `base < n <= next` moves `base` to `n`
///   and restarts the timer. Ignore anything that does not [`decode`] to an
///   ACK: stale ACKs, duplicates, garbage.
/// - When the timer fires (`config.rto` after the last progress or the last
///   retransmission), resend every packet in `base..next` and restart it.
/// - No progress for `config.give_up`: fail with `ETIMEDOUT`.
/// - Done when `base` reaches the number of packets. Fill in [`Sent`].
pub fn send_file(
    sock: impl AsFd,
    to: &SockaddrStorage,
    data: &[u8],
    config: TransferConfig,
) -> Result<Sent> {
    let sock = sock.as_fd();
    let start = Instant::now();
    let parts = chunks(data);
    // BEGIN SOLUTION
    let total = parts.len() as u32;
    let packet = |i: u32| data_packet(i, i + 1 == total, parts[i as usize]);
    let mut sent = Sent {
        packets: total,
        ..Sent::default()
    };
    let (mut base, mut next) = (0u32, 0u32);
    let mut timer = Instant::now() + config.rto;
    let mut progress = Instant::now();
    while base < total {
        while next < total && next < base + config.window {
            if base == next {
                timer = Instant::now() + config.rto;
            }
            dgram::send_to(sock, &packet(next), to)?;
            sent.datagrams += 1;
            next += 1;
        }
        let now = Instant::now();
        if now >= timer {
            if progress.elapsed() > config.give_up {
                return Err(timed_out(format!(
                    "send_file: no ACK beyond {base} of {total} for {:?}",
                    config.give_up
                )));
            }
            for i in base..next {
                dgram::send_to(sock, &packet(i), to)?;
                sent.datagrams += 1;
            }
            timer = Instant::now() + config.rto;
            continue;
        }
        let Some(d) = next_datagram(sock, timer - now)? else {
            continue;
        };
        if let Some(Packet::Ack { next: n }) = decode(&d.data)
            && n > base
            && n <= next
        {
            base = n;
            progress = Instant::now();
            timer = progress + config.rto;
        }
    }
    sent.elapsed = start.elapsed();
    Ok(sent)
    // END SOLUTION
}
// ANCHOR_END: ch08_send_file

// ANCHOR: ch08_receive_file
/// **Assignment (with [`send_file`]):** receive a file sent with
/// [`send_file`] on `sock` and return it.
///
/// - Wait for DATA ([`wait::wait_readable`], then [`dgram::recv_datagram`]
///   with `MSG_DONTWAIT`); ignore what does not [`decode`] to DATA.
/// - Keep `expected` (the first packet you lack). Packets may arrive out of
///   order, twice, or never: keep early ones (a `BTreeMap` from seq to
///   bytes, at most `4096` packets ahead), count repeats in `duplicates`
///   and early ones in `early`, and move every packet that is now in order
///   into the file.
/// - Answer every DATA packet with [`ack_packet`]`(expected)` to the address
///   it came from, even a duplicate: the sender's ACK may have been lost.
/// - The file is complete when the packet flagged last has been moved in.
///   Then keep acknowledging until nothing has come for `config.linger`,
///   and return. Before that, nothing for `config.give_up` is `ETIMEDOUT`.
pub fn receive_file(sock: impl AsFd, config: TransferConfig) -> Result<Received> {
    let sock = sock.as_fd();
    let mut got = Received::default();
    // BEGIN SOLUTION
    let mut expected = 0u32;
    let mut early: BTreeMap<u32, (bool, Vec<u8>)> = BTreeMap::new();
    let mut done = false;
    loop {
        let quiet_for = if done { config.linger } else { config.give_up };
        let Some(d) = next_datagram(sock, quiet_for)? else {
            return if done {
                Ok(got)
            } else {
                Err(timed_out(format!(
                    "receive_file on fd {}: nothing for {quiet_for:?}, {} bytes so far",
                    sock.as_raw_fd(),
                    got.data.len()
                )))
            };
        };
        let (Some(Packet::Data { seq, last, bytes }), Some(from)) = (decode(&d.data), d.from)
        else {
            continue;
        };
        if seq < expected || early.contains_key(&seq) {
            got.duplicates += 1;
        } else if seq < expected.saturating_add(4096) && !done {
            if seq > expected {
                got.early += 1;
            }
            early.insert(seq, (last, bytes));
            while let Some((last, bytes)) = early.remove(&expected) {
                got.data.extend_from_slice(&bytes);
                expected += 1;
                if last {
                    done = true;
                    early.clear();
                }
            }
        }
        dgram::send_to(sock, &ack_packet(expected), &from)?;
    }
    // END SOLUTION
}
// ANCHOR_END: ch08_receive_file
