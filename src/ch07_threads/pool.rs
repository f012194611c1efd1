//! Fixed pools of threads, made before the first client arrives.
//!
//! - [`accept_pool`]: every worker blocks in `accept(2)` on the same
//!   listener (UNP's "prethreaded server, each thread calls accept").
//!   Linux wakes one blocked acceptor per connection, so there is no
//!   thundering herd here; [`herd`] shows the herd that *does* happen when
//!   the workers wait in `poll` instead.
//! - [`queue_pool`]: one acceptor thread feeds accepted fds through a
//!   bounded queue to the workers ("main thread calls accept").
//!
//! Either way a worker serves one connection at a time, so a pool of N
//! serves N clients at once; the N+1st waits (in the kernel's accept queue,
//! or in ours).

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{Shutdown, SockFlag, SockaddrStorage, accept4, shutdown};

use super::live::{Live, Ticket};
use super::thread::STACK;
use super::{Limits, Next, Report, drain, echo, event, next_connection};
use crate::kit::accept::{self, AcceptError};
use crate::kit::net::set_nonblocking;
use crate::kit::{Call, Error, Result};

/// Wait until `stop` is readable. EINTR restarts the wait.
fn wait_stop(stop: impl AsFd) -> Result<()> {
    let stop = stop.as_fd();
    loop {
        let mut fds = [PollFd::new(stop, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(Error::sys("poll([stop])", errno)),
        }
    }
}

/// Serve one connection on the calling worker thread, counted in `live`.
fn serve_here(live: &Arc<Live>, fd: OwnedFd) {
    let fd = Arc::new(fd);
    let ticket = live.enter(&fd);
    let raw = fd.as_raw_fd();
    event(format_args!("accepted fd={raw} by {}", thread_name()));
    match echo::serve(fd.as_fd()) {
        Ok(bytes) => event(format_args!("closed fd={raw} echoed={bytes}")),
        Err(e) => event(format_args!("closed fd={raw} error={e}")),
    }
    drop(ticket);
}

fn thread_name() -> String {
    thread::current().name().unwrap_or("?").to_string()
}

/// One worker of the accept pool: `accept` (blocking), serve, repeat; leave
/// when `accept` fails with EINVAL, which is what Linux returns to threads
/// blocked on a listener that has been `shutdown`.
fn accept_worker(live: Arc<Live>, listener: Arc<OwnedFd>) -> Report {
    let _guard = live.thread();
    let lfd = listener.as_raw_fd();
    let mut report = Report::default();
    loop {
        match accept4(lfd, SockFlag::SOCK_CLOEXEC) {
            Ok(raw) => {
                // SAFETY: accept4 just returned this fd; nothing else owns it.
                let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                report.accepted += 1;
                serve_here(&live, fd);
            }
            // EINVAL: the listener was shut down: time to go home.
            Err(Errno::EINVAL) => return report,
            Err(errno) => {
                let error = Error::sys(format!("accept4({lfd})"), errno);
                match accept::triage("server", &error) {
                    AcceptError::Again | AcceptError::Dropped => continue,
                    AcceptError::OutOfFds => {
                        event(format_args!("accept({lfd}): {errno:?}, backing off"));
                        thread::sleep(accept::BACKOFF);
                    }
                    AcceptError::Fatal => {
                        event(format_args!("accept({lfd}): {errno:?}, worker leaves"));
                        return report;
                    }
                }
            }
        }
    }
}

/// A pool of `limits.workers` threads, each blocked in `accept` on the
/// shared (blocking) listener. The calling thread waits for `stop`, then
/// `shutdown(listener, SHUT_RD)` wakes every blocked `accept` with EINVAL,
/// the connections are drained, and the workers joined. `on_ready` is
/// called once every worker has started.
pub fn accept_pool(
    listener: OwnedFd,
    stop: impl AsFd,
    limits: &Limits,
    live: &Arc<Live>,
    on_ready: impl FnOnce(),
) -> Result<Report> {
    set_nonblocking(&listener, false)?;
    let listener = Arc::new(listener);
    let mut workers: Vec<JoinHandle<Report>> = Vec::new();
    for i in 0..limits.workers.max(1) {
        let (live, listener) = (Arc::clone(live), Arc::clone(&listener));
        let worker = thread::Builder::new()
            .name(format!("worker-{i}"))
            .stack_size(STACK)
            .spawn(move || accept_worker(live, listener))
            .map_err(|e| Error::msg(format!("spawn worker {i}: {e}")))?;
        workers.push(worker);
    }
    on_ready();
    wait_stop(stop)?;
    let lfd = listener.as_raw_fd();
    shutdown(lfd, Shutdown::Read).call(format!("shutdown({lfd}, SHUT_RD)"))?;
    let mut report = Report {
        spawned: workers.len() as u64,
        ..Report::default()
    };
    report.cut = drain(live, limits.grace)?.cut;
    for worker in workers {
        if let Ok(part) = worker.join() {
            report.add(&part);
        }
        report.joined += 1;
    }
    Ok(report)
}

// ANCHOR: ch07_queue_pool
/// **Assignment 4: a bounded pool fed through a bounded queue, with
/// back-pressure.**
///
/// The design (UNP 30.8, "main thread calls accept"): a fixed number of
/// threads, made before the first client, and one acceptor, the calling
/// thread, that hands each accepted connection to them through a queue.
/// However many clients come, the server never has more than
/// `limits.workers` worker threads and never holds more than
/// `limits.max_conns` connections waiting: one more is **refused** with the
/// [`BUSY`](super::BUSY) line ([`echo::refuse`]) and
/// closed at once. (Connections the acceptor has not reached yet wait in the
/// kernel's accept queue, bounded by the listen backlog.)
///
/// 1. Make the listener nonblocking ([`set_nonblocking`]); the acceptor
///    waits with [`next_connection`], which watches
///    `stop` too.
/// 2. The queue: `std::sync::mpsc::sync_channel(limits.max_conns)` (at
///    least 1) carrying `(Arc<OwnedFd>, Ticket)`; its `Receiver` shared by
///    the workers as `Arc<Mutex<Receiver<…>>>`.
/// 3. Start `limits.workers` (at least 1) threads with
///    `thread::Builder::new().name(format!("worker-{i}")).stack_size(STACK)`;
///    a failed spawn is an `Err`, never a panic. Each worker: hold
///    `live.thread()` for its whole life; loop: lock the receiver, `recv`
///    **one** job, and let the lock go **before** serving (a worker that
///    serves while holding the lock makes the pool one thread wide); serve
///    it with [`echo::serve`] (log its result with
///    `event`, an error is that connection's, not the worker's); drop the
///    ticket; leave the loop when `recv` fails (the queue was closed and
///    is empty).
/// 4. Then call `on_ready()` (the server prints `listening on …` there).
/// 5. Accept loop: for each connection `live.enter(&fd)` (with the fd in an
///    `Arc`) gives its ticket; `try_send` it. Never `send`: a blocking send
///    would stop the acceptor, which then cannot see `stop`. `Full` (or
///    `Disconnected`): refuse it (`echo::refuse`), count it in
///    `report.refused`, and drop it (that closes it). Count every accepted
///    connection in `report.accepted`.
/// 6. On [`Next::Stop`]: close the listener, close the
///    queue (drop the `SyncSender`: each worker then leaves once the queue
///    is empty), [`drain`] the live connections for `limits.grace` (its
///    `cut` goes into the report), join every worker; `report.spawned` and
///    `report.joined` count the workers.
///
/// Hints: `mpsc::TrySendError::Full((fd, ticket))` gives the job back;
/// `rx.lock().unwrap_or_else(|p| p.into_inner()).recv()` in one statement
/// drops the guard at its end. Compare with [`accept_pool`] above, the other
/// pool, and `thread::serve`, the same bound without a pool.
pub fn queue_pool(
    listener: OwnedFd,
    stop: impl AsFd,
    limits: &Limits,
    live: &Arc<Live>,
    on_ready: impl FnOnce(),
) -> Result<Report> {
    // BEGIN SOLUTION
    set_nonblocking(&listener, true)?;
    let (tx, rx) = mpsc::sync_channel::<(Arc<OwnedFd>, Ticket)>(limits.max_conns.max(1));
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = Vec::new();
    for i in 0..limits.workers.max(1) {
        let (live, rx) = (Arc::clone(live), Arc::clone(&rx));
        let worker = thread::Builder::new()
            .name(format!("worker-{i}"))
            .stack_size(STACK)
            .spawn(move || {
                let _guard = live.thread();
                loop {
                    // Hold the lock only to take one job, not while serving.
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((fd, ticket)) = job else { break };
                    let raw = fd.as_raw_fd();
                    event(format_args!("serving fd={raw} by {}", thread_name()));
                    match echo::serve(fd.as_fd()) {
                        Ok(bytes) => event(format_args!("closed fd={raw} echoed={bytes}")),
                        Err(e) => event(format_args!("closed fd={raw} error={e}")),
                    }
                    drop(ticket);
                }
            })
            .map_err(|e| Error::msg(format!("spawn worker {i}: {e}")))?;
        workers.push(worker);
    }
    on_ready();
    let mut report = Report {
        spawned: workers.len() as u64,
        ..Report::default()
    };
    loop {
        let fd = match next_connection(&listener, stop.as_fd())? {
            Next::Stop => break,
            Next::Again => continue,
            Next::Conn(fd) => fd,
        };
        report.accepted += 1;
        let fd = Arc::new(fd);
        let ticket = live.enter(&fd);
        event(format_args!("queued fd={}", fd.as_raw_fd()));
        match tx.try_send((fd, ticket)) {
            Ok(()) => {}
            Err(TrySendError::Full((fd, ticket)) | TrySendError::Disconnected((fd, ticket))) => {
                event(format_args!("refused fd={} (queue full)", fd.as_raw_fd()));
                echo::refuse(fd.as_fd());
                report.refused += 1;
                drop(ticket);
            }
        }
    }
    drop(listener);
    // Closing the queue lets each worker leave once the queue is empty.
    drop(tx);
    report.cut = drain(live, limits.grace)?.cut;
    for worker in workers {
        let _ = worker.join();
        report.joined += 1;
    }
    Ok(report)
    // END SOLUTION
}
// ANCHOR_END: ch07_queue_pool

/// What [`herd`] saw: for one connection, how many of the waiting threads
/// the kernel woke, how many of those got it from `accept`, and how many
/// then lost the race to it (EAGAIN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Herd {
    pub waiters: usize,
    pub woke: usize,
    pub won: usize,
    pub lost: usize,
}

