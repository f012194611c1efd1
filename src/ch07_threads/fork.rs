//! Process per connection: the parent accepts, `fork(2)`s, and goes back
//! to `accept`; the child serves the one connection and exits. The parent
//! must *reap* each child that exits (`waitpid`), or the child stays in the
//! process table as a zombie (state `Z` in `/proc/PID/stat`) until the
//! parent itself exits.
//!
//! SIGCHLD tells the parent that a child has exited. Signals of one kind do
//! not queue: ten children exiting together may raise SIGCHLD once, so one
//! SIGCHLD means "reap *until there is nothing left to reap*":
//! `waitpid(-1, WNOHANG)` in a loop. Here SIGCHLD is blocked and read from a
//! signalfd, so the accept loop polls listener, stop and SIGCHLD together.
//!
//! After `fork` the child is a copy of a possibly multi-threaded parent with
//! only one thread: a lock another thread held (the allocator's, stdout's)
//! stays locked for ever. So the child does only async-signal-safe work
//! (signal-safety(7)): raw `read`, `write`, `close`, then `_exit`. No
//! allocation, no `println!`, no returning into Rust code.

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use super::{Limits, Report, echo, event};
use crate::kit::net::set_nonblocking;
use crate::kit::{Call, Error, Result};

/// What one reaped child left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    pub pid: Pid,
    /// Exit code, or `128 + signal` for a child killed by a signal.
    pub code: i32,
}

// ANCHOR: ch07_reap_children
/// **Assignment.** Reap every child that has exited, without blocking:
/// call `waitpid(-1, WNOHANG)` (nix: `waitpid(None, Some(WaitPidFlag::WNOHANG))`)
/// until it says no more have exited (`WaitStatus::StillAlive`) or that
/// there are no children at all (`ECHILD`). Retry on `EINTR`. Return one
/// [`Reaped`] per child, in the order reaped: the exit code for
/// `WaitStatus::Exited`, `128 + signal number` for `WaitStatus::Signaled`
/// (skip any other status, such as a stopped child). Any other error
/// names the call.
pub fn reap_children() -> Result<Vec<Reaped>> {
    // BEGIN SOLUTION
    let mut reaped = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(reaped),
            Ok(WaitStatus::Exited(pid, code)) => reaped.push(Reaped { pid, code }),
            Ok(WaitStatus::Signaled(pid, signal, _)) => reaped.push(Reaped {
                pid,
                code: 128 + signal as i32,
            }),
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(Error::sys("waitpid(-1, WNOHANG)", errno)),
        }
    }
    // END SOLUTION
}
// ANCHOR_END: ch07_reap_children

/// Options of the fork server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForkOptions {
    /// Reap children as they exit (the right thing). `false` leaves them
    /// as zombies until shutdown, to show what reaping is for.
    pub reap: bool,
}

