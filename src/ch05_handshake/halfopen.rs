//! Part 3: a half-open entry held in SYN_RECV, its SYN-ACK timer, and how
//! long such an entry lives.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::backlog::show_table;
use super::capture::{Access, Capture, print_packets};
use super::opts;
use super::proc::{self as kproc, CounterDelta};
use crate::kit::narrate::{heading, line, note};
use crate::kit::{Error, Result, addr, net, wait};
use crate::say;

/// How the gaps between timer firings grow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backoff {
    /// Each gap about twice the one before (exponential backoff).
    Doubling,
    /// All gaps about the same (linear timeouts).
    Constant,
    /// Neither, or too few gaps to say.
    Unclear,
}

/// Classify measured gaps (seconds): the ratio of each gap to the one
/// before must be within 20% of 2 for [`Backoff::Doubling`], of 1 for
/// [`Backoff::Constant`].
pub fn classify(gaps: &[f64]) -> Backoff {
    if gaps.len() < 2 {
        return Backoff::Unclear;
    }
    let ratios: Vec<f64> = gaps.windows(2).map(|w| w[1] / w[0]).collect();
    if ratios.iter().all(|r| (r - 2.0).abs() < 0.4) {
        Backoff::Doubling
    } else if ratios.iter().all(|r| (r - 1.0).abs() < 0.2) {
        Backoff::Constant
    } else {
        Backoff::Unclear
    }
}

/// How long a half-open entry lives when no ACK comes: the timer fires
/// `retries` times (each firing resends the SYN+ACK), and one more wait
/// after the last resend ends it. With the first wait `first` seconds, each
/// wait capped at `cap` seconds: the sum of all the waits (半连接存活时间).
pub fn lifetime(first: f64, backoff: Backoff, retries: u32, cap: f64) -> Option<f64> {
    let waits = (0..=retries).map(|i| match backoff {
        Backoff::Doubling => (first * 2f64.powi(i as i32)).min(cap),
        _ => first.min(cap),
    });
    match backoff {
        Backoff::Unclear => None,
        _ => Some(waits.sum()),
    }
}

/// The timer's first period, fitted to all the gaps (rounded to 0.1 s: the
/// demo looks at `/proc` every few tens of milliseconds).
pub fn base_period(gaps: &[f64], backoff: Backoff) -> Option<f64> {
    let weights: f64 = match backoff {
        Backoff::Doubling => (0..gaps.len()).map(|i| 2f64.powi(i as i32)).sum(),
        Backoff::Constant => gaps.len() as f64,
        Backoff::Unclear => return None,
    };
    Some((gaps.iter().sum::<f64>() / weights * 10.0).round() / 10.0)
}

