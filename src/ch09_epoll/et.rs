//! The edge-triggered echo server.
//!
//! With `EPOLLET`, `epoll_wait` reports an fd when its state *changes*
//! (new data arrived, buffer space opened up), not while it stays ready.
//! Register a connection once for `EPOLLIN | EPOLLOUT | EPOLLRDHUP |
//! EPOLLET` and never touch its interest again; the price is the rule
//! **drain until `EAGAIN`**: each time you are woken, read until the
//! kernel says `EAGAIN` and write until it says `EAGAIN` (or you have
//! nothing left). Stop early and the bytes left behind wait for an edge
//! that will never come.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::accept::{Reserve, accept_all};
use super::conn::{Conn, Flush, Read};
use super::{LISTENER, STOP, Stats};
use crate::kit::{Call, Error, Result};

/// The events an edge-triggered connection is registered for, once.
pub const ET_CONN: EpollFlags = EpollFlags::EPOLLIN
    .union(EpollFlags::EPOLLOUT)
    .union(EpollFlags::EPOLLRDHUP)
    .union(EpollFlags::EPOLLET);

/// **Assignment 2, part 1 (drain).** Connection `conn` had an edge. Move
/// every byte you can; return `true` when it must be closed.
///
/// Loop:
/// 1. [`Conn::flush`]; `Failed` closes. (`Blocked` is fine: an `EPOLLOUT`
///    edge comes when space opens.)
/// 2. If EOF was seen: close if nothing is left to write, else return
///    `false` (the `EPOLLOUT` edge will finish the job).
/// 3. If the output buffer is [full](Conn::full), return `false`: stop
///    reading until the peer reads (the `EPOLLOUT` edge calls you again).
/// 4. [`Conn::read_once`]: `Data` → go round again (flush, read more);
///    `WouldBlock` → drained, return `false`; `Eof` → set `conn.eof`, go
///    round; `Failed` → close.
///
/// Returning after one read is *the* edge-triggered bug: the rest of the
/// data sits in the socket and no new edge will announce it.
pub fn drive(conn: &mut Conn) -> bool {
    // BEGIN SOLUTION
    loop {
        if let Flush::Failed(_) = conn.flush() {
            return true;
        }
        if conn.eof {
            return conn.out.is_empty();
        }
        if conn.full() {
            return false;
        }
        match conn.read_once() {
            Read::Data(_) => continue,
            Read::WouldBlock => return false,
            Read::Eof => conn.eof = true,
            Read::Failed(_) => return true,
        }
    }
    // END SOLUTION
}

/// **Assignment 2, part 2 (the edge-triggered loop).** Serve echo on the
/// nonblocking `listener` until `stop` is readable.
///
/// As [`super::lt::serve_lt`], except: the listener is added with
/// `EPOLLIN | EPOLLET` (so [`accept_all`] must take every waiting
/// connection: there is no second report), each connection once with
/// [`ET_CONN`], and every connection event goes to [`drive`], whatever its
/// flags. No `epoll_ctl(MOD)` ever.
pub fn serve_et(listener: BorrowedFd<'_>, stop: BorrowedFd<'_>) -> Result<Stats> {
    // BEGIN SOLUTION
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).call("epoll_create1(EPOLL_CLOEXEC)")?;
    let lflags = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
    epoll
        .add(listener, EpollEvent::new(lflags, LISTENER))
        .call(format!(
            "epoll_ctl(ADD, listener {}, EPOLLIN|EPOLLET)",
            listener.as_raw_fd()
        ))?;
    epoll
        .add(stop, EpollEvent::new(EpollFlags::EPOLLIN, STOP))
        .call(format!(
            "epoll_ctl(ADD, stop {}, EPOLLIN)",
            stop.as_raw_fd()
        ))?;
    let mut reserve = Reserve::new()?;
    let mut conns: HashMap<RawFd, Conn> = HashMap::new();
    let mut stats = Stats::default();
    let mut events = vec![EpollEvent::empty(); 256];
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
                        let mut conn = Conn::new(fd);
                        if epoll
                            .add(conn.fd(), EpollEvent::new(ET_CONN, raw as u64))
                            .is_ok()
                        {
                            conn.registered = ET_CONN;
                            conns.insert(raw, conn);
                            stats.accepted += 1;
                        }
                    }
                }
                token => {
                    let fd = token as RawFd;
                    let Some(conn) = conns.get_mut(&fd) else {
                        continue;
                    };
                    if drive(conn) {
                        if let Some(conn) = conns.remove(&fd) {
                            let _ = epoll.delete(conn.fd());
                        }
                        stats.closed += 1;
                    }
                }
            }
        }
    }
    // END SOLUTION
}
