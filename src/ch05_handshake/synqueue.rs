//! Part 2b: the SYN queue (半连接队列) is bounded by the listener's backlog
//! too. Hold half-open entries with `TCP_DEFER_ACCEPT`, send more SYNs than
//! the backlog, and count the SYN_RECV entries the kernel keeps.
//!
//! What the kernel does (`tcp_conn_request` in `net/ipv4/tcp_input.c`):
//!
//! ```text
//! if ((syncookies == 2 || inet_csk_reqsk_queue_is_full(sk)) && !isn) {
//!         want_cookie = tcp_syn_flood_action(sk, ...);   // TCPReqQFullDoCookies / TCPReqQFullDrop
//!         if (!want_cookie)
//!                 goto drop;
//! }
//! if (sk_acceptq_is_full(sk)) { ListenOverflows; goto drop; }
//! ...
//! if (!want_cookie && !isn) {
//!         /* with syncookies off, the last quarter of tcp_max_syn_backlog
//!            is kept for peers proven to be alive */
//! }
//! ```
//!
//! and `inet_csk_reqsk_queue_is_full(sk)` is "half-open entries > the
//! listener's `sk_max_ack_backlog`", which `listen` set to
//! min(backlog, `net.core.somaxconn`). (Since Linux 4.4 this one limit
//! bounds both queues; before 2025 the SYN-queue test was `>=`, so older
//! kernels keep one entry fewer.)

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket;

use super::backlog::{half_open_count, listener_queues};
use super::capture::Access;
use super::connect;
use super::opts;
use super::proc::{self as kproc, CounterDelta};
use crate::kit::narrate::{heading, note};
use crate::kit::{Result, addr, net, wait};
use crate::say;

/// The sysctl that switches SYN cookies; per network namespace.
const SYNCOOKIES: &str = "/proc/sys/net/ipv4/tcp_syncookies";

/// What one round saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynQueueRound {
    /// The backlog given to `listen`.
    pub backlog: i32,
    /// min(backlog, somaxconn): what the kernel stored.
    pub limit: i64,
    /// Clients that sent a SYN.
    pub clients: usize,
    /// SYN_RECV entries in `/proc/net/tcp` once the SYNs were answered.
    pub half_open: usize,
    /// Rise of `TcpExt:TCPReqQFullDoCookies`: answered with a cookie.
    pub cookies: u64,
    /// Rise of `TcpExt:TCPReqQFullDrop`: dropped, no answer.
    pub dropped: u64,
    /// `net.ipv4.tcp_syncookies` during the round.
    pub syncookies: i64,
}

