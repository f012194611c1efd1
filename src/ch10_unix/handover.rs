//! Zero-downtime restart: a running TCP server hands its listening socket to
//! its successor over a Unix socket (`SCM_RIGHTS`), so the port is never
//! closed, not for a microsecond. Connections that arrive meanwhile wait in
//! the listening socket's accept queue, which belongs to the *socket*, not
//! to a process: whoever holds it next accepts them. nginx's binary upgrade
//! (`USR2`), systemd's socket activation and `SO_REUSEPORT`-free
//! restarts of HAProxy and Envoy all rest on this.
//!
//! ```text
//!  old server                          successor
//!  ──────────                          ─────────
//!  accept(control) = c  ◄── connect ── connect(control)
//!  sendmsg(c, "LISTENERS", SCM_RIGHTS [tcp, control])
//!                       ──────────────► recvmsg → its own fds for both
//!                       ◄── "HELD\n" ── (it holds them now)
//!  close(tcp), close(control)           accept(tcp) …
//!  finish the connections it has, exit
//! ```

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{self, SockFlag, sockopt};

use super::fds::{recv_fds, send_fds};
use crate::kit::accept::{self, AcceptError};
use crate::kit::io::LineReader;
use crate::kit::{Error, Result, wait};
use crate::say;

/// What the successor sends back once it holds the sockets.
pub const ACK: &[u8] = b"HELD\n";

/// The old side: send `listeners` over `channel` (a connected Unix stream
/// socket to the successor) and close them only once the successor has
/// confirmed that it holds them.
///
/// The task:
/// - Send all of `listeners` in one message with [`send_fds`] (data:
///   `LISTENERS\n`).
/// - Wait at most `timeout` for the successor's reply, which must be
///   exactly [`ACK`] (`HELD\n`). Read it with a deadline
///   ([`wait::read_line_within`]).
/// - On the ack: drop (close) the listeners and return `Ok(())`. The port
///   stays open: the successor's descriptors refer to the same sockets.
/// - On anything else (send failed, EOF, timeout, another reply): give the
///   listeners *back*, still open, with the error: `Err((listeners, e))`.
///   The successor may have died with the fds in flight; the kernel then
///   closed its copies, and ours are all that keep the port open.
#[allow(clippy::result_large_err)]
pub fn hand_over(
    listeners: Vec<OwnedFd>,
    channel: BorrowedFd<'_>,
    timeout: Duration,
) -> std::result::Result<(), (Vec<OwnedFd>, Error)> {
    // BEGIN SOLUTION
    let sent = {
        let borrowed: Vec<BorrowedFd<'_>> = listeners.iter().map(|l| l.as_fd()).collect();
        send_fds(channel, b"LISTENERS\n", &borrowed)
    };
    if let Err(e) = sent {
        return Err((listeners, e));
    }
    let mut reader = LineReader::new();
    match wait::read_line_within(channel, &mut reader, 64, timeout) {
        Ok(Some(line)) if line == ACK => {
            drop(listeners);
            Ok(())
        }
        Ok(Some(line)) => Err((
            listeners,
            Error::msg(format!(
                "successor replied {:?}, not HELD",
                String::from_utf8_lossy(&line)
            )),
        )),
        Ok(None) => Err((
            listeners,
            Error::msg("successor closed the channel without confirming"),
        )),
        Err(e) => Err((listeners, e)),
    }
    // END SOLUTION
}

/// The new side: receive up to `max` listening sockets from `channel`,
/// check them, confirm with [`ACK`], and return them.
///
/// The task:
/// - Receive one message with [`recv_fds`].
/// - Fail (returning an [`Error`], the fds dropped) if the fds were
///   truncated (`MSG_CTRUNC`), if none came, or if one of them is not a
///   listening socket (`getsockopt(SO_ACCEPTCONN)` is false or fails).
/// - Only then write [`ACK`] to `channel` and return the sockets.
pub fn take_over(channel: BorrowedFd<'_>, max: usize) -> Result<Vec<OwnedFd>> {
    // BEGIN SOLUTION
    let mut buf = [0u8; 64];
    let got = recv_fds(channel, &mut buf, max)?;
    if got.fds_truncated {
        return Err(Error::msg(format!(
            "take_over: MSG_CTRUNC: more than {max} fds were sent; the kernel closed the rest"
        )));
    }
    if got.fds.is_empty() {
        return Err(Error::msg(format!(
            "take_over: a message of {} bytes without fds",
            got.len
        )));
    }
    for fd in &got.fds {
        match socket::getsockopt(fd, sockopt::AcceptConn) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Error::msg(format!(
                    "take_over: fd {} is not listening",
                    fd.as_raw_fd()
                )));
            }
            Err(e) => {
                return Err(Error::sys(
                    format!("getsockopt({}, SO_ACCEPTCONN)", fd.as_raw_fd()),
                    e,
                ));
            }
        }
    }
    crate::kit::io::writen(channel, ACK)?;
    Ok(got.fds)
    // END SOLUTION
}

