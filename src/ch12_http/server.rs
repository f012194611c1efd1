//! The event loop: one [`epoll(7)`](https://man7.org/linux/man-pages/man7/epoll.7.html)
//! instance per thread, each with its own `SO_REUSEPORT` listener, so the
//! kernel spreads connections over the threads and no lock is shared.

use std::collections::HashMap;
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
/// How often timers are checked when nothing happens.
const TICK: Duration = Duration::from_millis(100);

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

/// Register or change what `fd` waits for.
fn interest(read: bool, write: bool) -> EpollFlags {
    let mut flags = EpollFlags::empty();
    if read {
        flags |= EpollFlags::EPOLLIN;
    }
    if write {
        flags |= EpollFlags::EPOLLOUT;
    }
    flags
}

/// One loop (its epoll instance from `watch`): accept, then drive each
/// ready connection; check timers every `TICK` (100 ms).
pub fn serve_one(
    epoll: Epoll,
    listener: OwnedFd,
    stop: impl AsFd,
    config: &Config,
) -> Result<Stats> {
    let stop = stop.as_fd();
    let mut conns: HashMap<RawFd, (Conn, EpollFlags)> = HashMap::new();
    let mut stats = Stats::default();
    let mut events = vec![EpollEvent::empty(); 256];
    let mut last_sweep = Instant::now();
    loop {
        let timeout = EpollTimeout::try_from(TICK).unwrap_or(EpollTimeout::NONE);
        let n = match epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => return Err(Error::sys("epoll_wait", e)),
        };
        let now = Instant::now();
        for event in &events[..n] {
            match event.data() {
                STOP => return Ok(stats),
                LISTENER => {
                    accept_all(&listener, stop, &epoll, &mut conns, &mut stats, config, now)?
                }
                token => {
                    let fd = token as RawFd;
                    drive(&epoll, &mut conns, fd, &mut stats, config, now, false);
                }
            }
        }
        if now.duration_since(last_sweep) >= TICK {
            last_sweep = now;
            let fds: Vec<RawFd> = conns.keys().copied().collect();
            for fd in fds {
                drive(&epoll, &mut conns, fd, &mut stats, config, now, true);
            }
        }
    }
}

/// Accept until EAGAIN; each new socket is nonblocking and watched.
fn accept_all(
    listener: &OwnedFd,
    stop: std::os::fd::BorrowedFd<'_>,
    epoll: &Epoll,
    conns: &mut HashMap<RawFd, (Conn, EpollFlags)>,
    stats: &mut Stats,
    config: &Config,
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
        stats.accepted += 1;
        if conns.len() >= config.max_conns {
            stats.turned_away += 1;
            continue; // dropped: closed at once
        }
        let flags = interest(true, false);
        if epoll.add(&fd, EpollEvent::new(flags, raw as u64)).is_err() {
            continue;
        }
        let _ = socket::setsockopt(&fd, sockopt::TcpNoDelay, &true);
        conns.insert(raw, (Conn::new(fd, config, now), flags));
    }
}

/// Advance one connection; close it or update its interest.
fn drive(
    epoll: &Epoll,
    conns: &mut HashMap<RawFd, (Conn, EpollFlags)>,
    fd: RawFd,
    stats: &mut Stats,
    config: &Config,
    now: Instant,
    tick: bool,
) {
    let Some((conn, flags)) = conns.get_mut(&fd) else {
        return;
    };
    let before = conn.requests;
    let next = conn.advance(config, now);
    stats.requests += conn.requests - before;
    for line in conn.log.drain(..) {
        println!("{line}");
    }
    match next {
        Next::Close => {
            if tick {
                stats.timed_out += 1;
            }
            if let Some((conn, _)) = conns.remove(&fd) {
                let _ = epoll.delete(&conn.fd);
            }
        }
        Next::Wait { read, write } => {
            let want = interest(read, write);
            if want != *flags {
                let mut event = EpollEvent::new(want, fd as u64);
                if epoll.modify(&conn.fd, &mut event).is_ok() {
                    *flags = want;
                }
            }
        }
    }
}
