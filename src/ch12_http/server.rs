//! The event loop: one [`epoll(7)`](https://man7.org/linux/man-pages/man7/epoll.7.html)
//! instance per thread, each with its own `SO_REUSEPORT` listener, so the
//! kernel spreads connections over the threads and no lock is shared.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{self, SockFlag, SockaddrLike, SockaddrStorage, sockopt};

use super::conn::{Config, Conn, Next};
use crate::kit::accept::{AcceptError, back_off, triage};
use crate::kit::{Call, Error, Result};

/// What a loop did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: u64,
    /// Requests answered (including refusals).
    pub requests: u64,
    /// Connections closed by a timer (header, idle, send, linger).
    pub timed_out: u64,
    /// Connections turned away because the loop was full.
    pub turned_away: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.accepted += o.accepted;
        self.requests += o.requests;
        self.timed_out += o.timed_out;
        self.turned_away += o.turned_away;
    }
}

const LISTENER: u64 = u64::MAX;
const STOP: u64 = u64::MAX - 1;

/// `n` listening sockets on `addr`, all with `SO_REUSEPORT` (and
/// `SO_REUSEADDR`), nonblocking: the kernel hashes each new connection to
/// one of them. The first binds port 0 to a real port; the others bind that
/// port. Returns them and the bound address.
pub fn listeners(
    addr: &SockaddrStorage,
    n: usize,
    backlog: i32,
) -> Result<(Vec<OwnedFd>, SockaddrStorage)> {
    let mut fds = Vec::new();
    let mut bound = *addr;
    for _ in 0..n.max(1) {
        let family = bound
            .family()
            .ok_or_else(|| Error::msg("address without a family"))?;
        let fd = socket::socket(
            family,
            socket::SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .call("socket(SOCK_STREAM)")?;
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true).call("setsockopt(SO_REUSEADDR)")?;
        socket::setsockopt(&fd, sockopt::ReusePort, &true).call("setsockopt(SO_REUSEPORT)")?;
        socket::bind(fd.as_raw_fd(), &bound).call(format!("bind({bound})"))?;
        let backlog = socket::Backlog::new(backlog).map_err(|e| Error::sys("listen", e))?;
        socket::listen(&fd, backlog).call("listen")?;
        bound = crate::kit::net::local_addr(&fd)?;
        fds.push(fd);
    }
    Ok((fds, bound))
}

/// Serve on each listener with its own thread and epoll loop until `stop`
/// is readable (level-triggered: a byte, EOF, or a pending signal on a
/// signalfd, which no loop consumes, so every loop sees it). Returns the sum
/// of what the loops did.
pub fn serve(listeners: Vec<OwnedFd>, stop: impl AsFd, config: &Config) -> Result<Stats> {
    serve_then(listeners, stop, config, || {})
}

/// [`serve`], calling `ready` once every epoll instance exists and before
/// any connection is served (the binary prints `listening on` there, so a
/// supervisor counting fds after that line sees the server at rest).
pub fn serve_then(
    listeners: Vec<OwnedFd>,
    stop: impl AsFd,
    config: &Config,
    ready: impl FnOnce(),
) -> Result<Stats> {
    let stop = stop.as_fd();
    let loops = listeners
        .into_iter()
        .map(|listener| watch(listener, stop))
        .collect::<Result<Vec<_>>>()?;
    // The root's fd, shared by every loop, is open before `ready` (if it
    // cannot be opened, each request reports that).
    let _ = super::resolve::hold_root(&config.root);
    ready();
    std::thread::scope(|scope| {
        let handles: Vec<_> = loops
            .into_iter()
            .map(|(epoll, listener)| scope.spawn(move || serve_one(epoll, listener, stop, config)))
            .collect();
        let mut total = Stats::default();
        for handle in handles {
            match handle.join() {
                Ok(result) => total += result?,
                Err(_) => return Err(Error::msg("a server thread panicked")),
            }
        }
        Ok(total)
    })
}

/// A new epoll instance watching `listener` and `stop`.
fn watch(listener: OwnedFd, stop: std::os::fd::BorrowedFd<'_>) -> Result<(Epoll, OwnedFd)> {
    crate::kit::net::set_nonblocking(&listener, true)?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).call("epoll_create1(EPOLL_CLOEXEC)")?;
    epoll
        .add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
        .call("epoll_ctl(ADD, listener)")?;
    epoll
        .add(stop, EpollEvent::new(EpollFlags::EPOLLIN, STOP))
        .call("epoll_ctl(ADD, stop)")?;
    Ok((epoll, listener))
}

