//! Assignment 2: the resolver's problem. Send a request over UDP, wait for
//! the reply with a timeout, resend with exponential backoff, give up after
//! a retry limit, and accept only the reply that answers *this* request.
//!
//! The protocol: a request is a request id in decimal, a space, and the
//! query (`"17 what time is it?"`); the reply starts with the same id and a
//! space. DNS (RFC 1035) works the same way with a 16-bit binary id; text
//! keeps this one readable in `tcpdump -A` and lets `nc -u` play the server.

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, SockaddrStorage};

use super::dgram;
use crate::kit::{Error, Result, wait};

/// How long to wait and how often to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// How long to wait for a reply after the first send.
    pub first_timeout: Duration,
    /// Each retry waits this many times longer than the try before it
    /// (2 = exponential backoff, doubling).
    pub factor: u32,
    /// Sends in all, the first included: after the last one's timeout the
    /// request fails with `ETIMEDOUT`.
    pub tries: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first_timeout: Duration::from_millis(200),
            factor: 2,
            tries: 4,
        }
    }
}

/// The request datagram: the id in decimal, a space, the query.
pub fn encode_request(id: u32, query: &[u8]) -> Vec<u8> {
    let mut out = format!("{id} ").into_bytes();
    out.extend_from_slice(query);
    out
}

/// Split a datagram into its id and its body: `"17 it is noon"` is
/// `(17, "it is noon")`. `None` when it does not start with digits and a
/// space.
pub fn split_id(datagram: &[u8]) -> Option<(u32, &[u8])> {
    let space = datagram.iter().position(|&b| b == b' ')?;
    let digits = &datagram[..space];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let id = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((id, &datagram[space + 1..]))
}

/// What [`request`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply's body (after the id and its space).
    pub body: Vec<u8>,
    /// How many times the request was sent.
    pub sends: u32,
    /// Datagrams received and ignored: from another address, too short,
    /// or with another id (stale replies to earlier requests, strays).
    pub ignored: u32,
}

// ANCHOR: ch08_request
/// **Assignment (4 points):** send request `id` with `query` on the
/// unconnected UDP socket `sock` to `server`, and return the body of the
/// reply that answers it.
///
/// - Send [`encode_request`]`(id, query)` with [`dgram::send_to`], then wait
///   for a reply at most `backoff.first_timeout`
///   ([`wait::wait_readable`] with the time *left*).
/// - A datagram that is not from `server`, or that [`split_id`] cannot
///   split, or whose id is not `id`, is not the answer: count it in
///   `ignored` and keep waiting for the rest of this try's time. (Compare
///   addresses with `to_string()`.)
/// - When a try's time runs out, send the same request again (same id) and
///   wait `factor` times longer than last time. After `backoff.tries` sends
///   and the last wait, fail with `ETIMEDOUT`:
///   `Err(Error::sys("request(...)", Errno::ETIMEDOUT))`.
/// - Receive with [`dgram::recv_datagram`] and `MSG_DONTWAIT`; a receive
///   that fails with `ECONNREFUSED` (an unconnected socket rarely sees one,
///   but it can) counts as nothing: keep waiting.
pub fn request(
    sock: impl AsFd,
    server: &SockaddrStorage,
    id: u32,
    query: &[u8],
    backoff: Backoff,
) -> Result<Reply> {
    let sock = sock.as_fd();
    // BEGIN SOLUTION
    let datagram = encode_request(id, query);
    let want_from = server.to_string();
    let mut timeout = backoff.first_timeout;
    let mut ignored = 0;
    for sends in 1..=backoff.tries {
        dgram::send_to(sock, &datagram, server)?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match wait::wait_readable(sock, left) {
                Ok(()) => {}
                Err(e) if e.errno() == Some(Errno::ETIMEDOUT) => break,
                Err(e) => return Err(e),
            }
            let d = match dgram::recv_datagram(sock, 65536, MsgFlags::MSG_DONTWAIT) {
                Ok(d) => d,
                Err(e) if matches!(e.errno(), Some(Errno::EAGAIN | Errno::ECONNREFUSED)) => {
                    continue;
                }
                Err(e) => return Err(e),
            };
            let from_server = d.from.as_ref().is_some_and(|f| f.to_string() == want_from);
            if from_server
                && !d.truncated
                && let Some((got_id, body)) = split_id(&d.data)
                && got_id == id
            {
                return Ok(Reply {
                    body: body.to_vec(),
                    sends,
                    ignored,
                });
            }
            ignored += 1;
        }
        timeout *= backoff.factor;
    }
    Err(Error::sys(
        format!(
            "request(fd {}, id {id}) to {server}: {} sends, no reply",
            sock.as_raw_fd(),
            backoff.tries
        ),
        Errno::ETIMEDOUT,
    ))
    // END SOLUTION
}
// ANCHOR_END: ch08_request
