//! Thread per connection: the accept loop hands each connection's fd to a
//! new thread, which echoes until the peer closes. A bound on live
//! connections turns the thousand-and-first client away with a `busy` line
//! instead of letting the process run out of threads, memory or fds.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use super::live::Live;
use super::{Limits, Next, Report, drain, echo, event, next_connection};
use crate::kit::Result;
use crate::kit::net::set_nonblocking;

/// The stack each connection thread gets. Rust's default is 2 MiB of
/// address space; an echo loop needs a few pages (its 16 KiB buffer and
/// some frames), so a smaller stack lets many more threads fit.
pub const STACK: usize = 256 * 1024;

/// Start the thread that serves one connection. The closure *moves* `fd`
/// (an `Arc<OwnedFd>`), the ticket that keeps the connection counted, and
/// the thread guard into the new thread: nothing of it stays behind in the
/// accept loop, which is what rules out C's shared-`connfd` race.
pub fn spawn_connection(live: &Arc<Live>, fd: OwnedFd) -> std::io::Result<JoinHandle<()>> {
    let fd = Arc::new(fd);
    let ticket = live.enter(&fd);
    let guard = live.thread();
    thread::Builder::new()
        .name(format!("conn-{}", fd.as_raw_fd()))
        .stack_size(STACK)
        .spawn(move || {
            let raw = fd.as_raw_fd();
            match echo::serve(fd.as_fd()) {
                Ok(bytes) => event(format_args!("closed fd={raw} echoed={bytes}")),
                Err(e) => event(format_args!("closed fd={raw} error={e}")),
            }
            drop(ticket); // the connection is done: no longer live
            drop(fd); // close(2), unless a shutdown cut still holds it
            drop(guard); // the thread's last act
        })
}

/// Join the threads that have finished; keep the others. Returns how many
/// were joined.
pub fn join_finished(handles: &mut Vec<JoinHandle<()>>) -> u64 {
    let mut joined = 0;
    let mut i = 0;
    while i < handles.len() {
        if handles[i].is_finished() {
            // A thread that panicked is still joined; its panic is its own.
            let _ = handles.swap_remove(i).join();
            joined += 1;
        } else {
            i += 1;
        }
    }
    joined
}

// ANCHOR: ch07_serve
/// **Assignment.** A thread-per-connection echo server.
///
/// Make `listener` nonblocking, then loop on [`next_connection`] until it
/// says [`Next::Stop`]. For each connection:
/// - if `live` already counts `limits.max_conns` connections, refuse it
///   ([`echo::refuse`], then let the fd drop) and count it in
///   `Report::refused`;
/// - otherwise start its thread with [`spawn_connection`] and keep the
///   handle. If the thread cannot be created (`EAGAIN`: too many threads),
///   that connection is refused too, never a crash.
///
/// Join finished threads as you go ([`join_finished`]), so handles of
/// closed connections do not pile up.
///
/// On stop: close the listener first (new clients get ECONNREFUSED), then
/// [`drain`] the connections with `limits.grace` (record the cut count), and
/// join every remaining thread. Fill in `accepted`, `refused`, `cut`,
/// `spawned` and `joined` in the [`Report`].
pub fn serve(
    listener: OwnedFd,
    stop: impl AsFd,
    limits: &Limits,
    live: &Arc<Live>,
) -> Result<Report> {
    // BEGIN SOLUTION
    set_nonblocking(&listener, true)?;
    let mut report = Report::default();
    let mut handles = Vec::new();
    loop {
        let fd = match next_connection(&listener, stop.as_fd())? {
            Next::Stop => break,
            Next::Again => continue,
            Next::Conn(fd) => fd,
        };
        report.accepted += 1;
        report.joined += join_finished(&mut handles);
        if live.conns() >= limits.max_conns {
            event(format_args!(
                "refused fd={} (limit {})",
                fd.as_raw_fd(),
                limits.max_conns
            ));
            echo::refuse(&fd);
            report.refused += 1;
            continue;
        }
        let raw = fd.as_raw_fd();
        // On failure the closure, and the fd inside it, is dropped (closed);
        // the peer sees the connection close without a word.
        match spawn_connection(live, fd) {
            Ok(handle) => {
                event(format_args!("accepted fd={raw}"));
                handles.push(handle);
                report.spawned += 1;
            }
            Err(e) => {
                event(format_args!("refused fd={raw} (thread: {e})"));
                report.refused += 1;
            }
        }
    }
    drop(listener);
    report.cut = drain(live, limits.grace)?.cut;
    for handle in handles {
        let _ = handle.join();
        report.joined += 1;
    }
    Ok(report)
    // END SOLUTION
}
// ANCHOR_END: ch07_serve
