//! `TCP_INFO` as bytes: a summary decoded from however many bytes the
//! kernel returned. `struct tcp_info` only ever grows at its end, so an
//! older kernel fills in a prefix of it; a field that lies past the end of
//! what came back is absent (`None`), not zero.
//!
//! (The kit's [`crate::kit::tcp::tcp_info`] reads the same option into a
//! whole `libc::tcp_info`; this is the chapter's look underneath.)

use std::fmt;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd};

use crate::kit::tcp::state_name;
use crate::kit::{Error, Result};

/// The fields of `TCP_INFO` this chapter looks at, each present only if the
/// kernel's answer reached the end of it. Times are in microseconds, except
/// the `last_*` ones (milliseconds ago).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpSummary {
    /// How many bytes the kernel returned (what was decoded).
    pub len: usize,
    /// `tcpi_state`: 1 ESTABLISHED … 10 LISTEN ([`state_name`]).
    pub state: Option<u8>,
    /// `tcpi_ca_state`: congestion-avoidance state, 0 is "Open".
    pub ca_state: Option<u8>,
    /// `tcpi_retransmits`: retransmissions of the segment now timing out.
    pub retransmits: Option<u8>,
    /// `tcpi_probes`: unanswered zero-window or keepalive probes.
    pub probes: Option<u8>,
    /// `tcpi_backoff`: how many times the retransmission timer backed off.
    pub backoff: Option<u8>,
    /// `tcpi_rto`: retransmission timeout (µs).
    pub rto: Option<u32>,
    /// `tcpi_ato`: delayed-ACK timeout (µs).
    pub ato: Option<u32>,
    /// `tcpi_snd_mss`: the segment size this side sends.
    pub snd_mss: Option<u32>,
    /// `tcpi_rcv_mss`: the segment size the peer seems to send.
    pub rcv_mss: Option<u32>,
    /// `tcpi_unacked`: segments sent and not yet acknowledged.
    pub unacked: Option<u32>,
    /// `tcpi_last_data_sent`: ms since data was last sent.
    pub last_data_sent: Option<u32>,
    /// `tcpi_last_data_recv`: ms since data was last received.
    pub last_data_recv: Option<u32>,
    /// `tcpi_last_ack_recv`: ms since an ACK was last received.
    pub last_ack_recv: Option<u32>,
    /// `tcpi_pmtu`: path MTU.
    pub pmtu: Option<u32>,
    /// `tcpi_rtt`: smoothed round-trip time (µs).
    pub rtt: Option<u32>,
    /// `tcpi_rttvar`: round-trip time variation (µs).
    pub rttvar: Option<u32>,
    /// `tcpi_snd_ssthresh`: slow-start threshold (segments).
    pub snd_ssthresh: Option<u32>,
    /// `tcpi_snd_cwnd`: congestion window (segments).
    pub snd_cwnd: Option<u32>,
    /// `tcpi_advmss`: the MSS this side advertised.
    pub advmss: Option<u32>,
    /// `tcpi_total_retrans`: retransmitted segments over the connection's life.
    pub total_retrans: Option<u32>,
    /// `tcpi_bytes_acked`: bytes the peer has acknowledged (Linux 4.1+).
    pub bytes_acked: Option<u64>,
    /// `tcpi_bytes_received`: bytes received in order (Linux 4.1+).
    pub bytes_received: Option<u64>,
    /// `tcpi_segs_out`: segments sent, including pure ACKs and probes (4.2+).
    pub segs_out: Option<u32>,
    /// `tcpi_segs_in`: segments received (4.2+).
    pub segs_in: Option<u32>,
    /// `tcpi_min_rtt`: the lowest round-trip time seen (µs, 4.10+).
    pub min_rtt: Option<u32>,
    /// `tcpi_data_segs_out`: segments sent that carried data (4.6+).
    pub data_segs_out: Option<u32>,
    /// `tcpi_bytes_sent`: bytes sent, retransmissions included (4.19+).
    pub bytes_sent: Option<u64>,
    /// `tcpi_snd_wnd`: the peer's receive window as last seen (5.4+).
    pub snd_wnd: Option<u32>,
}

