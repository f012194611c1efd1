//! When [`accept(2)`](https://man7.org/linux/man-pages/man2/accept.2.html)
//! fails, is it the server's problem or one connection's?
//!
//! A server must never die because one client misbehaved. Three kinds of
//! failure, by errno:
//!
//! - **that connection only** ([`AcceptError::Dropped`]): `ECONNABORTED`
//!   (POSIX: the client gave up while it waited in the accept queue),
//!   `EPROTO`, and the network
//!   errors accept(2)'s NOTES tell a TCP server to "treat like `EAGAIN` by
//!   retrying": `ENETDOWN`, `ENOPROTOOPT`, `EHOSTDOWN`, `ENONET`,
//!   `EHOSTUNREACH`, `EOPNOTSUPP`, `ENETUNREACH`; also `EPERM` (a firewall
//!   rule) and `ETIMEDOUT`. The connection is gone; accept the next.
//! - **out of fds or memory** ([`AcceptError::OutOfFds`]): `EMFILE` (this
//!   process's `RLIMIT_NOFILE`), `ENFILE` (the system's), `ENOBUFS`,
//!   `ENOMEM`. The connection stays queued in the kernel and the listener
//!   stays readable, so calling `accept` again at once would spin: wait a
//!   moment ([`back_off`]) or stop watching the listener until a client
//!   leaves (chapter 4's chat does that).
//! - **try again now** ([`AcceptError::Again`]): `EINTR`, `EAGAIN`.
//!
//! Anything else (`EBADF`, `EINVAL`, `ENOTSOCK`…) is a bug or a listener
//! that is gone: [`AcceptError::Fatal`].
//!
//! Linux, for its part, rarely says `ECONNABORTED`: a connection reset
//! while it waited in the queue is still handed over by `accept`, with the
//! peer's address if you asked for it; only a *later* `getpeername` on it
//! fails (`ENOTCONN`), and its first `read` says `ECONNRESET`. So ask
//! `accept4` for the address (as [`super::net::accept`] does) and treat
//! every error on an accepted connection as that connection's. The test
//! below shows both on this kernel.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::error::{Error, errno_text};

/// What a server loop does after a failed `accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// Call `accept` again (`EINTR`, `EAGAIN`).
    Again,
    /// That one connection failed and is gone: accept the next.
    Dropped,
    /// No fd (or memory) for the connection: back off, then try again.
    OutOfFds,
    /// The listener itself is broken: the server's own error.
    Fatal,
}

/// Sort an errno from `accept`/`accept4` into an [`AcceptError`].
pub fn classify(errno: Errno) -> AcceptError {
    match errno {
        Errno::EINTR | Errno::EAGAIN => AcceptError::Again,
        Errno::ECONNABORTED
        | Errno::EPROTO
        | Errno::ENETDOWN
        | Errno::ENOPROTOOPT
        | Errno::EHOSTDOWN
        | Errno::ENONET
        | Errno::EHOSTUNREACH
        | Errno::EOPNOTSUPP
        | Errno::ENETUNREACH
        | Errno::EPERM
        | Errno::ETIMEDOUT
        | Errno::ECONNRESET => AcceptError::Dropped,
        Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM => AcceptError::OutOfFds,
        _ => AcceptError::Fatal,
    }
}

/// Is `errno` from `accept` about the one connection being accepted
/// ([`AcceptError::Dropped`])?
pub fn per_connection(errno: Errno) -> bool {
    classify(errno) == AcceptError::Dropped
}

/// How long [`back_off`] waits when `accept` has no fd to give.
pub const BACKOFF: Duration = Duration::from_millis(100);