/// What a connection is registered for, once, at `accept`: readable,
/// writable and the peer's FIN (`EPOLLRDHUP`), edge-triggered, as nginx
/// does. Edge-triggered, a connection is reported when bytes *arrive*, in
/// the order they arrive; level-triggered, epoll puts every connection it
/// reported back on its ready list at once, so one whose request arrives a
/// moment after `epoll_wait` returned queues behind all the others for a
/// whole extra round (the chapter's benchmark measured that tail).
/// Registered once, it is never changed: no `epoll_ctl(MOD)` per response.
fn interest() -> EpollFlags {
    EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET
}

/// An event that says there may be bytes (or a FIN, or an error) to read.
fn readable(event: &EpollEvent) -> bool {
    event.events().intersects(
        EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR,
    )
}

/// One connection of a loop, when its entry in the timer tree is due
/// (`None`: it has none right now), and what the edge-triggered loop must
/// remember because epoll will not say it twice.
struct Slot {
    conn: Conn,
    due: Option<Instant>,
    /// An edge said there is input, and no read since has drained it.
    unread: bool,
    /// The peer's FIN has been reported (`EPOLLRDHUP`/`EPOLLHUP`): a short
    /// read does not drain it; only reading the EOF does.
    peer_fin: bool,
    /// On the loop's `again` list.
    posted: bool,
}

/// What a connection looks like from outside `advance`: if one call
/// changes none of it, that call found nothing to read.
fn progress(conn: &Conn) -> (u64, usize, usize, Instant, bool) {
    (
        conn.requests,
        conn.unparsed.len(),
        conn.queue.len(),
        conn.last_progress,
        conn.peer_done,
    )
}

/// One loop's state: its connections by fd, and their timers ordered by
/// when they are due (nginx keeps a red-black tree; a `BTreeSet` of
/// `(due, fd)` is the same idea). `epoll_wait` sleeps until the earliest is
/// due, so an idle server does no work, however many connections it holds.
/// `again` holds connections that may still have input after their turn
/// (nginx's posted events): each gets one more turn after this round's
/// events, and more in later rounds, so one flooding client cannot keep the
/// loop to itself.
struct Loop<'a> {
    epoll: Epoll,
    conns: HashMap<RawFd, Slot>,
    timers: BTreeSet<(Instant, RawFd)>,
    again: Vec<RawFd>,
    stats: Stats,
    config: &'a Config,
}

/// One loop (its epoll instance from `watch`): accept, drive each ready
/// connection, and wake each connection whose timer is due.
pub fn serve_one(
    epoll: Epoll,
    listener: OwnedFd,
    stop: impl AsFd,
    config: &Config,
) -> Result<Stats> {
    let stop = stop.as_fd();
    let mut lp = Loop {
        epoll,
        conns: HashMap::new(),
        timers: BTreeSet::new(),
        again: Vec::new(),
        stats: Stats::default(),
        config,
    };
    let mut events = vec![EpollEvent::empty(); 256];
    loop {
        let timeout = if lp.again.is_empty() {
            lp.timeout()
        } else {
            EpollTimeout::ZERO
        };
        let n = match lp.epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => return Err(Error::sys("epoll_wait", e)),
        };
        let now = Instant::now();
        for event in &events[..n] {
            match event.data() {
                STOP => return Ok(lp.stats),
                LISTENER => lp.accept_all(&listener, stop, now)?,
                token => {
                    let fd = token as RawFd;
                    if readable(event)
                        && let Some(slot) = lp.conns.get_mut(&fd)
                    {
                        slot.unread = true;
                        slot.peer_fin |= event
                            .events()
                            .intersects(EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP);
                    }
                    lp.drive(fd, now, false)
                }
            }
        }
        while let Some(&(due, fd)) = lp.timers.first()
            && due <= now
        {
            lp.timers.pop_first();
            if let Some(slot) = lp.conns.get_mut(&fd) {
                slot.due = None;
            }
            lp.drive(fd, now, true);
        }
        for fd in std::mem::take(&mut lp.again) {
            if let Some(slot) = lp.conns.get_mut(&fd) {
                slot.posted = false;
            }
            lp.drive(fd, now, false);
        }
    }
}