// ANCHOR: ch03_decode_tcp_info
/// Decode a [`TcpSummary`] from the bytes `getsockopt(…, TCP_INFO, …)`
/// returned, however many: an older kernel returns a shorter prefix of
/// `struct tcp_info`, a newer one may return more than this libc knows.
///
/// Task:
/// - `len` is `bytes.len()`.
/// - Each field of the summary is the field of `libc::tcp_info` with the
///   same name after `tcpi_`; it lies at `offset_of!(libc::tcp_info, tcpi_x)`
///   and is `size_of` its type long. If `bytes` reaches the end of it, decode
///   it with `from_ne_bytes` (native byte order: the kernel wrote it with a
///   plain copy); otherwise it is `None`.
/// - Bytes past the end of the struct this libc knows are ignored.
/// - Never index past `bytes.len()`: `bytes.get(a..b)` returns `None` there.
///
/// Hint: a small local macro `field!(tcpi_rto, u32)` saves typing.
pub fn decode_tcp_info(bytes: &[u8]) -> TcpSummary {
    // BEGIN SOLUTION
    use std::mem::offset_of;
    macro_rules! field {
        ($name:ident, $t:ty) => {{
            let at = offset_of!(libc::tcp_info, $name);
            bytes
                .get(at..at + size_of::<$t>())
                .and_then(|b| b.try_into().ok())
                .map(<$t>::from_ne_bytes)
        }};
    }
    TcpSummary {
        len: bytes.len(),
        state: field!(tcpi_state, u8),
        ca_state: field!(tcpi_ca_state, u8),
        retransmits: field!(tcpi_retransmits, u8),
        probes: field!(tcpi_probes, u8),
        backoff: field!(tcpi_backoff, u8),
        rto: field!(tcpi_rto, u32),
        ato: field!(tcpi_ato, u32),
        snd_mss: field!(tcpi_snd_mss, u32),
        rcv_mss: field!(tcpi_rcv_mss, u32),
        unacked: field!(tcpi_unacked, u32),
        last_data_sent: field!(tcpi_last_data_sent, u32),
        last_data_recv: field!(tcpi_last_data_recv, u32),
        last_ack_recv: field!(tcpi_last_ack_recv, u32),
        pmtu: field!(tcpi_pmtu, u32),
        rtt: field!(tcpi_rtt, u32),
        rttvar: field!(tcpi_rttvar, u32),
        snd_ssthresh: field!(tcpi_snd_ssthresh, u32),
        snd_cwnd: field!(tcpi_snd_cwnd, u32),
        advmss: field!(tcpi_advmss, u32),
        total_retrans: field!(tcpi_total_retrans, u32),
        bytes_acked: field!(tcpi_bytes_acked, u64),
        bytes_received: field!(tcpi_bytes_received, u64),
        segs_out: field!(tcpi_segs_out, u32),
        segs_in: field!(tcpi_segs_in, u32),
        min_rtt: field!(tcpi_min_rtt, u32),
        data_segs_out: field!(tcpi_data_segs_out, u32),
        bytes_sent: field!(tcpi_bytes_sent, u64),
        snd_wnd: field!(tcpi_snd_wnd, u32),
    }
    // END SOLUTION
}
// ANCHOR_END: ch03_decode_tcp_info

/// Read `TCP_INFO` with a raw `libc::getsockopt`, offering
/// `size_of::<libc::tcp_info>()` bytes and keeping only as many as the
/// kernel says it filled in, then decode them with [`decode_tcp_info`].
///
/// ```c
/// struct tcp_info info; socklen_t len = sizeof info;
/// getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len);  /* len may shrink */
/// ```
pub fn read_tcp_info(fd: impl AsFd) -> Result<TcpSummary> {
    let raw = fd.as_fd().as_raw_fd();
    // A byte buffer: the kernel copies bytes, so no alignment is needed, and
    // decoding reads each field with from_ne_bytes.
    let mut buf = [0u8; size_of::<libc::tcp_info>()];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` has `len` writable bytes and outlives the call; the
    // kernel writes at most `len` bytes and stores the count in `len`.
    let rc = unsafe {
        libc::getsockopt(
            raw,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc == -1 {
        return Err(Error::last_os(format!(
            "getsockopt({raw}, IPPROTO_TCP, TCP_INFO)"
        )));
    }
    let got = (len as usize).min(buf.len());
    Ok(decode_tcp_info(&buf[..got]))
}

/// `Some(x)` as `x`, `None` as `-` (the field is past what the kernel sent).
pub fn show<T: fmt::Display>(field: Option<T>) -> String {
    field.map_or_else(|| "-".to_string(), |v| v.to_string())
}

impl TcpSummary {
    /// The state's name, `-` if absent.
    pub fn state_text(&self) -> &'static str {
        self.state.map_or("-", state_name)
    }
}

/// The short summary line the table prints: fields that do not depend on
/// when you look (no `last_*`), so two fresh sockets agree.
impl fmt::Display for TcpSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "state {}, rto {} us, rtt {} us, snd_mss {}, rcv_mss {}, snd_cwnd {}, \
             retransmits {}, total_retrans {}, bytes_acked {} ({} bytes returned)",
            self.state_text(),
            show(self.rto),
            show(self.rtt),
            show(self.snd_mss),
            show(self.rcv_mss),
            show(self.snd_cwnd),
            show(self.retransmits),
            show(self.total_retrans),
            show(self.bytes_acked),
            self.len
        )
    }
}
