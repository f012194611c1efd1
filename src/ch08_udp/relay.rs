//! The lossy relay: a bad network made in user space.
//!
//! This kernel has no `netem` qdisc, so the chapter makes loss,
//! duplication, reordering and delay itself. The relay listens on one
//! address; each client that sends to it gets its own upstream socket,
//! connected to the target, so replies find their way back (like a NAT).
//! Every datagram, in each direction, draws three numbers from a seeded
//! generator (loss, duplicate, reorder) whatever happens to it, so the same
//! seed and the same sequence of datagrams give the same fates.
//!
//! ```text
//!   client ──► [listen A] ──fate──► [upstream, connected to B] ──► B
//!   client ◄── [listen A] ◄──fate── [upstream]                 ◄── B
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{self, MsgFlags, SockaddrLike, SockaddrStorage};

use super::dgram::{self, recv_datagram};
use crate::kit::{Call, Error, Result};
use crate::say;

/// What the relay does to traffic. Probabilities are in `0.0..=1.0`.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairment {
    /// Drop a datagram with this probability.
    pub loss: f64,
    /// Deliver a datagram twice with this probability.
    pub dup: f64,
    /// Hold a datagram back (so later ones overtake it) with this probability.
    pub reorder: f64,
    /// Delay every datagram by this much (each way).
    pub delay: Duration,
    /// How much longer a reordered datagram is held.
    pub reorder_hold: Duration,
    /// The seed of the generator: same seed, same fates.
    pub seed: u64,
    /// Also drop these client-to-target datagrams, by number (1 = first),
    /// whatever the generator says: tests use it to lose one datagram
    /// exactly.
    pub drop_forward: Vec<u64>,
    /// Also drop these target-to-client datagrams, by number.
    pub drop_back: Vec<u64>,
}

impl Default for Impairment {
    fn default() -> Self {
        Impairment {
            loss: 0.0,
            dup: 0.0,
            reorder: 0.0,
            delay: Duration::ZERO,
            reorder_hold: Duration::from_millis(10),
            seed: 1,
            drop_forward: Vec::new(),
            drop_back: Vec::new(),
        }
    }
}

/// A small, seeded generator (splitmix64): deterministic, no crate needed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What happens to one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fate {
    /// Dropped.
    pub dropped: bool,
    /// Delivered twice.
    pub duplicated: bool,
    /// Held back.
    pub reordered: bool,
}

/// The fates of the datagrams of one direction, in order.
#[derive(Debug, Clone)]
pub struct Fates {
    rng: Rng,
    count: u64,
}

impl Fates {
    /// Fates from `seed`.
    pub fn new(seed: u64) -> Fates {
        Fates {
            rng: Rng::new(seed),
            count: 0,
        }
    }

    /// The fate of the next datagram: always three draws, so one outcome
    /// never shifts the next datagram's numbers.
    pub fn next(&mut self, how: &Impairment, forced_drops: &[u64]) -> Fate {
        self.count += 1;
        let (l, d, r) = (self.rng.unit(), self.rng.unit(), self.rng.unit());
        Fate {
            dropped: l < how.loss || forced_drops.contains(&self.count),
            duplicated: d < how.dup,
            reordered: r < how.reorder,
        }
    }
}

/// What the relay did, in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Datagrams that arrived.
    pub received: u64,
    /// Dropped on purpose.
    pub dropped: u64,
    /// Sent twice.
    pub duplicated: u64,
    /// Held back so that later ones overtook them.
    pub reordered: u64,
    /// Copies sent on (duplicates count twice).
    pub sent: u64,
    /// Sends that failed (the target's port closed, a full buffer).
    pub send_errors: u64,
}

/// Both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Client to target.
    pub forward: Counts,
    /// Target to client.
    pub back: Counts,
    /// Clients seen.
    pub clients: u64,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} in, {} dropped, {} duplicated, {} reordered, {} sent, {} send errors",
            self.received,
            self.dropped,
            self.duplicated,
            self.reordered,
            self.sent,
            self.send_errors
        )
    }
}