impl Loop<'_> {
    /// How long `epoll_wait` may sleep: until the earliest timer (rounded
    /// up to a whole millisecond, so it does not wake just before), or for
    /// ever when there is none.
    fn timeout(&self) -> EpollTimeout {
        let Some(&(due, _)) = self.timers.first() else {
            return EpollTimeout::NONE;
        };
        let wait = due.saturating_duration_since(Instant::now());
        let ms = wait.as_micros().div_ceil(1000);
        EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
    }

    /// Accept until EAGAIN; each new socket is nonblocking, watched, and
    /// has a timer.
    fn accept_all(
        &mut self,
        listener: &OwnedFd,
        stop: std::os::fd::BorrowedFd<'_>,
        now: Instant,
    ) -> Result<()> {
        loop {
            let raw = match socket::accept4(
                listener.as_raw_fd(),
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            ) {
                Ok(raw) => raw,
                Err(Errno::EAGAIN) => return Ok(()),
                Err(e) => {
                    let error = Error::sys(format!("accept4({})", listener.as_raw_fd()), e);
                    match triage("http", &error) {
                        AcceptError::Again | AcceptError::Dropped => continue,
                        AcceptError::OutOfFds => {
                            back_off(stop);
                            return Ok(());
                        }
                        AcceptError::Fatal => return Err(error),
                    }
                }
            };
            // SAFETY: accept4 just returned this fd; nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            self.stats.accepted += 1;
            if self.conns.len() >= self.config.max_conns {
                self.stats.turned_away += 1;
                continue; // dropped: closed at once
            }
            if self
                .epoll
                .add(&fd, EpollEvent::new(interest(), raw as u64))
                .is_err()
            {
                continue;
            }
            let _ = socket::setsockopt(&fd, sockopt::TcpNoDelay, &true);
            let conn = Conn::new(fd, self.config, now);
            let due = conn.deadline(self.config);
            self.timers.insert((due, raw));
            self.conns.insert(
                raw,
                Slot {
                    conn,
                    due: Some(due),
                    unread: true,
                    peer_fin: false,
                    posted: false,
                },
            );
        }
    }

    /// Advance one connection; close it, or update its timer, and post it
    /// for another turn if it wants to read and its input may not be
    /// drained: epoll reports an edge once, and [`Conn::advance`] reads
    /// once per call.
    ///
    /// A timer entry is moved only when the deadline comes *earlier* (a
    /// head started: the header deadline). When it moves later (progress
    /// pushed the idle deadline on), the old entry stays: when it comes due
    /// the connection is advanced once for nothing and gets a new entry.
    /// So a busy connection costs no tree operation per request.
    fn drive(&mut self, fd: RawFd, now: Instant, tick: bool) {
        let Some(slot) = self.conns.get_mut(&fd) else {
            return;
        };
        let before = progress(&slot.conn);
        slot.conn.drained = false;
        let next = slot.conn.advance(self.config, now);
        self.stats.requests += slot.conn.requests - before.0;
        for line in slot.conn.log.drain(..) {
            println!("{line}");
        }
        match next {
            Next::Close => {
                if tick {
                    self.stats.timed_out += 1;
                }
                if let Some(slot) = self.conns.remove(&fd) {
                    let _ = self.epoll.delete(&slot.conn.fd);
                    if let Some(due) = slot.due {
                        self.timers.remove(&(due, fd));
                    }
                }
            }
            Next::Wait { read, .. } => {
                // Drained: a read came back short (and the FIN, if one was
                // reported, has been read), or this turn changed nothing
                // (an `advance` that reads some other way found nothing).
                // Not reading (its queue is full), `unread` is kept: it is
                // looked at again when writing empties the queue.
                let fin_left = slot.peer_fin && !slot.conn.peer_done;
                if read && ((slot.conn.drained && !fin_left) || progress(&slot.conn) == before) {
                    slot.unread = false;
                }
                if read && slot.unread && !slot.posted {
                    slot.posted = true;
                    self.again.push(fd);
                }
                // Never due in the past: a connection advance did not close
                // at its deadline is looked at again a millisecond later.
                let due = slot
                    .conn
                    .deadline(self.config)
                    .max(now + Duration::from_millis(1));
                match slot.due {
                    Some(old) if old <= due => {}
                    old => {
                        if let Some(old) = old {
                            self.timers.remove(&(old, fd));
                        }
                        self.timers.insert((due, fd));
                        slot.due = Some(due);
                    }
                }
            }
        }
    }
}
