//! Part 5: aborts. SO_LINGER {1, 0}, closing with unread data, writing to
//! a peer that has gone, SIGPIPE and MSG_NOSIGNAL.

use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags, sockopt};

use super::common::{Pair, pair, show_ends};
use super::graceful::how_peer_left;
use crate::ch05_handshake::capture::{Access, Capture, print_packets};
use crate::ch05_handshake::proc::CounterDelta;
use crate::kit::error::errno_text;
use crate::kit::narrate::{heading, line, note};
use crate::kit::{Call, Error, Result};
use crate::say;

fn with_capture(access: &Access, p: &Pair) -> Result<Option<Capture>> {
    if access.can_capture() {
        let cap = Capture::start(&[p.port()])?;
        Ok(Some(cap))
    } else {
        Ok(None)
    }
}

fn show_packets(cap: &Option<Capture>) -> Result<()> {
    if let Some(cap) = cap {
        note("packets:");
        print_packets(&cap.take(Duration::from_millis(30))?, None);
    }
    Ok(())
}

/// Part 5 of the demo: every abort.
pub fn demo(access: &Access) -> Result<()> {
    heading("5. Aborts: RST instead of FIN");
    linger(access)?;
    unread(access)?;
    send_after_rst()?;
    epipe(access)?;
    sigpipe()?;
    Ok(())
}

/// SO_LINGER {on, 0}: close sends RST; the peer reads ECONNRESET.
pub fn linger(access: &Access) -> Result<()> {
    note("5a. SO_LINGER {l_onoff=1, l_linger=0}: close() aborts");
    let p = pair(None)?;
    let cap = with_capture(access, &p)?;
    let c = p.client.as_raw_fd();
    let off = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    socket::setsockopt(&p.client, sockopt::Linger, &off)
        .call(format!("setsockopt({c}, SO_LINGER)"))?;
    say!(
        "client",
        "setsockopt({c}, SOL_SOCKET, SO_LINGER, {{l_onoff=1, l_linger=0}}, 8) = 0"
    );
    let counters = CounterDelta::start()?;
    drop(p.client);
    say!("client", "close({c}) = 0");
    // The reader's own calls, as the program sees them: the error once,
    // then end of file.
    let s = p.server.as_raw_fd();
    crate::kit::wait::wait_readable(&p.server, Duration::from_secs(2))?;
    let mut buf = [0u8; 64];
    for what in [
        "the RST, reported by the next call",
        "reported once; after that, end of file",
    ] {
        match nix::unistd::read(&p.server, &mut buf) {
            Ok(n) => say!("server", "read({s}, 64) = {n}   ({what})"),
            Err(e) => say!("server", "read({s}, 64) = -1 {}   ({what})", errno_text(e)),
        }
    }
    show_ends(p.client_addr, p.server_addr)?;
    show_packets(&cap)?;
    for (name, b, a) in counters.rises(&["Tcp:OutRsts", "TcpExt:TCPAbortOnData"])? {
        line("", format_args!("  {name:<24} +{}", a - b));
    }
    note(
        "no FIN, no TIME_WAIT: the RST ends both sides at once, and anything unsent is thrown away",
    );
    Ok(())
}

/// Closing with data still unread sends RST, not FIN.
pub fn unread(access: &Access) -> Result<()> {
    note("5b. close() with unread data in the receive buffer");
    let p = pair(None)?;
    let cap = with_capture(access, &p)?;
    let (c, s) = (p.client.as_raw_fd(), p.server.as_raw_fd());
    socket::send(s, b"a reply nobody reads\n", MsgFlags::empty()).call(format!("send({s})"))?;
    say!("server", "send({s}, \"a reply nobody reads\\n\") = 21");
    super::common::wait_until_queued(&p.client)?;
    let counters = CounterDelta::start()?;
    drop(p.client);
    say!("client", "close({c}) = 0   (21 bytes unread)");
    let left = how_peer_left(&p.server, Duration::from_secs(2))?;
    say!(
        "server",
        "how_peer_left({s}) = {left:?}   (its read got -1 ECONNRESET, as in 5a)"
    );
    show_packets(&cap)?;
    for (name, b, a) in counters.rises(&["Tcp:OutRsts", "TcpExt:TCPAbortOnClose"])? {
        line("", format_args!("  {name:<24} +{}", a - b));
    }
    note(
        "unread data means the application lost something: Linux says so with RST (RFC 2525, 2.17)",
    );
    Ok(())
}

