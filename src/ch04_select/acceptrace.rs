//! Between "the listener is readable" and `accept`: what can happen, on
//! Linux, and why the chat server's listener is nonblocking anyway.
//!
//! 1. The client resets before we accept. Linux keeps the connection in
//!    the accept queue: `accept` returns it, and the first `read` fails with
//!    ECONNRESET. (BSD kernels could drop it, and then a blocking `accept`
//!    waited for the next client: the reason UNP 16.6 gives.)
//! 2. Another thread (or process) sharing the listener accepted it first:
//!    a nonblocking `accept` says EAGAIN; a blocking one would wait.
//! 3. The process is out of fds: `accept` fails with EMFILE and the
//!    connection *stays queued*, so the listener stays readable.
//!
//! Calls: [`accept(2)`](https://man7.org/linux/man-pages/man2/accept.2.html),
//! [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html),
//! [`setrlimit(2)`](https://man7.org/linux/man-pages/man2/setrlimit.2.html),
//! `SO_LINGER` ([`socket(7)`](https://man7.org/linux/man-pages/man7/socket.7.html)).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{self, SockFlag, sockopt};

use super::fdlimit;
use crate::kit::error::errno_text;
use crate::kit::narrate::{heading, note};
use crate::kit::tcp::{state_name, tcp_info};
use crate::kit::{Call, Error, Result, net, wait};
use crate::say;

/// How long any wait here may take.
const PROMPT: Duration = Duration::from_secs(3);

/// What `accept` errors mean for a server loop, after accept(2), in words:
/// the kit's [`crate::kit::accept::classify`] sorts the errno, this says it.
pub fn accept_error_advice(errno: Errno) -> &'static str {
    use crate::kit::accept::{AcceptError, classify};
    match classify(errno) {
        AcceptError::Again => "try again (nothing to accept now / a signal)",
        AcceptError::Dropped => {
            "try again (that connection was lost before it was handed over: ECONNABORTED, or a \
             network error accept(2) passes on)"
        }
        AcceptError::OutOfFds => {
            "out of a resource: the connection stays queued and the listener stays readable, \
             so back off or free an fd first, or the loop spins"
        }
        AcceptError::Fatal => "a real error of the listener (EBADF, EINVAL, ENOTSOCK...): stop",
    }
}

/// Accept once, quietly: the raw `accept4` result as an owned fd.
fn accept_once(listener: &OwnedFd) -> std::result::Result<OwnedFd, Errno> {
    let raw = socket::accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC)?;
    // SAFETY: accept4 just returned this fd; the OwnedFd is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// The narrated demo part (also the `accept` subcommand).
pub fn demo() -> Result<()> {
    heading("between readiness and accept: a reset, a rival, no fds left");
    reset_in_queue()?;
    rival_took_it()?;
    out_of_fds()?;
    Ok(())
}