/// Part 2b of the demo: for each backlog, a `TCP_DEFER_ACCEPT` listener and
/// `backlog + extra + 1` clients that send nothing. With `tcp_syncookies`
/// as this namespace has it; then, in a private namespace only, with
/// cookies off (the namespace's own copy of the sysctl, restored after).
pub fn demo(access: &Access, backlogs: &[i32], extra: usize) -> Result<Vec<SynQueueRound>> {
    heading("2b. The SYN queue (半连接队列) has the backlog as its limit too");
    for s in [
        "net/core/somaxconn",
        "net/ipv4/tcp_max_syn_backlog",
        "net/ipv4/tcp_syncookies",
    ] {
        note(kproc::show_sysctl(s));
    }
    note(
        "each listener sets TCP_DEFER_ACCEPT, so a client's bare ACK is dropped and its entry \
         stays half-open (SYN_RECV); the clients send nothing",
    );
    let mut rounds = Vec::new();
    for &b in backlogs {
        rounds.push(round(b, extra)?);
    }
    let cookies_on = kproc::sysctl_num("net/ipv4/tcp_syncookies").unwrap_or(1);
    if *access == Access::Namespace && cookies_on != 0 {
        note(
            "again with SYN cookies off: this private namespace has its own tcp_syncookies; \
             write 0 to it (the machine's setting is not touched)",
        );
        std::fs::write(SYNCOOKIES, "0")
            .map_err(|e| crate::kit::Error::msg(format!("write 0 to {SYNCOOKIES}: {e}")))?;
        say!("", "echo 0 > {SYNCOOKIES}   (inside the namespace)");
        let mut result = Ok(());
        for &b in backlogs {
            match round(b, extra) {
                Ok(r) => rounds.push(r),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        std::fs::write(SYNCOOKIES, cookies_on.to_string())
            .map_err(|e| crate::kit::Error::msg(format!("restore {SYNCOOKIES}: {e}")))?;
        result?;
    } else if cookies_on != 0 {
        note(
            "with tcp_syncookies = 0 the extra SYNs would be dropped instead (TCPReqQFullDrop); \
             `ch05_handshake synqueue --netns` shows it in a private namespace without changing \
             this machine's setting",
        );
    }
    for r in &rounds {
        let held = r.half_open as i64;
        note(format!(
            "backlog {} (tcp_syncookies = {}): half-open {} of {} clients, limit min(backlog, somaxconn) = {}: {}",
            r.backlog,
            r.syncookies,
            r.half_open,
            r.clients,
            r.limit,
            if held == r.limit + 1 {
                "the SYN queue stopped at the backlog (the check is 'more than backlog', so backlog + 1 fit)"
            } else if held == r.limit {
                "the SYN queue stopped at the backlog (this kernel checks 'at least backlog', as kernels before 2025 did)"
            } else {
                "not what this chapter expected: look at the table above"
            }
        ));
    }
    note(
        "tcp_max_syn_backlog is not this limit: with cookies off it keeps the last quarter of \
         itself for peers seen before (tcp_conn_request), which matters only when it is smaller \
         than the backlog",
    );
    Ok(rounds)
}

/// One listener with `backlog`, `backlog + 1 + extra` clients; count.
fn round(backlog: i32, extra: usize) -> Result<SynQueueRound> {
    let cookies_on = kproc::sysctl_num("net/ipv4/tcp_syncookies").unwrap_or(-1);
    let somaxconn = kproc::sysctl_num("net/core/somaxconn").unwrap_or(4096);
    let limit = i64::from(backlog).min(somaxconn);
    note(format!(
        "--- listen(fd, {backlog}), tcp_syncookies = {cookies_on}"
    ));
    let (listener, laddr) = net::tcp_listen("server", &addr::parse("127.0.0.1:0")?, backlog)?;
    opts::set_defer_accept(&listener, 30)?;
    say!(
        "server",
        "setsockopt({}, IPPROTO_TCP, TCP_DEFER_ACCEPT, [30], 4) = 0",
        listener.as_raw_fd()
    );
    let port = net::local_port(&listener)?;
    let counters = CounterDelta::start()?;
    let total = backlog.max(0) as usize + 1 + extra;
    let mut clients: Vec<OwnedFd> = Vec::new();
    for _ in 0..total {
        let fd = connect::socket_quiet_syncnt(&laddr, 1)?;
        net::set_nonblocking(&fd, true)?;
        match socket::connect(fd.as_raw_fd(), &laddr) {
            Ok(()) | Err(Errno::EINPROGRESS) => {}
            Err(e) => return Err(crate::kit::Error::sys(format!("connect({laddr})"), e)),
        }
        clients.push(fd);
    }
    say!(
        "client",
        "{total} nonblocking connect({laddr}) = -1 EINPROGRESS   (TCP_SYNCNT 1 each)"
    );
    // Every SYN the listener answers completes on the client's side within
    // microseconds on loopback; a dropped one waits for its 1 s timer. So
    // wait for writability, 300 ms in all.
    let settle = Instant::now() + Duration::from_millis(300);
    let mut answered = 0;
    for c in &clients {
        let left = settle.saturating_duration_since(Instant::now());
        if wait::wait_writable(c, left).is_ok() {
            answered += 1;
        }
    }
    let half_open = half_open_count(port)?;
    let q = listener_queues(&listener)?;
    let rises = counters.rises(&[
        "TcpExt:TCPReqQFullDoCookies",
        "TcpExt:TCPReqQFullDrop",
        "TcpExt:SyncookiesSent",
        "TcpExt:ListenDrops",
    ])?;
    let rise = |name: &str| {
        rises
            .iter()
            .find(|(n, _, _)| n == name)
            .map_or(0, |(_, b, a)| a - b)
    };
    let cookies = rise("TcpExt:TCPReqQFullDoCookies");
    let dropped = rise("TcpExt:TCPReqQFullDrop");
    say!(
        "server",
        "/proc/net/tcp: {half_open} SYN_RECV entries on port {port}; accept queue {} / {}",
        q.ready,
        q.limit
    );
    say!(
        "client",
        "{answered} of {total} handshakes answered within 300 ms; {} still in SYN_SENT",
        total - answered
    );
    note(format!(
        "counters: TCPReqQFullDoCookies +{cookies}, SyncookiesSent +{}, TCPReqQFullDrop +{dropped}, ListenDrops +{}",
        rise("TcpExt:SyncookiesSent"),
        rise("TcpExt:ListenDrops")
    ));
    if cookies > 0 {
        note(
            "the SYNs past the limit were answered with a cookie and kept no entry; their ACKs \
             rebuilt the connection straight into the accept queue (no deferring for them)",
        );
    }
    if dropped > 0 {
        note("the SYNs past the limit were dropped without a reply: those clients wait and resend");
    }
    drop(clients);
    drop(listener);
    Ok(SynQueueRound {
        backlog,
        limit,
        clients: total,
        half_open,
        cookies,
        dropped,
        syncookies: cookies_on,
    })
}