/// At most this many clients at once; the least recently heard is evicted.
pub const MAX_CLIENTS: usize = 64;

struct Peer {
    client: SockaddrStorage,
    upstream: OwnedFd,
    last_heard: Instant,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    at: Instant,
    order: u64,
    forward: bool,
    client: String,
    data: Vec<u8>,
}

/// Relay datagrams between clients of `listen` and `target`, impaired by
/// `how`, until `stop` is readable (a byte, EOF, or a signal on a signalfd).
pub fn run_relay(
    listen: OwnedFd,
    target: SockaddrStorage,
    how: Impairment,
    stop: impl AsFd,
) -> Result<RelayStats> {
    let stop = stop.as_fd();
    dgram_nonblocking(&listen)?;
    let mut peers: Vec<Peer> = Vec::new();
    let mut queue: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    let mut stats = RelayStats::default();
    let mut fwd_fates = Fates::new(how.seed);
    let mut back_fates = Fates::new(how.seed ^ 0x5DEE_CE66_D1CE_5EED);
    let mut order = 0u64;
    loop {
        let now = Instant::now();
        let timeout = match queue.peek() {
            Some(Reverse(p)) => {
                let ms = p.at.saturating_duration_since(now).as_millis() as i32;
                PollTimeout::try_from(ms.min(60_000)).unwrap_or(PollTimeout::ZERO)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = vec![
            PollFd::new(stop, PollFlags::POLLIN),
            PollFd::new(listen.as_fd(), PollFlags::POLLIN),
        ];
        fds.extend(
            peers
                .iter()
                .map(|p| PollFd::new(p.upstream.as_fd(), PollFlags::POLLIN)),
        );
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => return Err(Error::sys("poll(relay)", errno)),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            return Ok(stats);
        }
        // Upstream replies first (they index `peers`, which the listener may change).
        for (i, peer_ready) in ready[2..].iter().enumerate() {
            if !peer_ready {
                continue;
            }
            for _ in 0..64 {
                let d = match recv_datagram(&peers[i].upstream, 65536, MsgFlags::MSG_DONTWAIT) {
                    Ok(d) => d,
                    // ECONNREFUSED: the target's port is closed (an ICMP
                    // came back); count it and go on.
                    Err(e) if e.errno() == Some(Errno::ECONNREFUSED) => {
                        stats.back.send_errors += 1;
                        continue;
                    }
                    Err(_) => break,
                };
                stats.back.received += 1;
                let fate = back_fates.next(&how, &how.drop_back);
                order += 1;
                schedule(
                    &mut queue,
                    &mut stats.back,
                    &how,
                    fate,
                    order,
                    false,
                    &peers[i].client,
                    d.data,
                );
            }
        }
        if ready[1] {
            for _ in 0..64 {
                let d = match recv_datagram(&listen, 65536, MsgFlags::MSG_DONTWAIT) {
                    Ok(d) => d,
                    Err(_) => break,
                };
                let Some(from) = d.from else { continue };
                let i = match peers.iter().position(|p| same_addr(&p.client, &from)) {
                    Some(i) => i,
                    None => {
                        if peers.len() >= MAX_CLIENTS {
                            let oldest = (0..peers.len())
                                .min_by_key(|&i| peers[i].last_heard)
                                .unwrap_or(0);
                            peers.swap_remove(oldest);
                        }
                        let upstream = upstream_socket(&target)?;
                        stats.clients += 1;
                        peers.push(Peer {
                            client: from,
                            upstream,
                            last_heard: Instant::now(),
                        });
                        peers.len() - 1
                    }
                };
                peers[i].last_heard = Instant::now();
                stats.forward.received += 1;
                let fate = fwd_fates.next(&how, &how.drop_forward);
                order += 1;
                schedule(
                    &mut queue,
                    &mut stats.forward,
                    &how,
                    fate,
                    order,
                    true,
                    &from,
                    d.data,
                );
            }
        }
        // Send what is due.
        let now = Instant::now();
        while queue.peek().is_some_and(|Reverse(p)| p.at <= now) {
            let Some(Reverse(p)) = queue.pop() else { break };
            let Some(peer) = peers.iter().find(|q| q.client.to_string() == p.client) else {
                continue;
            };
            let (counts, sent) = if p.forward {
                let raw = peer.upstream.as_raw_fd();
                (
                    &mut stats.forward,
                    socket::send(raw, &p.data, MsgFlags::MSG_DONTWAIT),
                )
            } else {
                let raw = listen.as_raw_fd();
                (
                    &mut stats.back,
                    socket::sendto(raw, &p.data, &peer.client, MsgFlags::MSG_DONTWAIT),
                )
            };
            match sent {
                Ok(_) => counts.sent += 1,
                Err(_) => counts.send_errors += 1,
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn schedule(
    queue: &mut BinaryHeap<Reverse<Pending>>,
    counts: &mut Counts,
    how: &Impairment,
    fate: Fate,
    order: u64,
    forward: bool,
    client: &SockaddrStorage,
    data: Vec<u8>,
) {
    if fate.dropped {
        counts.dropped += 1;
        return;
    }
    let mut at = Instant::now() + how.delay;
    if fate.reordered {
        counts.reordered += 1;
        at += how.reorder_hold;
    }
    let copies = if fate.duplicated {
        counts.duplicated += 1;
        2
    } else {
        1
    };
    for copy in 0..copies {
        queue.push(Reverse(Pending {
            at,
            order: order * 2 + copy,
            forward,
            client: client.to_string(),
            data: data.clone(),
        }));
    }
}

fn same_addr(a: &SockaddrStorage, b: &SockaddrStorage) -> bool {
    a.to_string() == b.to_string()
}

fn dgram_nonblocking(fd: &OwnedFd) -> Result<()> {
    crate::kit::net::set_nonblocking(fd, true)
}

/// A socket for one client's traffic, connected to the target: replies on
/// it come from the target only, and belong to that client.
fn upstream_socket(target: &SockaddrStorage) -> Result<OwnedFd> {
    let family = target
        .family()
        .ok_or_else(|| Error::msg(format!("{target}: no family")))?;
    let fd = dgram::udp_socket("", family)?;
    socket::connect(fd.as_raw_fd(), target)
        .call(format!("connect({}, {target})", fd.as_raw_fd()))?;
    dgram_nonblocking(&fd)?;
    Ok(fd)
}

/// Start a relay on its own thread: listen on a free loopback port, relay
/// to `target` with `how`. Returns its address and a handle that stops it
/// and hands back the counts.
pub fn spawn_relay(target: SockaddrStorage, how: Impairment) -> Result<RelayHandle> {
    let quiet = crate::kit::narrate::is_quiet();
    crate::kit::narrate::set_quiet(true);
    let bound = dgram::udp_bind("relay", &dgram::loopback_any());
    crate::kit::narrate::set_quiet(quiet);
    let (listen, addr) = bound?;
    let (stop_r, stop_w) = std::io::pipe().map_err(|e| Error::msg(format!("pipe: {e}")))?;
    let thread = std::thread::Builder::new()
        .name("relay".into())
        .spawn(move || run_relay(listen, target, how, stop_r))
        .map_err(|e| Error::msg(format!("spawn relay thread: {e}")))?;
    Ok(RelayHandle {
        addr,
        stop: Some(stop_w),
        thread: Some(thread),
    })
}

/// A relay running on a thread of this process.
pub struct RelayHandle {
    /// Where clients send.
    pub addr: SockaddrStorage,
    stop: Option<std::io::PipeWriter>,
    thread: Option<std::thread::JoinHandle<Result<RelayStats>>>,
}

impl RelayHandle {
    /// Stop the relay and return what it did.
    pub fn stop(mut self) -> Result<RelayStats> {
        drop(self.stop.take());
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(stats)) => stats,
            _ => Err(Error::msg("the relay thread panicked")),
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Narrate a relay's counts.
pub fn report(who: &str, stats: &RelayStats) {
    say!(who, "forward: {}", stats.forward);
    say!(who, "back:    {}", stats.back);
}