/// SIGPIPEs delivered to this process while [`send_after_rst`] counts.
static SIGPIPES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn count_sigpipe(_: libc::c_int) {
    // An atomic add is async-signal-safe.
    SIGPIPES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// Sending after the peer reset an ESTABLISHED connection: the first send
/// returns the pending error, ECONNRESET, with no signal; every later one
/// EPIPE and SIGPIPE. Counted with a SIGPIPE handler installed for the
/// part (`sigaction(2)`), then the old disposition is put back.
pub fn send_after_rst() -> Result<()> {
    note("5c. sending after an RST: which call gets which error, and when SIGPIPE comes");
    let p = pair(None)?;
    let (c, s) = (p.client.as_raw_fd(), p.server.as_raw_fd());
    let off = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    socket::setsockopt(&p.server, sockopt::Linger, &off).call("setsockopt(SO_LINGER)")?;
    drop(p.server);
    say!(
        "server",
        "setsockopt({s}, SO_LINGER, {{1, 0}}); close({s}) = 0   (RST)"
    );
    // Wait for the RST to arrive: POLLERR/POLLHUP on the client.
    crate::kit::wait::wait_for(
        &p.client,
        nix::poll::PollFlags::empty(),
        Duration::from_secs(2),
    )
    .ok();
    let handler = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(count_sigpipe),
        nix::sys::signal::SaFlags::empty(),
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only does an atomic add (async-signal-safe); the
    // old action is restored below before the part returns.
    let old = unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGPIPE, &handler) }
        .call("sigaction(SIGPIPE)")?;
    say!("client", "sigaction(SIGPIPE, a handler that counts) = 0");
    for i in 1..=3 {
        let before = SIGPIPES.load(std::sync::atomic::Ordering::SeqCst);
        let r = socket::send(c, b"x", MsgFlags::empty());
        let signals = SIGPIPES.load(std::sync::atomic::Ordering::SeqCst) - before;
        let sig = if signals > 0 { "SIGPIPE" } else { "no signal" };
        match r {
            Ok(n) => say!("client", "send({c}, \"x\", 0) = {n}   (send #{i}; {sig})"),
            Err(e) => say!(
                "client",
                "send({c}, \"x\", 0) = -1 {}   (send #{i}; {sig})",
                errno_text(e)
            ),
        }
    }
    // SAFETY: putting back the action that was in force before.
    unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGPIPE, &old) }
        .call("sigaction(SIGPIPE, old)")?;
    note(
        "the RST left an error pending on the socket; the next send returned it (ECONNRESET) and \
         cleared it, with no signal. The socket is now closed for sending: every later send is \
         EPIPE, and raises SIGPIPE unless MSG_NOSIGNAL is given",
    );
    note(
        "had the peer's FIN come first (CLOSE_WAIT), the kernel records the RST as EPIPE instead \
         (tcp_reset in net/ipv4/tcp_input.c), so there the first failing send already gets EPIPE \
         and SIGPIPE: part 5d",
    );
    Ok(())
}

