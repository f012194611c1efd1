//! The echo service ([RFC 862](https://www.rfc-editor.org/rfc/rfc862)): a
//! server sends back every byte it receives until the client closes.
//!
//! Assignment 2 is the iterative server ([`serve_echo`] with
//! [`echo_connection`]); assignment 3 the client ([`echo_exchange`]). The
//! `server` and `client` subcommands of `ch02_tcp` run on top of them.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags, Shutdown, SockaddrStorage};
use nix::unistd;

use super::calls::{
    accept_peer, close_fd, connect_to, show_bytes, wait_readable_or_stop, wait_writable_or_stop,
};
use crate::kit::stop::Woke;
use crate::kit::{Call, Error, Result, wait};
use crate::say;

/// What [`serve_echo`] did before it stopped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EchoStats {
    /// Connections accepted (each one was served, then closed).
    pub connections: u64,
    /// Bytes echoed back, over all connections.
    pub bytes: u64,
    /// Connections that ended with an error (reset, timeout, ...) rather
    /// than a clean EOF; they are counted in `connections` too.
    pub failed: u64,
}

/// How one connection ended, from [`echo_connection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnEnd {
    /// The client closed its side (read returned 0) after this many bytes.
    Eof(u64),
    /// The client sent nothing for `idle`: we gave up on it.
    Idle(u64),
    /// `stop` became readable: the server is shutting down.
    Stopped(u64),
}