/// `voluntary_ctxt_switches` of thread `tid` of this process: it grows by
/// one each time the thread goes to sleep, so a thread that was woken and
/// went back to sleep shows it here even if it never returned to user code.
fn sleeps(tid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
        .ok()
        .and_then(|text| {
            let line = text
                .lines()
                .find(|l| l.starts_with("voluntary_ctxt_switches:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// The thundering herd, observed: `waiters` threads wait for a connection
/// on one listener, by `poll` (`blocking == false`, listener nonblocking)
/// or in a blocking `accept` (`blocking == true`). Then `connect` makes one
/// connection to the listener's address. A thread counts as woken when its
/// `voluntary_ctxt_switches` in `/proc/self/task/TID/status` grew: a thread
/// woken by `poll` that finds the connection already taken goes back to
/// sleep inside the kernel, and only that count shows it was disturbed.
pub fn herd(
    waiters: usize,
    blocking: bool,
    connect: impl FnOnce(&SockaddrStorage) -> Result<OwnedFd>,
) -> Result<Herd> {
    let (listener, at) =
        crate::kit::net::tcp_listen("herd", &crate::kit::addr::parse("127.0.0.1:0")?, 16)?;
    set_nonblocking(&listener, !blocking)?;
    let listener = Arc::new(listener);
    let won = Arc::new(AtomicUsize::new(0));
    let lost = Arc::new(AtomicUsize::new(0));
    let (tids_tx, tids) = mpsc::channel::<i32>();
    let (release, released) = mpsc::channel::<()>();
    let released = Arc::new(Mutex::new(released));
    let mut threads = Vec::new();
    for _ in 0..waiters {
        let (listener, won, lost, tids_tx, released) = (
            Arc::clone(&listener),
            Arc::clone(&won),
            Arc::clone(&lost),
            tids_tx.clone(),
            Arc::clone(&released),
        );
        threads.push(thread::spawn(move || {
            let lfd = listener.as_raw_fd();
            let _ = tids_tx.send(nix::unistd::gettid().as_raw());
            if !blocking {
                let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(5000u16));
            }
            match accept4(lfd, SockFlag::SOCK_CLOEXEC) {
                Ok(raw) => {
                    // SAFETY: accept4 just returned this fd; nothing else owns it.
                    drop(unsafe { OwnedFd::from_raw_fd(raw) });
                    won.fetch_add(1, Ordering::SeqCst);
                }
                Err(Errno::EAGAIN) => {
                    lost.fetch_add(1, Ordering::SeqCst);
                }
                // EINVAL: released by the shutdown below without a connection.
                Err(_) => {}
            }
            // Stay alive (asleep) until counted, so /proc still has us.
            let _ = released.lock().map(|r| r.recv());
        }));
    }
    drop(tids_tx);
    let tids: Vec<i32> = tids.iter().take(waiters).collect();
    // Let the waiters reach poll/accept and fall asleep there: nothing
    // signals "another thread is now asleep in the kernel", so this one
    // wait is a sleep.
    thread::sleep(Duration::from_millis(100));
    let before: Vec<u64> = tids.iter().map(|&t| sleeps(t)).collect();
    let client = connect(&at)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while won.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    // Give the other waiters a moment to show whether they were woken too.
    thread::sleep(Duration::from_millis(100));
    let woke = tids
        .iter()
        .zip(&before)
        .filter(|&(&t, &b)| sleeps(t) > b)
        .count();
    let lfd = listener.as_raw_fd();
    shutdown(lfd, Shutdown::Read).call(format!("shutdown({lfd}, SHUT_RD)"))?;
    drop(release);
    for t in threads {
        let _ = t.join();
    }
    drop(client);
    Ok(Herd {
        waiters,
        woke,
        won: won.load(Ordering::SeqCst),
        lost: lost.load(Ordering::SeqCst),
    })
}