/// The child's whole life: echo on `conn` with raw `read`/`write`, then
/// `_exit`. Every call here is async-signal-safe; nothing allocates.
fn child(conn: RawFd, close_first: &[RawFd]) -> ! {
    // SAFETY: for each call below, plain system calls on fds this process
    // owns, on buffers on this stack; all are listed as async-signal-safe
    // in signal-safety(7), so they are allowed in the child of a fork.
    unsafe {
        for &fd in close_first {
            libc::close(fd);
        }
        // The parent blocked SIGINT, SIGTERM and SIGCHLD to read them from
        // signalfds; the child wants SIGTERM back (the parent's deadline
        // kill) and ignores SIGINT (Ctrl-C hits the whole process group,
        // and the child should be drained, not killed, by it).
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    let mut buf = [0u8; echo::CHUNK];
    let code = 'serve: loop {
        // SAFETY: buf is ours and writable for buf.len() bytes.
        let n = unsafe { libc::read(conn, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            break 0;
        }
        if n < 0 {
            if Errno::last_raw() == libc::EINTR {
                continue;
            }
            break 1;
        }
        let mut done = 0usize;
        while done < n as usize {
            // SAFETY: buf[done..n] is initialised by the read above.
            let w = unsafe { libc::write(conn, buf[done..].as_ptr().cast(), n as usize - done) };
            if w < 0 {
                if Errno::last_raw() == libc::EINTR {
                    continue;
                }
                break 'serve 1;
            }
            done += w as usize;
        }
    };
    // SAFETY: _exit ends the process at once, without running the parent's
    // atexit handlers or flushing its stdio buffers (which are not ours).
    unsafe { libc::_exit(code) }
}

/// Block `signals` in this thread and open a nonblocking signalfd for them.
fn signalfd_for(signals: &[Signal]) -> Result<SignalFd> {
    let mut mask = SigSet::empty();
    for &s in signals {
        mask.add(s);
    }
    mask.thread_block()
        .call(format!("pthread_sigmask(SIG_BLOCK, {signals:?})"))?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .call(format!("signalfd(-1, {signals:?})"))
}

/// Empty a nonblocking signalfd: one read per pending signal.
fn drain_signalfd(fd: &SignalFd) {
    while let Ok(Some(_)) = fd.read_signal() {}
}

fn forget(children: &mut HashSet<Pid>, report: &mut Report, reaped: Vec<Reaped>) {
    for r in reaped {
        if children.remove(&r.pid) {
            report.joined += 1;
        }
        event(format_args!("reaped pid={} code={}", r.pid, r.code));
    }
}

/// The fork-per-connection echo server. Run it on the main thread of a
/// process that has no other threads (the binary's `server --design fork`):
/// SIGCHLD is blocked here and must not be delivered to another thread.
///
/// At most `limits.max_conns` children at once (one more connection is
/// refused with a `busy` line). On stop: close the listener, wait up to
/// `limits.grace` for the children to finish, SIGTERM the rest, reap all.
/// `on_ready` is called once the SIGCHLD signalfd is set up.
pub fn serve(
    listener: OwnedFd,
    stop: impl AsFd,
    limits: &Limits,
    options: ForkOptions,
    on_ready: impl FnOnce(),
) -> Result<Report> {
    let stop = stop.as_fd();
    let sigchld = signalfd_for(&[Signal::SIGCHLD])?;
    set_nonblocking(&listener, true)?;
    on_ready();
    let mut children: HashSet<Pid> = HashSet::new();
    let mut report = Report::default();
    let lfd = listener.as_raw_fd();
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop, PollFlags::POLLIN),
            PollFd::new(sigchld.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(Error::sys(format!("poll([{lfd}, stop, sigchld])"), errno)),
        }
        let ready = |i: usize| fds[i].any().unwrap_or(false);
        let (conn_ready, stop_ready, child_ready) = (ready(0), ready(1), ready(2));
        if child_ready {
            drain_signalfd(&sigchld);
            if options.reap {
                forget(&mut children, &mut report, reap_children()?);
            }
        }
        if stop_ready {
            break;
        }
        if !conn_ready {
            continue;
        }
        let conn = match super::next_connection(&listener, stop)? {
            super::Next::Conn(fd) => fd,
            super::Next::Stop => break,
            super::Next::Again => continue,
        };
        report.accepted += 1;
        if children.len() >= limits.max_conns {
            event(format_args!(
                "refused fd={} (limit {})",
                conn.as_raw_fd(),
                limits.max_conns
            ));
            echo::refuse(&conn);
            report.refused += 1;
            continue;
        }
        let close_in_child = [lfd, stop.as_raw_fd(), sigchld.as_fd().as_raw_fd()];
        // SAFETY: the child runs only `child`, which makes nothing but
        // async-signal-safe calls and ends in _exit: it never returns into
        // code that might take a lock another thread held at the fork.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => child(conn.as_raw_fd(), &close_in_child),
            Ok(ForkResult::Parent { child }) => {
                event(format_args!("forked pid={child} fd={}", conn.as_raw_fd()));
                children.insert(child);
                report.spawned += 1;
                // The parent's copy of the connection closes here; the
                // child's copy keeps the connection open.
                drop(conn);
            }
            Err(errno) => {
                event(format_args!(
                    "refused fd={} (fork: {errno:?})",
                    conn.as_raw_fd()
                ));
                echo::refuse(&conn);
                report.refused += 1;
            }
        }
    }
    // Stop accepting: from here on a new client gets ECONNREFUSED.
    drop(listener);
    finish(&sigchld, &mut children, &mut report, limits.grace)?;
    Ok(report)
}

/// Wait up to `grace` for the children to exit (reaping as they go), then
/// SIGTERM the rest and reap them too (SIGKILL after one more second).
fn finish(
    sigchld: &SignalFd,
    children: &mut HashSet<Pid>,
    report: &mut Report,
    grace: Duration,
) -> Result<()> {
    let mut deadline = Instant::now() + grace;
    let mut termed = false;
    let mut killed = false;
    loop {
        drain_signalfd(sigchld);
        forget(children, report, reap_children()?);
        if children.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            let signal = if termed {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            };
            if killed {
                return Err(Error::msg(format!(
                    "{} children would not die",
                    children.len()
                )));
            }
            if !termed {
                report.cut += children.len();
            }
            for &pid in children.iter() {
                event(format_args!("kill({pid}, {signal:?})"));
                let _ = kill(pid, signal);
            }
            killed = termed;
            termed = true;
            deadline = now + Duration::from_secs(1);
            continue;
        }
        let left = deadline - now;
        let mut fds = [PollFd::new(sigchld.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1)
            .unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => return Err(Error::sys("poll([sigchld])", errno)),
        }
    }
}