/// Echo one connection (RFC 862) until the client closes, goes quiet for
/// `idle`, or `stop` becomes readable. Does **not** close `conn` (the
/// caller owns it).
///
/// The loop:
/// 1. wait for `conn` or `stop` with
///    `wait_readable_or_stop(conn, stop, Some(idle))` (given, in
///    [`super::calls`]): `Woke::Stop` → `ConnEnd::Stopped`,
///    `Woke::Timeout` → `ConnEnd::Idle`;
/// 2. `read(2)` up to 4096 bytes: 0 means EOF → `ConnEnd::Eof`; `EINTR`
///    → go round again; any other error → return it (naming the call);
/// 3. send back *every* byte you read, and add them to the count. A send
///    may be short: loop.
///
/// Bytes are bytes: no lines, no text; binary and `\0` are echoed as they
/// came.
///
/// A client that sends and never reads must not block your write for ever
/// (a test does exactly that). Two ways, pick one:
/// - simple: first set `SO_SNDTIMEO` to `idle`
///   (`socket::setsockopt(&conn, sockopt::SendTimeout, &TimeVal::milliseconds(ms))`,
///   with `nix::sys::socket::sockopt` and `nix::sys::time::{TimeVal,
///   TimeValLike}` imported);
///   a write stuck that long then fails with `EAGAIN`: return it as an
///   error. (Ctrl-C may then wait up to `idle`.)
/// - better: `send(raw, rest, MSG_DONTWAIT | MSG_NOSIGNAL)`; on `EAGAIN`
///   wait with `wait_writable_or_stop(conn, stop, Some(idle))` and go on,
///   stop, or give up (an error, e.g. `ETIMEDOUT`) on a timeout.
pub fn echo_connection(
    conn: BorrowedFd<'_>,
    stop: BorrowedFd<'_>,
    idle: Duration,
) -> Result<ConnEnd> {
    let raw = conn.as_raw_fd();
    // BEGIN SOLUTION
    let mut total = 0u64;
    let mut buf = [0u8; 4096];
    loop {
        match wait_readable_or_stop(conn, stop, Some(idle))? {
            Woke::Stop => return Ok(ConnEnd::Stopped(total)),
            Woke::Timeout => return Ok(ConnEnd::Idle(total)),
            Woke::Ready => {}
        }
        let n = match unistd::read(conn, &mut buf) {
            Ok(0) => {
                say!(
                    "server",
                    "read({raw}, {}) = 0 (EOF: the client closed its side)",
                    buf.len()
                );
                return Ok(ConnEnd::Eof(total));
            }
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(Error::sys(format!("read({raw})"), errno)),
        };
        say!(
            "server",
            "read({raw}, {}) = {n} {}",
            buf.len(),
            show_bytes(&buf[..n])
        );
        // Never block in send: a client that does not read would hold the
        // server (and Ctrl-C) hostage. MSG_NOSIGNAL: EPIPE, not SIGPIPE.
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        let mut sent = 0;
        while sent < n {
            match socket::send(raw, &buf[sent..n], flags) {
                Ok(m) => {
                    say!(
                        "server",
                        "send({raw}, {}, MSG_DONTWAIT|MSG_NOSIGNAL) = {m}",
                        show_bytes(&buf[sent..n])
                    );
                    sent += m;
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => match wait_writable_or_stop(conn, stop, Some(idle))? {
                    Woke::Ready => continue,
                    Woke::Stop => return Ok(ConnEnd::Stopped(total + sent as u64)),
                    Woke::Timeout => {
                        let call = format!("send({raw}): the client read nothing for {idle:?}");
                        return Err(Error::sys(call, Errno::ETIMEDOUT));
                    }
                },
                Err(errno) => return Err(Error::sys(format!("send({raw})"), errno)),
            }
        }
        total += n as u64;
    }
    // END SOLUTION
}

/// An iterative echo server: serve the connections waiting on `listener`
/// one at a time, until `stop` becomes readable. Returns what it did.
///
/// The accept loop:
/// 1. wait for `listener` or `stop` with
///    `wait_readable_or_stop(listener, stop, None)`: on `Woke::Stop` return
///    the stats;
/// 2. accept the connection ([`super::accept_peer`]). `EINTR` (a signal)
///    and the errors that belong to the one connection being accepted are
///    not fatal: go round again. Those are `ECONNABORTED` (a connection lost
///    before it could be handed over), `EPROTO` and the network errors
///    accept(2)'s NOTES list; `crate::kit::accept::per_connection(errno)`
///    says which. Other accept errors: return them. (A client that *reset*
///    while it waited in the queue is no accept error on Linux: `accept`
///    returns it and the first read gets ECONNRESET, which step 3 handles
///    as a failed connection.);
/// 3. serve it with [`echo_connection`]. An error there (a reset, a client
///    that never reads...) ends **that connection only**: count it in
///    `failed`, say what happened, carry on. `ConnEnd::Stopped` means
///    finish this connection and return;
/// 4. close the connection ([`super::close_fd`], or drop it) and count it
///    in `connections`, its bytes in `bytes`.
///
/// Never panic, never leave a connection open after you are done with it:
/// the tests count this process's sockets on the listener's port.
pub fn serve_echo(listener: impl AsFd, stop: impl AsFd, idle: Duration) -> Result<EchoStats> {
    let listener = listener.as_fd();
    let stop = stop.as_fd();
    // BEGIN SOLUTION
    let mut stats = EchoStats::default();
    loop {
        if wait_readable_or_stop(listener, stop, None)? == Woke::Stop {
            return Ok(stats);
        }
        let (conn, peer) = match accept_peer("server", listener) {
            Ok(accepted) => accepted,
            Err(e)
                if e.errno().is_some_and(|errno| {
                    errno == Errno::EINTR || crate::kit::accept::per_connection(errno)
                }) =>
            {
                say!("server", "{e} (not fatal: next)");
                continue;
            }
            Err(e) => return Err(e),
        };
        stats.connections += 1;
        let stopping = match echo_connection(conn.as_fd(), stop, idle) {
            Ok(ConnEnd::Eof(n)) => {
                stats.bytes += n;
                false
            }
            Ok(ConnEnd::Idle(n)) => {
                stats.bytes += n;
                say!("server", "{peer} quiet for {idle:?}: closing it");
                false
            }
            Ok(ConnEnd::Stopped(n)) => {
                stats.bytes += n;
                true
            }
            Err(e) => {
                stats.failed += 1;
                say!("server", "{peer}: {e} (that connection only)");
                false
            }
        };
        if let Err(e) = close_fd("server", conn) {
            say!("server", "{e}");
        }
        if stopping {
            return Ok(stats);
        }
    }
    // END SOLUTION
}

/// How an [`echo_exchange`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchoEnd {
    /// Every byte came back.
    Complete,
    /// The server closed its side (`read` returned 0) before echoing
    /// everything.
    ServerClosed,
    /// A call failed: `connect`, `send`, `read`, or the deadline passed
    /// (reported as `ETIMEDOUT`). The error names the call.
    Failed(Error),
}

