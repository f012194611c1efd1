//! The benchmark's load generator: `conns` connections, each sending a
//! `size`-byte message and waiting for its echo, again and again, for
//! `duration`; plus `idle` connections that are opened and then held
//! silent. One thread drives them all through
//! [`epoll(7)`](https://man7.org/linux/man-pages/man7/epoll.7.html), so the
//! generator costs one CPU however many connections it holds.
//!
//! Short reads and writes are the normal case here, not an error: a
//! 512-byte echo may come back in two reads, a write may take only part of
//! the message when the socket buffer is full. Each connection keeps how
//! far it has got in both directions and carries on where it stopped.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{
    self, AddressFamily, SockFlag, SockType, SockaddrLike, SockaddrStorage, sockopt,
};
use nix::unistd;

use crate::kit::{Call, Error, Result};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub addr: SockaddrStorage,
    /// Busy connections, each with one message in flight at a time.
    pub conns: usize,
    /// Bytes per message.
    pub size: usize,
    /// How long to send new messages.
    pub duration: Duration,
    /// Connections opened first and then held without a word.
    pub idle: usize,
    /// How long connecting may take before the laggards count as failed.
    pub connect_timeout: Duration,
}

impl LoadConfig {
    /// The defaults: 64 connections × 512-byte messages for 3 s, no idle.
    pub fn new(addr: SockaddrStorage) -> LoadConfig {
        LoadConfig {
            addr,
            conns: 64,
            size: 512,
            duration: Duration::from_secs(3),
            idle: 0,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Messages sent and fully echoed back, byte for byte.
    pub round_trips: u64,
    /// Time from the first message to the end of the run.
    pub elapsed: Duration,
    /// Round-trip times, as a histogram of microseconds.
    pub latencies: Latencies,
    /// Connections that failed to connect (refused, timed out).
    pub connect_failed: usize,
    /// Connections that broke: reset, closed early, wrong bytes echoed.
    pub broken: usize,
    /// Busy connections that completed no round trip at all (a server
    /// that never got round to them).
    pub starved: usize,
    /// Idle connections that were open at the end.
    pub idle_held: usize,
}

impl LoadResult {
    /// Round trips per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.round_trips as f64 / secs
        } else {
            0.0
        }
    }

    /// The `p`-th percentile latency (0 < p ≤ 100), microseconds.
    pub fn percentile_us(&self, p: f64) -> Option<u32> {
        self.latencies.percentile(p)
    }

    /// Every kind of error, added up.
    pub fn errors(&self) -> usize {
        self.connect_failed + self.broken
    }
}

/// Round-trip times in a fixed histogram: exact below 1,024 us, then 64
/// buckets per power of two (within 1/64 of the true value). Recording is
/// one increment, nothing allocates per round trip, and a run of any length
/// takes the same 20 KB.
#[derive(Debug, Clone)]
pub struct Latencies {
    counts: Vec<u64>,
    total: u64,
}

/// Microseconds counted one by one before the buckets start to widen.
const EXACT: u32 = 1024;
/// Buckets per power of two above [`EXACT`].
const SUB: u32 = 64;

impl Default for Latencies {
    fn default() -> Latencies {
        // Powers of two from 2^10 to 2^31: 22 ranges of SUB buckets.
        Latencies {
            counts: vec![0; (EXACT + 22 * SUB) as usize],
            total: 0,
        }
    }
}

impl Latencies {
    fn bucket(us: u32) -> usize {
        if us < EXACT {
            return us as usize;
        }
        let log = 31 - us.leading_zeros(); // 10..=31
        let sub = (us >> (log - 6)) & (SUB - 1);
        (EXACT + (log - 10) * SUB + sub) as usize
    }

    /// The smallest value that falls in bucket `b`.
    fn lower(b: usize) -> u32 {
        let b = b as u32;
        if b < EXACT {
            return b;
        }
        let (range, sub) = ((b - EXACT) / SUB, (b - EXACT) % SUB);
        (SUB + sub) << (range + 10 - 6)
    }

    /// Count one round trip of `us` microseconds.
    pub fn record(&mut self, us: u32) {
        self.counts[Self::bucket(us)] += 1;
        self.total += 1;
    }

    /// Round trips recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `p`-th percentile (0 < p ≤ 100): the lower edge of the bucket
    /// that holds the value of that rank; `None` if nothing was recorded.
    pub fn percentile(&self, p: f64) -> Option<u32> {
        if self.total == 0 {
            return None;
        }
        let rank = (((p / 100.0) * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (b, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Self::lower(b));
            }
        }
        None
    }
}

/// One busy connection's progress through its current message.
#[derive(Debug)]
struct Conn {
    fd: OwnedFd,
    connected: bool,
    sent: usize,
    received: usize,
    started: Instant,
    done: u64,
    /// What epoll watches for now, so we call `epoll_ctl` only on a change.
    interest: EpollFlags,
}