/// Part 3 of the demo: hold the server's side in SYN_RECV with
/// `TCP_DEFER_ACCEPT` (`defer` seconds) and a client that sends nothing.
pub fn demo(access: &Access, defer: i32) -> Result<()> {
    heading("3. The half-open queue (半连接队列) and SYN-ACK retransmission");
    for s in [
        "net/ipv4/tcp_synack_retries",
        "net/ipv4/tcp_max_syn_backlog",
        "net/ipv4/tcp_rto_max_ms",
    ] {
        note(kproc::show_sysctl(s));
    }
    let (listener, laddr) = net::tcp_listen("server", &addr::parse("127.0.0.1:0")?, 8)?;
    let port = net::local_port(&listener)?;
    opts::set_defer_accept(&listener, defer)?;
    say!(
        "server",
        "setsockopt({}, IPPROTO_TCP, TCP_DEFER_ACCEPT, [{defer}], 4) = 0",
        listener.as_raw_fd()
    );
    let stored = opts::defer_accept(&listener)?;
    say!(
        "server",
        "getsockopt({}, IPPROTO_TCP, TCP_DEFER_ACCEPT) = {stored}   (rounded to whole SYN-ACK periods)",
        listener.as_raw_fd()
    );
    let cap = if access.can_capture() {
        Some(Capture::start(&[port])?)
    } else {
        None
    };
    let counters = CounterDelta::start()?;
    let t0 = Instant::now();
    let client = net::tcp_connect("client", &laddr)?;
    let cl =
        addr::to_std(&net::local_addr(&client)?).ok_or_else(|| Error::msg("no client address"))?;
    let sv = addr::to_std(&laddr).ok_or_else(|| Error::msg("no server address"))?;
    say!(
        "client",
        "TCP_INFO({}): {}   and it sends nothing",
        client.as_raw_fd(),
        opts::state_of(&client)?
    );
    note(
        "the client finished its handshake, but the listener drops a bare ACK while it defers: its side stays half-open:",
    );
    show_table(port)?;

    // Watch the entry's retransmit count until it leaves SYN_RECV.
    let deadline = t0 + Duration::from_secs(stored.max(1) as u64 + 5);
    let hz = clock_ticks_per_second();
    // Two clocks for each firing: when we saw the count change in /proc
    // (late by however long we slept), and when the entry itself said its
    // timer would fire (`tm->when`, in clock ticks, read just before).
    let mut seen: Vec<f64> = Vec::new();
    let mut ticks: Vec<f64> = Vec::new();
    let mut due: Option<f64> = None;
    let mut last = 0;
    let mut promoted_at = None;
    while Instant::now() < deadline {
        let now = t0.elapsed().as_secs_f64();
        let entry_timer = match server_side(sv, cl)? {
            Some(e) if e.state == 3 => {
                if e.retransmits > last {
                    for _ in last..e.retransmits {
                        seen.push(now);
                        ticks.push(due.filter(|d| *d <= now).unwrap_or(now));
                    }
                    last = e.retransmits;
                    line("", format_args!("  {now:>6.2} s  {}", e.ss_line()));
                }
                if e.timer == 1 {
                    due = Some(now + e.timer_when as f64 / hz);
                }
                (e.timer == 1).then_some(e.timer_when)
            }
            other => {
                promoted_at = Some(now);
                seen.push(now);
                ticks.push(due.filter(|d| *d <= now).unwrap_or(now));
                match other {
                    Some(e) => line("", format_args!("  {now:>6.2} s  {}", e.ss_line())),
                    None => line(
                        "",
                        format_args!("  {now:>6.2} s  (the SYN_RECV entry is gone)"),
                    ),
                }
                break;
            }
        };
        // The kernel's timer moves this entry; there is nothing to poll on.
        // The entry's own `tm->when` says when the timer fires: sleep until
        // just before that, then look often (reading /proc/net/tcp walks the
        // kernel's whole socket table, so not too often).
        std::thread::sleep(next_look(entry_timer, hz));
    }
    if promoted_at.is_some() {
        // The entry left SYN_RECV at a timer tick (the last resend drew the
        // client's ACK): counted above as one.
        note(
            "the deferring period ended: the kernel resent its SYN+ACK, the client ACKed again, and the listener took that ACK",
        );
        match wait::wait_readable(&listener, Duration::from_secs(1)) {
            Ok(()) => {
                let (conn, _) = net::accept("server", &listener)?;
                net::set_nonblocking(&conn, true)?;
                let mut buf = [0u8; 16];
                match nix::unistd::read(&conn, &mut buf) {
                    Err(Errno::EAGAIN) => say!(
                        "server",
                        "read({}) = -1 EAGAIN: accepted with no data -- TCP_DEFER_ACCEPT is a delay, not a promise",
                        conn.as_raw_fd()
                    ),
                    Ok(n) => say!("server", "read({}) = {n}", conn.as_raw_fd()),
                    Err(e) => say!("server", "read({}) = -1 {e}", conn.as_raw_fd()),
                }
            }
            Err(_) => note("(the listener has nothing to accept)"),
        }
    }
    if let Some(cap) = &cap {
        note("packets (times from the SYN):");
        print_packets(&cap.take(Duration::from_millis(30))?, None);
        note(
            "the SYN+ACK went out again only at the end of the deferring period: the retrans column counts timer firings, not packets",
        );
    }
    note("counters:");
    for (name, b, a) in counters.rises(&[
        "TcpExt:TCPDeferAcceptDrop",
        "TcpExt:TCPSynRetrans",
        "TcpExt:TCPTimeouts",
    ])? {
        line("", format_args!("  {name:<24} +{}", a - b));
    }
    drop(client);

    let mut gaps = Vec::new();
    let mut prev = 0.0;
    for &t in &ticks {
        gaps.push(t - prev);
        prev = t;
    }
    let shown: Vec<String> = gaps.iter().map(|g| format!("{g:.2}")).collect();
    let kind = classify(&gaps);
    let list = |v: &[f64]| {
        v.iter()
            .map(|t| format!("{t:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    note(format!(
        "the SYN-ACK timer fired at {} s (the entry's own tm->when; /proc showed the change at {} s): gaps {} s -> {}",
        list(&ticks),
        list(&seen),
        shown.join(", "),
        match kind {
            Backoff::Doubling => "each gap twice the last: this kernel doubles the SYN-ACK timeout",
            Backoff::Constant => "all gaps equal: this kernel uses a constant SYN-ACK timeout",
            Backoff::Unclear => "no clear pattern (too few gaps, or a busy machine)",
        }
    ));
    let retries = kproc::sysctl_num("net/ipv4/tcp_synack_retries")
        .unwrap_or(5)
        .max(0) as u32;
    let cap_s = kproc::sysctl_num("net/ipv4/tcp_rto_max_ms").map_or(120.0, |ms| ms as f64 / 1e3);
    if let Some(first) = base_period(&gaps, kind) {
        let waits: Vec<f64> = (0..=retries)
            .map(|i| match kind {
                Backoff::Doubling => (first * 2f64.powi(i as i32)).min(cap_s),
                _ => first.min(cap_s),
            })
            .collect();
        let total = lifetime(first, kind, retries, cap_s).unwrap_or(0.0);
        note(format!(
            "first period from the gaps: {first:.1} s. An entry whose ACK never comes is resent \
             tcp_synack_retries = {retries} times and then dropped: it lives {} = {total:.1} s \
             (the half-open lifetime, 半连接存活时间)",
            waits
                .iter()
                .map(|w| format!("{w:.1}"))
                .collect::<Vec<_>>()
                .join(" + ")
        ));
    }
    Ok(())
}

/// How long to wait before reading `/proc/net/tcp` again, given the
/// entry's `tm->when` (clock ticks until its timer fires).
fn next_look(timer_when: Option<u64>, hz: f64) -> Duration {
    match timer_when {
        Some(ticks) => Duration::from_secs_f64((ticks as f64 / hz - 0.03).clamp(0.01, 0.25)),
        None => Duration::from_millis(20),
    }
}

/// The clock tick `/proc/net/tcp` counts `tm->when` in (USER_HZ).
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// The server's side of the connection `client` → `server`, from
/// `/proc/net/tcp`.
fn server_side(server: SocketAddr, client: SocketAddr) -> Result<Option<kproc::ProcTcpEntry>> {
    kproc::find_connection(server, client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_and_lifetime() {
        assert_eq!(classify(&[1.02, 2.01, 4.03]), Backoff::Doubling);
        assert_eq!(classify(&[1.0, 1.02, 0.99]), Backoff::Constant);
        assert_eq!(classify(&[1.0]), Backoff::Unclear);
        assert_eq!(
            base_period(&[1.02, 2.01, 4.03], Backoff::Doubling),
            Some(1.0)
        );
        assert_eq!(lifetime(1.0, Backoff::Doubling, 5, 120.0), Some(63.0));
        assert_eq!(lifetime(1.0, Backoff::Constant, 5, 120.0), Some(6.0));
        assert_eq!(
            lifetime(1.0, Backoff::Doubling, 8, 120.0),
            Some(1.0 + 2.0 + 4.0 + 8.0 + 16.0 + 32.0 + 64.0 + 120.0 + 120.0)
        );
    }
}