/// What came back from an echo server, and how the exchange ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoReply {
    /// The bytes the server sent back, in order: all of `data` when
    /// `end` is `Complete`, a prefix of it otherwise.
    pub echoed: Vec<u8>,
    /// How it ended.
    pub end: EchoEnd,
}

/// The most one [`echo_exchange`] step sends before reading the echo back.
pub const ECHO_CHUNK: usize = 4096;

/// An echo client that copes with a server that closes or resets mid-stream.
///
/// Connect to `addr` ([`super::connect_to`]), then for each chunk of at most
/// [`ECHO_CHUNK`] bytes of `data`:
/// 1. send the chunk with `send(2)` and `MsgFlags::MSG_NOSIGNAL` (a peer that
///    has reset gives `ECONNRESET`, then `EPIPE`, never a `SIGPIPE`),
///    looping over short sends;
/// 2. read until that chunk's bytes are all back, waiting before each read
///    with `kit::wait::wait_readable(fd, time left)` so the whole exchange
///    ends by `timeout`.
///
/// Sending a chunk and reading its echo before the next keeps both sides'
/// buffers from filling up (if you sent everything first, a big `data`
/// would deadlock: the server blocks writing echoes you are not reading).
///
/// Never panic and never lose what you have: a read returning 0 before the
/// end → `EchoEnd::ServerClosed`; any failed call (including the wait
/// running out) → `EchoEnd::Failed(error)`; both with the bytes echoed so
/// far. When everything is back, close the socket and return `Complete`.
pub fn echo_exchange(addr: &SockaddrStorage, data: &[u8], timeout: Duration) -> EchoReply {
    let deadline = Instant::now() + timeout;
    let mut echoed: Vec<u8> = Vec::with_capacity(data.len());
    // BEGIN SOLUTION
    /// Ok(true): all echoed; Ok(false): the server closed early.
    fn exchange(
        addr: &SockaddrStorage,
        data: &[u8],
        deadline: Instant,
        echoed: &mut Vec<u8>,
    ) -> Result<bool> {
        let fd = connect_to("client", addr)?;
        let raw = fd.as_raw_fd();
        let mut buf = [0u8; ECHO_CHUNK];
        for chunk in data.chunks(ECHO_CHUNK) {
            let mut sent = 0;
            while sent < chunk.len() {
                match socket::send(raw, &chunk[sent..], MsgFlags::MSG_NOSIGNAL) {
                    Ok(n) => sent += n,
                    Err(Errno::EINTR) => continue,
                    Err(errno) => {
                        let left = chunk.len() - sent;
                        let call = format!("send({raw}, {left} bytes, MSG_NOSIGNAL)");
                        return Err(Error::sys(call, errno));
                    }
                }
            }
            let mut back = 0;
            while back < chunk.len() {
                wait::wait_readable(&fd, deadline.saturating_duration_since(Instant::now()))?;
                match unistd::read(&fd, &mut buf[..chunk.len() - back]) {
                    Ok(0) => return Ok(false),
                    Ok(n) => {
                        echoed.extend_from_slice(&buf[..n]);
                        back += n;
                    }
                    Err(Errno::EINTR) => continue,
                    Err(errno) => return Err(Error::sys(format!("read({raw})"), errno)),
                }
            }
        }
        close_fd("client", fd)?;
        Ok(true)
    }
    let end = match exchange(addr, data, deadline, &mut echoed) {
        Ok(true) => EchoEnd::Complete,
        Ok(false) => EchoEnd::ServerClosed,
        Err(e) => EchoEnd::Failed(e),
    };
    EchoReply { echoed, end }
    // END SOLUTION
}

/// The `server` subcommand's `listen` backlog: room for clients to wait
/// their turn while the iterative server serves someone else (chapter 5
/// looks at what happens when the queue is full).
pub const SERVER_BACKLOG: i32 = 128;