/// The byte at position `i` of connection `c`'s messages: varies with both,
/// so an echo of the wrong bytes (or another connection's) is caught.
fn pattern(c: usize, i: usize) -> u8 {
    (c.wrapping_mul(31).wrapping_add(i) % 251) as u8
}

/// A nonblocking TCP socket with `connect` under way.
fn start_connect(addr: &SockaddrStorage) -> Result<OwnedFd> {
    let family = addr.family().unwrap_or(AddressFamily::Inet);
    let fd = socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .call("socket(SOCK_STREAM | SOCK_NONBLOCK)")?;
    match socket::connect(fd.as_raw_fd(), addr) {
        Ok(()) | Err(Errno::EINPROGRESS) => Ok(fd),
        Err(errno) => Err(Error::sys(
            format!("connect({}, {addr})", fd.as_raw_fd()),
            errno,
        )),
    }
}

/// Has a nonblocking connect finished well? (`SO_ERROR` is 0.)
fn connect_ok(fd: impl AsFd) -> bool {
    matches!(socket::getsockopt(&fd, sockopt::SocketError), Ok(0))
}

/// Open `n` connections and wait until they are all connected (or
/// `timeout`); returns the good ones and how many failed.
pub fn open_idle(
    addr: &SockaddrStorage,
    n: usize,
    timeout: Duration,
) -> Result<(Vec<OwnedFd>, usize)> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).call("epoll_create1")?;
    let mut pending: HashMap<u64, OwnedFd> = HashMap::new();
    let mut failed = 0;
    for i in 0..n {
        match start_connect(addr) {
            Ok(fd) => {
                epoll
                    .add(&fd, EpollEvent::new(EpollFlags::EPOLLOUT, i as u64))
                    .call("epoll_ctl(ADD)")?;
                pending.insert(i as u64, fd);
            }
            Err(_) => failed += 1,
        }
    }
    let mut good = Vec::with_capacity(n);
    let deadline = Instant::now() + timeout;
    let mut events = vec![EpollEvent::empty(); 256];
    while !pending.is_empty() && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = EpollTimeout::from(left.as_millis().min(1000) as u16 + 1);
        let n = match epoll.wait(&mut events, ms) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(Error::sys("epoll_wait", errno)),
        };
        for ev in &events[..n] {
            if let Some(fd) = pending.remove(&ev.data()) {
                let _ = epoll.delete(&fd);
                if connect_ok(&fd) {
                    good.push(fd);
                } else {
                    failed += 1;
                }
            }
        }
    }
    failed += pending.len();
    Ok((good, failed))
}

/// Run the load. Returns once `duration` has passed after the busy
/// connections were set going; messages still in flight then are not
/// counted.
pub fn run(cfg: &LoadConfig) -> Result<LoadResult> {
    run_observed(cfg, || {})
}

/// [`run`], calling `at_end` when the run is over but before any
/// connection is closed: the moment to sample the server (its threads and
/// children are all still there).
pub fn run_observed(cfg: &LoadConfig, at_end: impl FnOnce()) -> Result<LoadResult> {
    let mut result = LoadResult::default();
    let (idle, idle_failed) = if cfg.idle > 0 {
        open_idle(&cfg.addr, cfg.idle, cfg.connect_timeout)?
    } else {
        (Vec::new(), 0)
    };
    result.connect_failed += idle_failed;

    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).call("epoll_create1")?;
    let message: Vec<Vec<u8>> = (0..cfg.conns)
        .map(|c| (0..cfg.size).map(|i| pattern(c, i)).collect())
        .collect();
    let mut conns: Vec<Option<Conn>> = Vec::with_capacity(cfg.conns);
    let started = Instant::now();
    for _ in 0..cfg.conns {
        match start_connect(&cfg.addr) {
            Ok(fd) => {
                let id = conns.len() as u64;
                epoll
                    .add(&fd, EpollEvent::new(EpollFlags::EPOLLOUT, id))
                    .call("epoll_ctl(ADD)")?;
                conns.push(Some(Conn {
                    fd,
                    connected: false,
                    sent: 0,
                    received: 0,
                    started,
                    done: 0,
                    interest: EpollFlags::EPOLLOUT,
                }));
            }
            Err(_) => {
                result.connect_failed += 1;
                conns.push(None);
            }
        }
    }

    let mut end = started + cfg.duration;
    let mut first_send: Option<Instant> = None;
    let mut events = vec![EpollEvent::empty(); 1024];
    let mut buf = vec![0u8; cfg.size.max(1)];
    let connect_deadline = started + cfg.connect_timeout;
    loop {
        let now = Instant::now();
        if first_send.is_some() && now >= end {
            break;
        }
        if first_send.is_none() && now >= connect_deadline {
            break; // nothing ever connected
        }
        let limit = if first_send.is_some() {
            end
        } else {
            connect_deadline
        };
        let left = limit.saturating_duration_since(now);
        let ms = EpollTimeout::from(left.as_millis().min(1000) as u16 + 1);
        let n = match epoll.wait(&mut events, ms) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(Error::sys("epoll_wait", errno)),
        };
        for ev in &events[..n] {
            let id = ev.data() as usize;
            let Some(conn) = conns.get_mut(id).and_then(Option::as_mut) else {
                continue;
            };
            let ok = step(
                conn,
                id,
                &message[id],
                &mut buf,
                &epoll,
                ev.events(),
                &mut result,
                &mut first_send,
                &mut end,
                cfg,
            );
            if !ok {
                let _ = epoll.delete(&conn.fd);
                if conn.connected {
                    result.broken += 1;
                } else {
                    result.connect_failed += 1;
                }
                conns[id] = None;
            }
        }
    }
    result.elapsed = first_send
        .map(|t| Instant::now().saturating_duration_since(t))
        .unwrap_or_default();
    at_end();
    result.starved = conns.iter().flatten().filter(|c| c.done == 0).count();
    result.idle_held = idle.len();
    Ok(result)
}