/// How a [`serve_tcp`] run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOutcome {
    /// Did it hand its sockets to a successor (rather than stop)?
    pub handed_over: bool,
    /// Requests it answered.
    pub served: u64,
    /// Hand-overs that failed (it kept serving after each).
    pub failed_handovers: u64,
}

/// A one-request-per-connection TCP server that can hand itself over: it
/// reads a line, replies `NAME LINE`, closes. A connection on the `control`
/// Unix listener is a successor asking for the sockets: [`hand_over`] them
/// (both: the TCP listener and the control listener), then finish the
/// connections already accepted and return. If the hand-over fails, carry on.
/// `stop` readable: stop (without handing over).
pub fn serve_tcp(
    tcp: OwnedFd,
    control: OwnedFd,
    name: &str,
    stop: BorrowedFd<'_>,
) -> Result<TcpOutcome> {
    let served = Arc::new(AtomicU64::new(0));
    let mut threads: Vec<std::thread::JoinHandle<()>> = Vec::new();
    let mut sockets = Some((tcp, control));
    let mut outcome = TcpOutcome {
        handed_over: false,
        served: 0,
        failed_handovers: 0,
    };
    while let Some((tcp, control)) = sockets.take() {
        let mut fds = [
            PollFd::new(tcp.as_fd(), PollFlags::POLLIN),
            PollFd::new(control.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop, PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::sys("poll(tcp, control, stop)", e)),
        }
        let ready = |i: usize| fds[i].any().unwrap_or(false);
        let (tcp_ready, control_ready, stop_ready) = (ready(0), ready(1), ready(2));
        if stop_ready {
            say!(name, "stop requested");
            break;
        }
        if tcp_ready && let Some(conn) = accept_now(&tcp, name, stop) {
            let (served, name) = (Arc::clone(&served), name.to_string());
            threads.push(std::thread::spawn(move || {
                if answer_one(&conn, &name).is_ok() {
                    served.fetch_add(1, Ordering::Relaxed);
                }
            }));
            threads.retain(|t| !t.is_finished());
        }
        if control_ready && let Some(successor) = accept_now(&control, name, stop) {
            say!(
                name,
                "a successor connected on the control socket: handing over fds {} and {}",
                tcp.as_raw_fd(),
                control.as_raw_fd()
            );
            match hand_over(
                vec![tcp, control],
                successor.as_fd(),
                Duration::from_secs(5),
            ) {
                Ok(()) => {
                    say!(
                        name,
                        "the successor holds the sockets; closed my copies, finishing {} connection(s)",
                        threads.iter().filter(|t| !t.is_finished()).count()
                    );
                    outcome.handed_over = true;
                    break;
                }
                Err((mut back, e)) => {
                    say!(name, "hand-over failed ({e}); still serving");
                    outcome.failed_handovers += 1;
                    if back.len() != 2 {
                        return Err(Error::msg("hand_over gave back the wrong sockets"));
                    }
                    let control = back.pop().ok_or_else(|| Error::msg("no control socket"))?;
                    let tcp = back.pop().ok_or_else(|| Error::msg("no tcp socket"))?;
                    sockets = Some((tcp, control));
                    continue;
                }
            }
        }
        sockets = Some((tcp, control));
    }
    for t in threads {
        let _ = t.join();
    }
    outcome.served = served.load(Ordering::Relaxed);
    Ok(outcome)
}

/// accept4; `None` when that connection failed (dropped, or no fd for it:
/// then wait a moment, as `kit::accept` explains, rather than spin).
fn accept_now(listener: &OwnedFd, who: &str, stop: BorrowedFd<'_>) -> Option<OwnedFd> {
    match socket::accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
        // SAFETY: accept4 returned a new fd that nothing else owns.
        Ok(fd) => Some(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(e) => {
            let err = Error::sys(format!("accept4({})", listener.as_raw_fd()), e);
            if accept::triage(who, &err) == AcceptError::OutOfFds {
                accept::back_off(stop);
            }
            None
        }
    }
}

/// Read one line (5 s deadline), reply `NAME LINE`.
fn answer_one(conn: &OwnedFd, name: &str) -> Result<()> {
    let mut reader = LineReader::new();
    let line = wait::read_line_within(conn, &mut reader, 1024, Duration::from_secs(5))?
        .ok_or_else(|| Error::msg("EOF before a request"))?;
    let mut reply = format!("{name} ").into_bytes();
    reply.extend_from_slice(&line);
    if !reply.ends_with(b"\n") {
        reply.push(b'\n');
    }
    crate::kit::io::writen(conn, &reply)
}
