//! The level-triggered echo server: the plain way to use epoll.
//!
//! Level-triggered (the default) means `epoll_wait` reports an fd for as
//! long as it *is* ready, exactly like `poll`. So the loop may read one
//! chunk per wake-up and come back for the rest. The one rule that matters:
//! ask for `EPOLLOUT` only while there is something to write. A connected
//! socket is almost always writable, so a standing `EPOLLOUT` interest
//! makes every `epoll_wait` return at once: a busy loop.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::accept::{Reserve, accept_all};
use super::conn::{Conn, Flush, Read};
use super::{Config, LISTENER, STOP, Stats};
use crate::kit::{Call, Error, Result};

// ANCHOR: ch09_on_event
/// **Assignment 1, part 1 (one level-triggered event).** Connection `conn`
/// was reported with `ready` events. Do its I/O and fix its interest.
/// Return `true` when it must be closed (the caller removes it from the
/// epoll set and drops it).
///
/// 1. If `ready` has `EPOLLIN` (or `EPOLLERR`/`EPOLLHUP`, so the call
///    reports what happened), the peer has not sent EOF and the output
///    buffer is not [full](Conn::full): one [`Conn::read_once`]. `Eof` sets
///    `conn.eof`; `Failed` closes.
/// 2. If output waits, [`Conn::flush`] it now (do not wait for `EPOLLOUT`
///    to try: usually the kernel takes it all at once). `Failed` closes.
/// 3. EOF seen and nothing left to write: close.
/// 4. The interest it should have now: `EPOLLIN` unless EOF or full,
///    `EPOLLOUT` only while output waits. If that differs from
///    `conn.registered`, `epoll_ctl(EPOLL_CTL_MOD)` (`epoll.modify`, token
///    `conn.raw() as u64`) and record it; if that fails, close.
pub fn on_event(epoll: &Epoll, conn: &mut Conn, ready: EpollFlags) -> bool {
    // BEGIN SOLUTION
    let trouble = ready.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP);
    if (ready.contains(EpollFlags::EPOLLIN) || trouble) && !conn.eof && !conn.full() {
        match conn.read_once() {
            Read::Data(_) | Read::WouldBlock => {}
            Read::Eof => conn.eof = true,
            Read::Failed(_) => return true,
        }
    }
    if !conn.out.is_empty() && matches!(conn.flush(), Flush::Failed(_)) {
        return true;
    }
    if conn.eof && conn.out.is_empty() {
        return true;
    }
    let mut want = EpollFlags::empty();
    if !conn.eof && !conn.full() {
        want |= EpollFlags::EPOLLIN;
    }
    if !conn.out.is_empty() {
        want |= EpollFlags::EPOLLOUT;
    }
    if want != conn.registered {
        let mut event = EpollEvent::new(want, conn.raw() as u64);
        if epoll.modify(conn.fd(), &mut event).is_err() {
            return true;
        }
        conn.registered = want;
    }
    false
    // END SOLUTION
}
// ANCHOR_END: ch09_on_event

// ANCHOR: ch09_serve_lt
/// **Assignment 1, part 2 (the level-triggered loop).** Serve echo on the
/// nonblocking `listener` until `stop` is readable; return the counters.
///
/// 1. `Epoll::new(EPOLL_CLOEXEC)`; add `listener` with `EPOLLIN` (plus
///    `EPOLLEXCLUSIVE` if `cfg.exclusive`) and token [`LISTENER`]; add
///    `stop` with `EPOLLIN` and token [`STOP`]. A [`Reserve`] for
///    [`accept_all`]; a `HashMap<RawFd, Conn>`.
/// 2. Loop: `epoll.wait(&mut events, EpollTimeout::NONE)` (retry `EINTR`;
///    count each return in `stats.wakeups`). For each event, by its token:
///    - [`STOP`]: return `Ok(stats)` (dropping the map closes everything);
///    - [`LISTENER`]: [`accept_all`]; add each new socket with `EPOLLIN`
///      and its fd as token, set `conn.registered`, insert it; count
///      `accepted` and `shed`;
///    - a connection: [`on_event`]; if it says close, remove it from the
///      map, `epoll.delete` it, drop it, count `closed`. (An event for an
///      fd no longer in the map is stale: skip it.)
/// 3. After the events: if the reserve lost its spare ([`Reserve::held`]
///    is false: in a multi-threaded design another thread can take the fd
///    number [`accept_all`] freed before it could reopen it), this thread
///    cannot shed a connection it cannot hold, and its readable listener
///    would wake it at once, for ever. Take the listener out of the set
///    (`epoll.delete`) and wait with a timeout (100 ms); after each wait
///    while paused, [`Reserve::restore`] (ignore a failure: still no fd),
///    and once the spare is back add the listener again (same flags).
pub fn serve_lt(listener: BorrowedFd<'_>, stop: BorrowedFd<'_>, cfg: &Config) -> Result<Stats> {
    // BEGIN SOLUTION
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).call("epoll_create1(EPOLL_CLOEXEC)")?;
    let mut lflags = EpollFlags::EPOLLIN;
    if cfg.exclusive {
        lflags |= EpollFlags::EPOLLEXCLUSIVE;
    }
    epoll
        .add(listener, EpollEvent::new(lflags, LISTENER))
        .call(format!(
            "epoll_ctl(ADD, listener {}, {lflags:?})",
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
    // The listener is out of the set while the spare is lost (step 3).
    let mut paused = false;
    loop {
        let wait = if paused {
            EpollTimeout::from(100u16)
        } else {
            EpollTimeout::NONE
        };
        let n = match epoll.wait(&mut events, wait) {
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
                        let ev = EpollEvent::new(EpollFlags::EPOLLIN, raw as u64);
                        if epoll.add(conn.fd(), ev).is_ok() {
                            conn.registered = EpollFlags::EPOLLIN;
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
                    if on_event(&epoll, conn, ev.events()) {
                        if let Some(conn) = conns.remove(&fd) {
                            let _ = epoll.delete(conn.fd());
                        }
                        stats.closed += 1;
                    }
                }
            }
        }
        if paused {
            let _ = reserve.restore();
        }
        if reserve.held() == paused {
            if paused {
                epoll
                    .add(listener, EpollEvent::new(lflags, LISTENER))
                    .call("epoll_ctl(ADD, listener) with the spare fd back")?;
            } else {
                epoll
                    .delete(listener)
                    .call("epoll_ctl(DEL, listener) while the spare fd is lost")?;
            }
            paused = !paused;
        }
    }
    // END SOLUTION
}
// ANCHOR_END: ch09_serve_lt