/// 1. A connection reset while it waits in the queue is still accepted.
pub fn reset_in_queue() -> Result<()> {
    note("1. the client connects and resets (SO_LINGER {on, 0} + close) before the server accepts");
    let (listener, addr) = net::tcp_listen("server", &crate::kit::addr::parse("127.0.0.1:0")?, 8)?;
    let client = net::tcp_connect("client", &addr)?;
    socket::setsockopt(
        &client,
        sockopt::Linger,
        &libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
    .call("setsockopt(SO_LINGER)")?;
    let c = client.as_raw_fd();
    drop(client);
    say!(
        "client",
        "setsockopt({c}, SO_LINGER, {{1, 0}}); close({c}) = 0   (RST sent)"
    );
    wait::wait_readable(&listener, PROMPT)?;
    say!(
        "server",
        "poll({}: POLLIN) = 1   (the listener is readable)",
        listener.as_raw_fd()
    );
    let conn = accept_once(&listener).call(format!("accept({})", listener.as_raw_fd()))?;
    say!(
        "server",
        "accept({}) = {}   (no error: the reset connection was still in the queue)",
        listener.as_raw_fd(),
        conn.as_raw_fd()
    );
    let state = state_name(tcp_info(&conn)?.state());
    say!("server", "TCP_INFO({}): {state}", conn.as_raw_fd());
    match socket::getpeername::<socket::SockaddrStorage>(conn.as_raw_fd()) {
        Ok(peer) => say!("server", "getpeername({}) = {peer}", conn.as_raw_fd()),
        Err(e) => say!(
            "server",
            "getpeername({}) = -1 {}   (a reset socket has no peer any more)",
            conn.as_raw_fd(),
            errno_text(e)
        ),
    }
    let mut buf = [0u8; 16];
    match nix::unistd::read(&conn, &mut buf) {
        Ok(n) => say!("server", "read({}) = {n}", conn.as_raw_fd()),
        Err(e) => say!(
            "server",
            "read({}) = -1 {}   (the reset, reported on the first read)",
            conn.as_raw_fd(),
            errno_text(e)
        ),
    }
    note(
        "Linux keeps a reset connection in the accept queue: accept returns it, the first read gets \
         ECONNRESET. Handle it like any reset connection",
    );
    Ok(())
}

/// 2. Someone else accepted first: nonblocking accept gets EAGAIN.
pub fn rival_took_it() -> Result<()> {
    note("2. two accepters share one listener; the other one wins the race");
    let (listener, addr) = net::tcp_listen("server", &crate::kit::addr::parse("127.0.0.1:0")?, 8)?;
    net::set_nonblocking(&listener, true)?;
    let _client = net::tcp_connect("client", &addr)?;
    wait::wait_readable(&listener, PROMPT)?;
    say!(
        "server",
        "poll({}: POLLIN) = 1   (we are told a connection waits)",
        listener.as_raw_fd()
    );
    let rival = std::thread::scope(|s| {
        s.spawn(|| accept_once(&listener))
            .join()
            .map_err(|_| Error::msg("the rival thread panicked"))
    })?
    .call("accept (rival thread)")?;
    say!(
        "rival",
        "accept({}) = {}   (another thread, first)",
        listener.as_raw_fd(),
        rival.as_raw_fd()
    );
    match accept_once(&listener) {
        Ok(fd) => say!(
            "server",
            "accept({}) = {} (unexpected)",
            listener.as_raw_fd(),
            fd.as_raw_fd()
        ),
        Err(e) => say!(
            "server",
            "accept({}) = -1 {}   (nonblocking listener: {})",
            listener.as_raw_fd(),
            errno_text(e),
            accept_error_advice(e)
        ),
    }
    note(
        "a blocking listener would have waited here for the next client, with every other socket \
         of this one-thread server unserved: that is why the chat server's listener is nonblocking",
    );
    Ok(())
}

/// 3. EMFILE: the connection stays queued and the listener stays readable.
pub fn out_of_fds() -> Result<()> {
    note("3. out of fds: accept fails with EMFILE, and the connection stays in the queue");
    let (listener, addr) = net::tcp_listen("server", &crate::kit::addr::parse("127.0.0.1:0")?, 8)?;
    net::set_nonblocking(&listener, true)?;
    let _client = net::tcp_connect("client", &addr)?;
    wait::wait_readable(&listener, PROMPT)?;
    let (soft, _) = fdlimit::nofile()?;
    // The lowest free fd is the next one accept would get; a soft limit of
    // exactly that number leaves none.
    let probe = nix::unistd::dup(&listener).call("dup")?;
    let next = probe.as_raw_fd() as u64;
    drop(probe);
    set_soft_nofile(next)?;
    say!(
        "server",
        "setrlimit(RLIMIT_NOFILE, soft {next})   (fds 0..{} are all in use)",
        next - 1
    );
    let first = accept_once(&listener);
    let still = wait::wait_readable(&listener, Duration::ZERO).is_ok();
    set_soft_nofile(soft)?;
    match first {
        Err(e) => say!(
            "server",
            "accept({}) = -1 {}   ({})",
            listener.as_raw_fd(),
            errno_text(e),
            accept_error_advice(e)
        ),
        Ok(fd) => say!("server", "accept = {} (unexpected)", fd.as_raw_fd()),
    }
    say!(
        "server",
        "poll({}: POLLIN) = {}   (the connection is still queued)",
        listener.as_raw_fd(),
        u8::from(still)
    );
    say!(
        "server",
        "setrlimit(RLIMIT_NOFILE, soft {soft})   (restored)"
    );
    let conn = accept_once(&listener).call("accept")?;
    say!(
        "server",
        "accept({}) = {}   (now it fits)",
        listener.as_raw_fd(),
        conn.as_raw_fd()
    );
    note(
        "a loop that retries EMFILE at once spins: poll keeps saying readable. Back off, or keep a \
         spare fd to close, accept and close the newcomer politely",
    );
    Ok(())
}

/// Set the soft `RLIMIT_NOFILE` (up or down, within the hard limit), raw
/// libc: `setrlimit(2)`.
fn set_soft_nofile(soft: u64) -> Result<()> {
    let (_, hard) = fdlimit::nofile()?;
    let lim = libc::rlimit {
        rlim_cur: soft.min(hard),
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid, initialised rlimit that outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == -1 {
        return Err(Error::last_os(format!(
            "setrlimit(RLIMIT_NOFILE, {{{soft}, {hard}}})"
        )));
    }
    Ok(())
}
