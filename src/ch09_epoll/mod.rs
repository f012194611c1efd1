#![doc = include_str!("../../chapters/09-epoll.md")]

pub mod accept;
pub mod c10k;
pub mod chat;
pub mod cli;
pub mod conn;
pub mod connect;
pub mod demo;
pub mod et;
pub mod idle;
pub mod lt;
pub mod probe;
pub mod timer;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sys::socket::SockaddrStorage;

pub use accept::{Accepted, Reserve, accept_all};
pub use chat::{epoll_loop, serve_epoll};
pub use conn::Conn;
pub use connect::connect_within;
pub use et::serve_et;
pub use idle::serve_idle;
pub use lt::serve_lt;
pub use timer::Timer;

use crate::kit::{Error, Result, net};

/// The epoll token of the listening socket.
pub const LISTENER: u64 = u64::MAX;
/// The epoll token of the stop fd.
pub const STOP: u64 = u64::MAX - 1;

/// How a level-triggered server registers its listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Config {
    /// Add the listener with `EPOLLEXCLUSIVE` (several threads, each with
    /// its own epoll set, share one listener: wake one, not all).
    pub exclusive: bool,
}

/// What a server did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections accepted only to be closed at once, for lack of fds.
    pub shed: u64,
    /// Connections closed (EOF, error, idle).
    pub closed: u64,
    /// Of those, closed by the idle timer.
    pub timed_out: u64,
    /// Returns from `epoll_wait`.
    pub wakeups: u64,
}

impl Stats {
    /// Add another thread's counters.
    pub fn add(&mut self, other: &Stats) {
        self.accepted += other.accepted;
        self.shed += other.shed;
        self.closed += other.closed;
        self.timed_out += other.timed_out;
        self.wakeups += other.wakeups;
    }
}

/// The echo server designs of this chapter (and chapter 4's poll loop, to
/// compare against), as the benchmark runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Design {
    /// One thread, level-triggered epoll ([`serve_lt`]).
    Single,
    /// One thread, edge-triggered epoll ([`serve_et`]).
    Edge,
    /// `threads` threads, each with its own listener on the same port
    /// (`SO_REUSEPORT`) and its own epoll set: the kernel spreads the
    /// connections.
    ReusePort,
    /// `threads` threads, each with its own epoll set, all watching one
    /// listener with `EPOLLEXCLUSIVE`.
    Exclusive,
    /// Chapter 4's `poll(2)` loop in echo mode, for comparison.
    Poll,
}

impl Design {
    /// Every design, by its command-line name.
    pub const ALL: [(&'static str, Design); 5] = [
        ("single", Design::Single),
        ("et", Design::Edge),
        ("reuseport", Design::ReusePort),
        ("exclusive", Design::Exclusive),
        ("poll", Design::Poll),
    ];

    /// `single`, `et`, `reuseport`, `exclusive` or `poll`.
    pub fn parse(word: &str) -> Result<Design> {
        Design::ALL
            .iter()
            .find(|(name, _)| *name == word)
            .map(|&(_, d)| d)
            .ok_or_else(|| {
                Error::msg(format!(
                    "unknown design {word:?}: want single, et, reuseport, exclusive or poll"
                ))
            })
    }

    /// The design's command-line name.
    pub fn name(self) -> &'static str {
        Design::ALL
            .iter()
            .find(|(_, d)| *d == self)
            .map_or("?", |(name, _)| name)
    }
}

/// The listening sockets `design` needs on `addr`: one, or `threads`
/// bound to the same port with `SO_REUSEPORT` (chapter 7's
/// [`listeners`](crate::ch07_threads::reuseport::listeners)).
pub fn listen_for(design: Design, addr: &SockaddrStorage, threads: usize) -> Result<Vec<OwnedFd>> {
    if design == Design::ReusePort {
        crate::ch07_threads::reuseport::listeners("server", addr, threads.max(1), 4096)
    } else {
        Ok(vec![net::tcp_listen("server", addr, 4096)?.0])
    }
}

/// Serve echo with `design` on `listeners` (from [`listen_for`]) until
/// `stop` is readable (a signalfd, an eventfd, a pipe: anything that stays
/// readable once stopped, since every thread must see it). Multi-threaded
/// designs run `threads` threads and return the sum of their counters.
/// This is the entry the benchmark harness runs in a server process.
pub fn serve_echo(
    listeners: Vec<OwnedFd>,
    design: Design,
    threads: usize,
    stop: BorrowedFd<'_>,
) -> Result<Stats> {
    for l in &listeners {
        net::set_nonblocking(l, true)?;
    }
    if design == Design::Poll {
        let listener = listeners
            .into_iter()
            .next()
            .ok_or_else(|| Error::msg("serve_echo: no listener"))?;
        let config = crate::ch04_select::Config {
            echo: true,
            ..Default::default()
        };
        let s = crate::ch04_select::serve_poll(listener, stop, config)?;
        return Ok(Stats {
            accepted: s.accepted,
            ..Stats::default()
        });
    }
    let first = listeners
        .first()
        .ok_or_else(|| Error::msg("serve_echo: no listener"))?;
    match design {
        Design::Single => serve_lt(first.as_fd(), stop, &Config::default()),
        Design::Edge => serve_et(first.as_fd(), stop),
        Design::Poll => Err(Error::msg("unreachable: poll handled above")),
        Design::ReusePort | Design::Exclusive => {
            let exclusive = Config {
                exclusive: design == Design::Exclusive,
            };
            let mut total = Stats::default();
            let results: Vec<Result<Stats>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads.max(1))
                    .map(|i| {
                        let listener = if design == Design::ReusePort {
                            listeners[i % listeners.len()].as_fd()
                        } else {
                            first.as_fd()
                        };
                        s.spawn(move || serve_lt(listener, stop, &exclusive))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(Error::msg("a server thread panicked")))
                    })
                    .collect()
            });
            for r in results {
                total.add(&r?);
            }
            Ok(total)
        }
    }
}