/// Sort a failed accept (`error` names the call and its errno) and, unless
/// it is `Again` or `Fatal`, say on stderr what the server does about it:
///
/// ```text
/// [server] accept4(3): ECONNABORTED (Software caused connection abort): that connection is dropped; the server goes on
/// [server] accept4(3): EMFILE (Too many open files): out of fds; next accept in 100 ms
/// ```
///
/// An error that is not a failed call (no errno) is `Fatal`.
pub fn triage(who: &str, error: &Error) -> AcceptError {
    let Some(errno) = error.errno() else {
        return AcceptError::Fatal;
    };
    let kind = classify(errno);
    let call = match error {
        Error::Sys { call, .. } => call.as_str(),
        Error::Msg(_) => "accept",
    };
    match kind {
        AcceptError::Dropped => eprintln!(
            "[{who}] {call}: {}: that connection is dropped; the server goes on",
            errno_text(errno)
        ),
        AcceptError::OutOfFds => eprintln!(
            "[{who}] {call}: {}: out of fds; next accept in {} ms",
            errno_text(errno),
            BACKOFF.as_millis()
        ),
        AcceptError::Again | AcceptError::Fatal => {}
    }
    kind
}

/// Wait [`BACKOFF`], or less if `stop` becomes readable first (then the
/// loop sees the stop at its next wait). For a server whose `accept`
/// said [`AcceptError::OutOfFds`]: the listener stays readable, so without
/// this pause the loop would spin at full CPU until a client leaves.
pub fn back_off(stop: impl AsFd) {
    let stop = stop.as_fd();
    let mut fds = [PollFd::new(stop, PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(BACKOFF).unwrap_or(PollTimeout::MAX);
    // EINTR or an error: the caller goes round its loop and waits again.
    let _ = poll(&mut fds, ms);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_the_errors_accept_2_lists() {
        for (errno, want) in [
            (Errno::ECONNABORTED, AcceptError::Dropped),
            (Errno::EPROTO, AcceptError::Dropped),
            (Errno::ENETDOWN, AcceptError::Dropped),
            (Errno::EMFILE, AcceptError::OutOfFds),
            (Errno::ENFILE, AcceptError::OutOfFds),
            (Errno::EINTR, AcceptError::Again),
            (Errno::EBADF, AcceptError::Fatal),
            (Errno::EINVAL, AcceptError::Fatal),
        ] {
            assert_eq!(classify(errno), want, "classify({errno:?})");
        }
    }

    /// Connect to `listener` and reset at once (SO_LINGER {1, 0}, close):
    /// the server's side of the connection waits, reset, in the accept
    /// queue. On loopback the RST is processed before `close` returns.
    /// Returns the client's address.
    fn reset_while_queued(
        addr: &nix::sys::socket::SockaddrStorage,
    ) -> nix::sys::socket::SockaddrStorage {
        use nix::sys::socket::{self, sockopt};
        let client = crate::kit::net::tcp_connect("client", addr).expect("connect");
        let local = crate::kit::net::local_addr(&client).expect("getsockname");
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        socket::setsockopt(&client, sockopt::Linger, &linger).expect("SO_LINGER");
        drop(client);
        local
    }

    /// What the module says Linux does: a connection reset in the queue is
    /// still accepted, with the client's address; `getpeername` on it fails
    /// with ENOTCONN and its first read with ECONNRESET.
    #[test]
    fn a_connection_reset_in_the_queue_is_still_accepted() {
        let any = crate::kit::addr::parse("127.0.0.1:0").expect("address");
        let (listener, addr) = crate::kit::net::tcp_listen("server", &any, 4).expect("listen");
        let client_addr = reset_while_queued(&addr);
        let (conn, peer) = crate::kit::net::accept("server", &listener)
            .expect("accept4(lfd, &addr, …) of a connection reset in the queue succeeds");
        assert_eq!(
            peer.to_string(),
            client_addr.to_string(),
            "the address accept4 gave is the client's (its getsockname before the reset)"
        );
        let again = crate::kit::net::peer_addr(&conn);
        assert_eq!(
            again.as_ref().err().and_then(|e| e.errno()),
            Some(Errno::ENOTCONN),
            "getpeername on the accepted reset connection: want ENOTCONN, got {again:?}"
        );
        let mut buf = [0u8; 16];
        let read = nix::unistd::read(&conn, &mut buf);
        assert_eq!(
            read,
            Err(Errno::ECONNRESET),
            "first read of the accepted reset connection"
        );
    }
}
