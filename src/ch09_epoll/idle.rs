//! Idle timeouts: the level-triggered echo server with one
//! [`Timer`] (timerfd) per connection, all in the same epoll set as the
//! sockets. Every byte a client sends re-arms its timer; a timer that
//! fires closes its connection. No timeout arithmetic around
//! `epoll_wait`, no sorted list of deadlines: the kernel keeps the timers.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::accept::{Reserve, accept_all};
use super::conn::Conn;
use super::lt::on_event;
use super::timer::Timer;
use super::{LISTENER, STOP, Stats};
use crate::kit::{Call, Error, Result};

/// Tokens with this bit set are timers: the low bits are the connection's fd.
pub const TIMER: u64 = 1 << 32;

/// **Assignment 5 (idle timeouts).** Echo as [`super::lt::serve_lt`] does
/// (call [`on_event`] for connection events), and close any connection
/// that sends nothing for `idle`.
///
/// - On accept, besides registering the socket (token: its fd), create a
///   [`Timer`], [`arm`](Timer::arm) it for `idle`, and register it with
///   `EPOLLIN` and token `TIMER | fd`. Keep the pair in the map.
/// - A connection event with `EPOLLIN` in it means the client sent
///   something (or closed): re-arm its timer for `idle`, then [`on_event`].
/// - A timer token: if [`Timer::expirations`] is above 0 (it can be 0 if
///   the timer was re-armed after it fired), close the connection: delete
///   both fds from the epoll set, drop both, count `timed_out` (and
///   `closed`).
/// - When [`on_event`] closes a connection, its timer goes too.
pub fn serve_idle(listener: BorrowedFd<'_>, stop: BorrowedFd<'_>, idle: Duration) -> Result<Stats> {
    // BEGIN SOLUTION
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).call("epoll_create1(EPOLL_CLOEXEC)")?;
    epoll
        .add(listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
        .call(format!(
            "epoll_ctl(ADD, listener {}, EPOLLIN)",
            listener.as_raw_fd()
        ))?;
    epoll
        .add(stop, EpollEvent::new(EpollFlags::EPOLLIN, STOP))
        .call(format!(
            "epoll_ctl(ADD, stop {}, EPOLLIN)",
            stop.as_raw_fd()
        ))?;
    let mut reserve = Reserve::new()?;
    let mut conns: HashMap<RawFd, (Conn, Timer)> = HashMap::new();
    let mut stats = Stats::default();
    let mut events = vec![EpollEvent::empty(); 256];
    let close = |epoll: &Epoll, conns: &mut HashMap<RawFd, (Conn, Timer)>, fd: RawFd| {
        if let Some((conn, timer)) = conns.remove(&fd) {
            let _ = epoll.delete(conn.fd());
            let _ = epoll.delete(&timer);
        }
    };
    loop {
        let n = match epoll.wait(&mut events, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(Error::sys("epoll_wait", errno)),
        };
        stats.wakeups += 1;
        for ev in &events[..n] {
            match ev.data() {
                STOP => return Ok(stats),
                LISTENER => {
                    let got = accept_all(listener, &mut reserve)?;
                    stats.shed += got.shed as u64;
                    for fd in got.fds {
                        let raw = fd.as_raw_fd();
                        let Ok(timer) = Timer::new() else { continue };
                        let mut conn = Conn::new(fd);
                        let ok = timer.arm(idle).is_ok()
                            && epoll
                                .add(conn.fd(), EpollEvent::new(EpollFlags::EPOLLIN, raw as u64))
                                .is_ok()
                            && epoll
                                .add(
                                    &timer,
                                    EpollEvent::new(EpollFlags::EPOLLIN, TIMER | raw as u64),
                                )
                                .is_ok();
                        if ok {
                            conn.registered = EpollFlags::EPOLLIN;
                            conns.insert(raw, (conn, timer));
                            stats.accepted += 1;
                        } else {
                            let _ = epoll.delete(conn.fd());
                        }
                    }
                }
                token if token & TIMER != 0 => {
                    let fd = (token & !TIMER) as RawFd;
                    let Some((_, timer)) = conns.get(&fd) else {
                        continue;
                    };
                    if timer.expirations()? > 0 {
                        close(&epoll, &mut conns, fd);
                        stats.timed_out += 1;
                        stats.closed += 1;
                    }
                }
                token => {
                    let fd = token as RawFd;
                    let Some((conn, timer)) = conns.get_mut(&fd) else {
                        continue;
                    };
                    if ev.events().contains(EpollFlags::EPOLLIN) {
                        timer.arm(idle)?;
                    }
                    if on_event(&epoll, conn, ev.events()) {
                        close(&epoll, &mut conns, fd);
                        stats.closed += 1;
                    }
                }
            }
        }
    }
    // END SOLUTION
}
