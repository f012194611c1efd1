//! Signals and blocked socket calls: which ones `SA_RESTART` restarts.
//!
//! [`signal(7)`](https://man7.org/linux/man-pages/man7/signal.7.html),
//! "Interruption of system calls and library functions by signal handlers":
//! with `SA_RESTART`, a blocked `accept`, `connect`, `recv*` or `send*`
//! is restarted after the handler returns, *unless* the socket has a
//! timeout (`SO_RCVTIMEO` for the receiving calls and `accept`,
//! `SO_SNDTIMEO` for the sending ones and `connect`): then it fails with
//! EINTR. `select`, `poll` and `epoll_wait` are never restarted. Without
//! `SA_RESTART`, every one of them fails with EINTR.
//!
//! The demo blocks in a call on a socket with nothing to read and lets an
//! interval timer (`setitimer(ITIMER_REAL)`, 100 ms) raise SIGALRM. The
//! handler counts; at its second call it writes one byte into the peer
//! socket (`write` is async-signal-safe), so a restarted `recv` ends with
//! that byte. The socket is one end of an `AF_UNIX` socketpair: the rule
//! (`sock_intr_errno` in the kernel: restart only when the wait has no
//! timeout) is the same for TCP sockets. Run it alone (`ch04_select eintr`): a process-directed signal
//! must find the blocked thread, so the process has only that one.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::socket::{self, MsgFlags, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

use crate::kit::error::errno_text;
use crate::kit::narrate::{heading, note};
use crate::kit::{Call, Error, Result};
use crate::say;

/// Signals handled since the last reset.
static HANDLED: AtomicUsize = AtomicUsize::new(0);
/// The fd the handler writes a byte to at its second call (-1: none).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_alarm(_: libc::c_int) {
    let n = HANDLED.fetch_add(1, Ordering::SeqCst) + 1;
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if n == 2 && fd >= 0 {
        // SAFETY: write is async-signal-safe; the buffer is a static byte.
        unsafe { libc::write(fd, b"!".as_ptr().cast(), 1) };
    }
}

/// `setitimer(ITIMER_REAL)`: SIGALRM every `every` (zero: off).
fn interval_timer(every: Duration) -> Result<()> {
    let tv = libc::timeval {
        tv_sec: every.as_secs() as libc::time_t,
        tv_usec: every.subsec_micros() as libc::suseconds_t,
    };
    let it = libc::itimerval {
        it_interval: tv,
        it_value: tv,
    };
    // SAFETY: `it` is a valid itimerval; the old value is not asked for.
    if unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) } == -1 {
        return Err(Error::last_os("setitimer(ITIMER_REAL)"));
    }
    Ok(())
}

/// The blocked calls the demo tries.
#[derive(Clone, Copy)]
enum Blocked {
    Recv,
    RecvWithTimeout,
    Poll,
}

/// One trial: install the handler (with or without `SA_RESTART`), block in
/// the call, report what it returned, how long it took and how many
/// signals were handled meanwhile.
fn trial(restart: bool, call: Blocked) -> Result<String> {
    let (here, there) = socket::socketpair(
        socket::AddressFamily::Unix,
        socket::SockType::Stream,
        None,
        socket::SockFlag::SOCK_CLOEXEC,
    )
    .call("socketpair")?;
    if let Blocked::RecvWithTimeout = call {
        socket::setsockopt(&here, sockopt::ReceiveTimeout, &TimeVal::seconds(2))
            .call("setsockopt(SO_RCVTIMEO)")?;
    }
    let flags = if restart {
        SaFlags::SA_RESTART
    } else {
        SaFlags::empty()
    };
    let action = SigAction::new(SigHandler::Handler(on_alarm), flags, SigSet::empty());
    // SAFETY: the handler does an atomic add and a write(2), both
    // async-signal-safe; the old action is restored below.
    let old = unsafe { sigaction(Signal::SIGALRM, &action) }.call("sigaction(SIGALRM)")?;
    HANDLED.store(0, Ordering::SeqCst);
    WAKE_FD.store(there.as_raw_fd(), Ordering::SeqCst);
    let start = Instant::now();
    interval_timer(Duration::from_millis(100))?;
    let fd: RawFd = here.as_raw_fd();
    let (what, result) = match call {
        Blocked::Recv | Blocked::RecvWithTimeout => {
            let mut buf = [0u8; 8];
            let r = socket::recv(fd, &mut buf, MsgFlags::empty());
            ("recv", r.map(|n| n.to_string()))
        }
        Blocked::Poll => {
            let mut fds = [nix::poll::PollFd::new(
                here.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let r = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(2000u16));
            ("poll", r.map(|n| n.to_string()))
        }
    };
    let took = start.elapsed();
    interval_timer(Duration::ZERO)?;
    WAKE_FD.store(-1, Ordering::SeqCst);
    // SAFETY: putting back the action that was in force before.
    unsafe { sigaction(Signal::SIGALRM, &old) }.call("sigaction(SIGALRM, old)")?;
    let handled = HANDLED.load(Ordering::SeqCst);
    let shown = match result {
        Ok(v) => format!(" = {v}"),
        Err(e) => format!(" = -1 {}", errno_text(e)),
    };
    Ok(format!(
        "{what}(){shown}   after {} ms, {handled} SIGALRM handled",
        took.as_millis()
    ))
}

/// The `eintr` subcommand.
pub fn demo() -> Result<()> {
    heading("signals and blocked calls: EINTR, and what SA_RESTART restarts");
    note(
        "a 100 ms interval timer raises SIGALRM; the handler counts, and at its second call writes \
         one byte into the socket's peer",
    );
    for (restart, call, label) in [
        (false, Blocked::Recv, "no SA_RESTART, recv"),
        (true, Blocked::Recv, "SA_RESTART, recv"),
        (
            true,
            Blocked::RecvWithTimeout,
            "SA_RESTART, recv on a socket with SO_RCVTIMEO 2 s",
        ),
        (true, Blocked::Poll, "SA_RESTART, poll(2000 ms)"),
    ] {
        let line = trial(restart, call)?;
        say!("demo", "{label}: {line}");
    }
    note(
        "without SA_RESTART the first signal ends recv with EINTR. With it, recv was restarted after \
         the first signal and returned the byte the second one wrote. But a socket with a timeout, \
         and poll/select/epoll_wait, fail with EINTR whatever the flag (signal(7)): a loop around \
         them must retry EINTR itself",
    );
    Ok(())
}
