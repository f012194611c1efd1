//! The live connections of a server and the threads serving them: counted,
//! waited on with a deadline, and cut all at once at a shutdown deadline.
//!
//! A connection's fd is shared here as an `Arc<OwnedFd>`: the serving
//! thread holds one reference, the registry another. So when the shutdown
//! code calls `shutdown(fd, SHUT_RDWR)` on a straggler, the fd is still open
//! (the thread cannot have closed it, and the number cannot have been reused
//! for another connection): it is closed exactly once, by whichever
//! reference goes last.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{Shutdown, shutdown};

use crate::kit::{Error, Result};

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    conns: HashMap<u64, Arc<OwnedFd>>,
    threads: usize,
}

/// A server's live connections and threads.
#[derive(Debug, Default)]
pub struct Live {
    inner: Mutex<Inner>,
    changed: Condvar,
}

/// A connection's place in [`Live`]; dropping it (when the connection is
/// done) removes the connection and wakes whoever waits on the count.
#[derive(Debug)]
pub struct Ticket {
    live: Arc<Live>,
    id: u64,
}

/// A thread's place in [`Live`]: held by the thread for its whole life,
/// dropped as its last act.
#[derive(Debug)]
pub struct ThreadGuard {
    live: Arc<Live>,
}

impl Live {
    /// An empty registry, shared between a server and whoever watches it.
    pub fn new() -> Arc<Live> {
        Arc::new(Live::default())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking connection thread must not take the server down with
        // it: the counts stay right even if a holder panicked.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a connection; it stays live until the ticket is dropped.
    pub fn enter(self: &Arc<Self>, fd: &Arc<OwnedFd>) -> Ticket {
        let mut inner = self.lock();
        let id = inner.next;
        inner.next += 1;
        inner.conns.insert(id, Arc::clone(fd));
        drop(inner);
        self.changed.notify_all();
        Ticket {
            live: Arc::clone(self),
            id,
        }
    }

    /// Count a thread as running until the guard is dropped.
    pub fn thread(self: &Arc<Self>) -> ThreadGuard {
        self.lock().threads += 1;
        self.changed.notify_all();
        ThreadGuard {
            live: Arc::clone(self),
        }
    }

    /// Connections live now.
    pub fn conns(&self) -> usize {
        self.lock().conns.len()
    }

    /// Threads counted now.
    pub fn threads(&self) -> usize {
        self.lock().threads
    }

    /// Wait until `ready(conns, threads)` holds, at most `timeout`; returns
    /// whether it held.
    pub fn wait_until(&self, timeout: Duration, ready: impl Fn(usize, usize) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        loop {
            if ready(inner.conns.len(), inner.threads) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            inner = match self.changed.wait_timeout(inner, left) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// `shutdown(fd, SHUT_RDWR)` every live connection: a thread blocked in
    /// `read` on it returns 0 (EOF), one blocked in `write` fails with
    /// EPIPE, so every serving thread comes home. Returns how many were cut.
    pub fn cut_all(&self) -> Result<usize> {
        let fds: Vec<Arc<OwnedFd>> = self.lock().conns.values().cloned().collect();
        for fd in &fds {
            let raw = fd.as_raw_fd();
            match shutdown(raw, Shutdown::Both) {
                // ENOTCONN: the peer had already gone; nothing left to cut.
                Ok(()) | Err(Errno::ENOTCONN) => {}
                Err(errno) => return Err(Error::sys(format!("shutdown({raw}, SHUT_RDWR)"), errno)),
            }
        }
        Ok(fds.len())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.live.lock().conns.remove(&self.id);
        self.live.changed.notify_all();
    }
}

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        let mut inner = self.live.lock();
        inner.threads = inner.threads.saturating_sub(1);
        drop(inner);
        self.live.changed.notify_all();
    }
}
