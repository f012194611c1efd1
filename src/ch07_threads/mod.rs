#![doc = include_str!("../../chapters/07-threads.md")]

pub mod demo;
pub mod echo;
pub mod fork;
pub mod live;
pub use crate::bench::load;
pub mod pool;
pub mod proc;
pub mod reuseport;
pub mod server;
pub mod shutdown;
pub mod spawn;
pub mod thread;

use std::time::Duration;

pub use live::{Live, ThreadGuard, Ticket};
pub use shutdown::{Drained, Trigger, drain};

/// How far a server may grow, and how long it waits for its connections
/// when told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; one more is refused with a `busy` line.
    pub max_conns: usize,
    /// Threads of a pool, or listeners of the SO_REUSEPORT design.
    pub workers: usize,
    /// After a stop: how long connections may go on before they are cut.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_conns: 1024,
            workers: 4,
            grace: Duration::from_secs(5),
        }
    }
}

/// What a server did, returned when it has stopped and every thread it
/// started has been joined (or every child reaped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Connections accepted (served or refused).
    pub accepted: u64,
    /// Connections refused with a `busy` line because of a bound.
    pub refused: u64,
    /// Connections still open at the shutdown deadline, cut by the server.
    pub cut: usize,
    /// Threads (or child processes) started for connections or workers.
    pub spawned: u64,
    /// Threads joined (or children reaped) before the server returned.
    pub joined: u64,
}

impl Report {
    /// Add another part's counts (a pool worker's, a listener's).
    pub fn add(&mut self, other: &Report) {
        self.accepted += other.accepted;
        self.refused += other.refused;
        self.cut += other.cut;
        self.spawned += other.spawned;
        self.joined += other.joined;
    }
}

/// The line a bounded server writes to a connection it will not serve.
pub const BUSY: &str = "busy: the server is at its limit, try again later\n";

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{SockFlag, accept4};

use crate::kit::accept::{self, AcceptError};
use crate::kit::{Error, Result};

static EVENTS: AtomicBool = AtomicBool::new(false);

/// Print one line per connection event (accepted, refused, closed,
/// reaped) on stdout: `server --log` turns it on, tests and the demo read
/// the lines.
pub fn set_events(on: bool) {
    EVENTS.store(on, Ordering::Relaxed);
}

/// Print an event line if [`set_events`] turned them on.
pub fn event(text: fmt::Arguments<'_>) {
    if EVENTS.load(Ordering::Relaxed) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

/// What [`next_connection`] found.
#[derive(Debug)]
pub enum Next {
    /// A new connection, owned.
    Conn(OwnedFd),
    /// The stop fd is readable: stop accepting.
    Stop,
    /// Nothing this time (another thread took the connection, a signal
    /// interrupted, the peer gave up before `accept`): call again.
    Again,
}

/// Wait for a connection on `listener` (which must be nonblocking) or for
/// `stop` to become readable, whichever comes first; a stop wins a tie.
/// `poll(2)` watches both, then `accept4(2)` takes the connection.
///
/// A failed `accept` that concerns one connection (`ECONNABORTED`,
/// `EPROTO`…: [`crate::kit::accept::classify`]) is [`Next::Again`]. Running
/// out of fds (`EMFILE`, `ENFILE`) or memory is not fatal either: the
/// connection stays queued in the kernel, so we back off for a moment
/// (watching `stop`) instead of spinning on a listener that stays readable.
/// Either way one line on stderr names the call and the errno.
pub fn next_connection(listener: impl AsFd, stop: impl AsFd) -> Result<Next> {
    let (listener, stop) = (listener.as_fd(), stop.as_fd());
    let lfd = listener.as_raw_fd();
    let mut fds = [
        PollFd::new(listener, PollFlags::POLLIN),
        PollFd::new(stop, PollFlags::POLLIN),
    ];
    match poll(&mut fds, PollTimeout::NONE) {
        Ok(_) => {}
        Err(Errno::EINTR) => return Ok(Next::Again),
        Err(errno) => return Err(Error::sys(format!("poll([{lfd}, stop])"), errno)),
    }
    if fds[1].any().unwrap_or(false) {
        return Ok(Next::Stop);
    }
    if !fds[0].any().unwrap_or(false) {
        return Ok(Next::Again);
    }
    match accept4(lfd, SockFlag::SOCK_CLOEXEC) {
        // SAFETY: accept4 just returned this fd and nothing else owns it;
        // the OwnedFd is its only owner from here on.
        Ok(raw) => Ok(Next::Conn(unsafe { OwnedFd::from_raw_fd(raw) })),
        Err(errno) => {
            let error = Error::sys(format!("accept4({lfd})"), errno);
            match accept::triage("server", &error) {
                AcceptError::Again | AcceptError::Dropped => Ok(Next::Again),
                AcceptError::OutOfFds => {
                    event(format_args!("accept({lfd}): {errno:?}, backing off"));
                    accept::back_off(stop);
                    Ok(Next::Again)
                }
                AcceptError::Fatal => Err(error),
            }
        }
    }
}