/// Advance one connection on an epoll event. Returns false when the
/// connection is broken and must be dropped.
#[allow(clippy::too_many_arguments)]
fn step(
    conn: &mut Conn,
    id: usize,
    message: &[u8],
    buf: &mut [u8],
    epoll: &Epoll,
    flags: EpollFlags,
    result: &mut LoadResult,
    first_send: &mut Option<Instant>,
    end: &mut Instant,
    cfg: &LoadConfig,
) -> bool {
    if !conn.connected {
        if !connect_ok(&conn.fd) {
            return false;
        }
        conn.connected = true;
        let now = Instant::now();
        if first_send.is_none() {
            *first_send = Some(now);
            *end = now + cfg.duration;
        }
        conn.started = now;
        conn.sent = 0;
        conn.received = 0;
    } else if flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP) {
        // Read what has come back; it may be part of the echo (a short read).
        loop {
            let want = conn.sent - conn.received;
            if want == 0 {
                break;
            }
            match unistd::read(&conn.fd, &mut buf[..want]) {
                Ok(0) => return false, // the server closed on us
                Ok(n) => {
                    if buf[..n] != message[conn.received..conn.received + n] {
                        return false; // not our bytes: a refusal line, or a bug
                    }
                    conn.received += n;
                }
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(_) => return false,
            }
        }
        if conn.received < message.len() {
            return true; // wait for the rest
        }
        let now = Instant::now();
        let us = now
            .saturating_duration_since(conn.started)
            .as_micros()
            .min(u32::MAX as u128) as u32;
        result.latencies.record(us);
        result.round_trips += 1;
        conn.done += 1;
        if now >= *end {
            return true; // the run is over: send no more
        }
        conn.started = now;
        conn.sent = 0;
        conn.received = 0;
    }
    // Write what is left of the message; the socket may take only part
    // (a short write), in which case we wait for EPOLLOUT.
    while conn.sent < message.len() {
        match unistd::write(&conn.fd, &message[conn.sent..]) {
            Ok(n) => conn.sent += n,
            Err(Errno::EAGAIN) => break,
            Err(Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
    let interest = if conn.sent < message.len() {
        EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT
    } else {
        EpollFlags::EPOLLIN
    };
    if interest == conn.interest {
        return true;
    }
    conn.interest = interest;
    let mut ev = EpollEvent::new(interest, id as u64);
    epoll.modify(&conn.fd, &mut ev).is_ok()
}

#[cfg(test)]
mod tests {
    use super::Latencies;

    /// The histogram's percentiles against the exact ones of a sorted list.
    #[test]
    fn histogram_percentiles_are_within_one_sixty_fourth() -> Result<(), String> {
        let mut h = Latencies::default();
        let mut all: Vec<u32> = (0..20_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761) % 5_000_000)
            .collect();
        for &v in &all {
            h.record(v);
        }
        all.sort_unstable();
        for p in [1.0, 50.0, 90.0, 99.0, 100.0] {
            let rank = ((p / 100.0) * all.len() as f64).ceil() as usize;
            let exact = all[rank.clamp(1, all.len()) - 1];
            let got = h.percentile(p).ok_or("no percentile")?;
            if got > exact || (exact - got) as f64 > exact as f64 / 64.0 {
                return Err(format!("p{p}: histogram {got}, exact {exact}"));
            }
        }
        if Latencies::default().percentile(50.0).is_some() {
            return Err("an empty histogram has no percentile".into());
        }
        Ok(())
    }
}