/// The `server` subcommand: listen on `addr`, print `listening on IP:PORT`,
/// serve echo with [`serve_echo`] until `stop` (Ctrl-C) is readable, then
/// print one summary line (`stopped: ...`), even when narration is off.
pub fn run_server(addr: &SockaddrStorage, stop: BorrowedFd<'_>, idle: Duration) -> Result<()> {
    // The first line of output must be `listening on`: set up quietly.
    let was_quiet = crate::kit::narrate::is_quiet();
    crate::kit::narrate::set_quiet(true);
    let listening = super::listen_on("server", addr, SERVER_BACKLOG);
    crate::kit::narrate::set_quiet(was_quiet);
    let (listener, bound) = listening.map_err(with_hint)?;
    println!("listening on {bound}");
    let port = crate::kit::addr::port(&bound).unwrap_or(0);
    crate::kit::narrate::note(format!(
        "socket → bind → listen done (fd {}); one client at a time. Try: nc 127.0.0.1 {port}",
        listener.as_raw_fd()
    ));
    crate::kit::narrate::note("Ctrl-C stops the server");
    let stats = serve_echo(&listener, stop, idle)?;
    close_fd("server", listener)?;
    println!(
        "# stopped: connections {}, bytes echoed {}, ended in an error {}",
        stats.connections, stats.bytes, stats.failed
    );
    Ok(())
}

/// Add a pointer to chapter 3 to an `EADDRINUSE`.
pub fn with_hint(e: Error) -> Error {
    if e.errno() == Some(Errno::EADDRINUSE) {
        Error::msg(format!(
            "{e}\n  another socket holds that port (a running server, or a recent \
             connection in TIME_WAIT: chapter 3's SO_REUSEADDR, which must be set \
             by the old server as well as the new); try --addr 127.0.0.1:0"
        ))
    } else {
        e
    }
}

/// The `client` subcommand: connect to `addr`, copy stdin to the socket and
/// the socket to stdout. When stdin ends, `shutdown(SHUT_WR)` tells the
/// server we are done sending, and we read on until the server closes.
/// Narration goes to stderr so stdout carries only what the server sent.
pub fn run_client(addr: &SockaddrStorage) -> Result<()> {
    crate::kit::narrate::set_quiet(true);
    let fd = connect_to("client", addr)?;
    let local = crate::kit::net::local_addr(&fd)?;
    tell(format!(
        "# connected {local} -> {addr}; type lines, Ctrl-D ends input"
    ));
    let sender = fd
        .try_clone()
        .map_err(|e| Error::msg(format!("dup: {e}")))?;
    // A second thread copies stdin to the socket so that this one can print
    // what comes back while you type (chapter 4 does both in one thread).
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            if let Err(e) = copy_stdin_then_shutdown(sender) {
                tell(format!("error: {e}"));
            }
        })
        .map_err(|e| Error::msg(format!("spawn: {e}")))?;
    let mut buf = [0u8; 4096];
    let stdout = std::io::stdout();
    loop {
        let n = match unistd::read(&fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(Error::sys(format!("read({})", fd.as_raw_fd()), errno)),
        };
        crate::kit::io::writen(stdout.as_fd(), &buf[..n])?;
    }
    tell("# read = 0: the server closed the connection".into());
    close_fd("client", fd)
}

/// Copy stdin to `sock` until stdin ends, then half-close the socket.
fn copy_stdin_then_shutdown(sock: OwnedFd) -> Result<()> {
    let stdin = std::io::stdin();
    let mut buf = [0u8; 4096];
    loop {
        let n = match unistd::read(stdin.as_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(Error::sys("read(0)", errno)),
        };
        crate::kit::io::writen(&sock, &buf[..n])?;
    }
    let raw = sock.as_raw_fd();
    socket::shutdown(raw, Shutdown::Write).call(format!("shutdown({raw}, SHUT_WR)"))?;
    tell(format!(
        "# stdin ended: shutdown({raw}, SHUT_WR) = 0; reading what is left"
    ));
    Ok(())
}

/// One line to stderr in one `write(2)`, so it reads cleanly under strace
/// (`eprintln!` writes each formatted piece separately).
fn tell(mut line: String) {
    use std::io::Write;
    line.push('\n');
    let _ = std::io::stderr().write_all(line.as_bytes());
}