/// Writing to a peer that has closed: the first write works and draws an
/// RST, the next fails with EPIPE.
pub fn epipe(access: &Access) -> Result<()> {
    note("5d. writing to a peer that has closed its socket");
    let p = pair(None)?;
    let cap = with_capture(access, &p)?;
    let (c, s) = (p.client.as_raw_fd(), p.server.as_raw_fd());
    drop(p.server);
    say!("server", "close({s}) = 0");
    let mut buf = [0u8; 8];
    let n = nix::unistd::read(&p.client, &mut buf).call(format!("read({c})"))?;
    say!(
        "client",
        "read({c}) = {n} (EOF; the client does not take the hint)"
    );
    for i in 1..=2 {
        match nix::unistd::write(&p.client, b"more\n") {
            Ok(n) => say!("client", "write({c}, \"more\\n\") = {n}   (write #{i})"),
            Err(e) => say!(
                "client",
                "write({c}, \"more\\n\") = -1 {}   (write #{i})",
                errno_text(e)
            ),
        }
    }
    show_packets(&cap)?;
    note(
        "write #1 only queued the bytes; the closed socket answered them with RST; write #2 met the RST: EPIPE \
         (not ECONNRESET: the RST came after the peer's FIN)",
    );
    note(
        "a C program would have died of SIGPIPE at write #2; Rust's runtime ignores SIGPIPE before main, so we got EPIPE",
    );
    Ok(())
}

/// The classic death by SIGPIPE, in a child process that restores the
/// default disposition; and MSG_NOSIGNAL, which avoids it per call.
pub fn sigpipe() -> Result<()> {
    note("5e. SIGPIPE: the same second write in a child process with the default disposition");
    for nosignal in [false, true] {
        let p = pair(None)?;
        let (c, s) = (p.client.as_raw_fd(), p.server.as_raw_fd());
        drop(p.server);
        say!("server", "close({s}) = 0");
        let mut buf = [0u8; 8];
        nix::unistd::read(&p.client, &mut buf).call(format!("read({c})"))?;
        // SAFETY: the child only calls async-signal-safe functions (signal,
        // send, _exit) before it exits, so forking a process that may have
        // other threads is fine.
        let pid = unsafe { libc::fork() };
        if pid == -1 {
            return Err(Error::last_os("fork()"));
        }
        if pid == 0 {
            child_writes_twice(c, nosignal);
        }
        let flag = if nosignal { "MSG_NOSIGNAL" } else { "0" };
        say!(
            "parent",
            "fork() = {pid}: the child restores SIGPIPE to SIG_DFL, then send(fd, \"x\", {flag}) twice"
        );
        let mut status = 0;
        // SAFETY: waitpid writes one int, which we own; pid is our child.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == -1 {
            return Err(Error::last_os(format!("waitpid({pid})")));
        }
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            let name = if sig == libc::SIGPIPE {
                "SIGPIPE"
            } else {
                "another signal"
            };
            say!(
                "parent",
                "waitpid({pid}) -> killed by signal {sig} ({name})"
            );
        } else if libc::WIFEXITED(status) {
            let code = libc::WEXITSTATUS(status);
            let what = match code {
                0 => "both sends worked".to_string(),
                c => format!(
                    "its second send failed with {}",
                    errno_text(Errno::from_raw(c))
                ),
            };
            say!(
                "parent",
                "waitpid({pid}) -> exited {code}: {what}; no signal"
            );
        }
    }
    note(
        "use MSG_NOSIGNAL on send (or ignore SIGPIPE once) in C; in Rust it is ignored for you, so check for EPIPE",
    );
    Ok(())
}

/// In the forked child: default SIGPIPE, two sends, exit with the errno of
/// the one that failed (0 if none did). Only async-signal-safe calls.
fn child_writes_twice(fd: RawFd, nosignal: bool) -> ! {
    let flags = if nosignal { libc::MSG_NOSIGNAL } else { 0 };
    // SAFETY: signal, send, poll, errno access and _exit are
    // async-signal-safe; the buffer is a static byte string and `pfd` a
    // local that outlives the poll call.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        for _ in 0..2 {
            if libc::send(fd, b"x".as_ptr().cast(), 1, flags) == -1 {
                libc::_exit(*libc::__errno_location());
            }
            // Wait (at most 1 s) for the RST the first send draws: with no
            // events asked for, poll reports only POLLERR/POLLHUP, which the
            // RST sets.
            let mut pfd = libc::pollfd {
                fd,
                events: 0,
                revents: 0,
            };
            libc::poll(&mut pfd, 1, 1000);
        }
        libc::_exit(0)
    }
}
