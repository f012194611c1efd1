//! The chat server's state, shared by the select loop and the poll loop.
//!
//! Every complete line a client sends goes to every other client, prefixed
//! with the sender's address: `127.0.0.1:40312: hello`. The loops in
//! [`super::loops`] only wait; everything a connection needs lives here:
//!
//! - an **input buffer** per client ([`super::take_lines`]), so a client
//!   that sends half a line and stalls blocks nobody;
//! - a **bounded output buffer** per client, so a client that never reads
//!   blocks nobody: when its buffer would pass [`Config::out_limit`] it is
//!   disconnected, with a log line that says so (assignment 5:
//!   `Client::send`, `Client::flush`, [`Client::wants_write`]);
//! - every socket **nonblocking**, so no `read`, `write` or `accept` can
//!   stop the one thread that serves everyone.
//!
//! A client's trouble (a reset, a line too long, a full buffer) drops that
//! client only and is logged; only a failure of the listening socket itself
//! ends the server.

use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc::Sender;

use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags, SockFlag, sockopt};

use super::frame::take_lines;
use crate::kit::accept::{self, AcceptError};
use crate::kit::error::errno_text;
use crate::kit::{Error, Result, net};
use crate::say;

/// The longest line a client may send, not counting its `\n`.
pub const MAX_LINE: usize = 4096;
/// How many bytes may wait for one client before it is disconnected.
pub const OUT_LIMIT: usize = 64 * 1024;
/// At most this many `accept`s each time the listener is readable, so a
/// storm of new connections cannot starve the clients already connected.
const ACCEPT_BURST: usize = 64;
/// One `read` per readable client per round takes at most this much.
const READ_CHUNK: usize = 16 * 1024;

/// How the server treats its clients.
#[derive(Debug, Clone)]
pub struct Config {
    /// The longest line accepted, without its `\n` ([`MAX_LINE`]).
    pub max_line: usize,
    /// Bytes that may wait for one client ([`OUT_LIMIT`]).
    pub out_limit: usize,
    /// Where to send an [`Event`] for each join, refusal and departure, if
    /// anywhere (tests and the demo wait on these instead of sleeping).
    pub events: Option<Sender<Event>>,
    /// Echo mode (`server --echo`, for the chapter 7 benchmark): every byte
    /// a client sends goes back to that client only, unframed. Same loops,
    /// same buffers; only what happens to the bytes read differs.
    pub echo: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_line: MAX_LINE,
            out_limit: OUT_LIMIT,
            events: None,
            echo: false,
        }
    }
}

/// Something that happened to a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A client was accepted on `fd`.
    Joined { fd: RawFd, peer: String },
    /// A connection was accepted on an fd the loop cannot watch
    /// (`fd >= limit`, the select loop's `FD_SETSIZE`) and closed at once.
    Refused {
        fd: RawFd,
        peer: String,
        limit: usize,
    },
    /// A client is gone, and why.
    Left { fd: RawFd, peer: String, why: Why },
    /// `accept` failed for lack of fds; the listener is ignored until a
    /// client leaves.
    AcceptPaused { errno: Errno },
}

/// Why a client left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// It closed its side (read returned 0) and everything queued for it
    /// was sent.
    Eof,
    /// A `recv` or `send` on it failed (ECONNRESET, EPIPE, ETIMEDOUT…).
    Error { call: &'static str, errno: Errno },
    /// It sent a line longer than [`Config::max_line`].
    LineTooLong { max_line: usize },
    /// It did not read: its output buffer would have passed
    /// [`Config::out_limit`].
    OutputFull { queued: usize, limit: usize },
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Eof => f.write_str("closed by the peer (EOF)"),
            Why::Error { call, errno } => write!(f, "{call}: {}", errno_text(*errno)),
            Why::LineTooLong { max_line } => {
                write!(f, "sent a line longer than {max_line} bytes")
            }
            Why::OutputFull { queued, limit } => write!(
                f,
                "not reading: {queued} bytes queued, the limit is {limit}, output buffer full"
            ),
        }
    }
}

/// Counters a server returns when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections accepted and closed at once because the loop could not
    /// watch their fd (`FD_SETSIZE`).
    pub refused: u64,
    /// Complete lines received (and broadcast).
    pub lines: u64,
    /// Clients disconnected for misbehaving (reset, long line, not reading).
    pub dropped: u64,
    /// The most clients connected at once.
    pub peak: usize,
}

/// One connected client: its socket and its two buffers.
#[derive(Debug)]
pub struct Client {
    fd: OwnedFd,
    peer: String,
    /// Bytes of the line it has not finished yet.
    input: Vec<u8>,
    /// Bytes queued for it that the kernel has not taken yet.
    output: Vec<u8>,
    /// It sent EOF: read no more, send what is queued, then close.
    closing: bool,
    /// Echo mode: hold reads while an echo waits to go back.
    echo: bool,
}

impl Client {
    /// The client's socket, to put in an fd set or a `pollfd`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The socket's fd number.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The peer's address, `IP:PORT`.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Should the loop watch it for reading? (Not after its EOF.)
    pub fn wants_read(&self) -> bool {
        let echo_waiting = self.echo && !self.output.is_empty();
        !self.closing && !echo_waiting
    }

    // ANCHOR: ch04_wants_write
    /// **Assignment 5 (part 3 of 3): writable-readiness.** Should the loop
    /// watch this client for writing (select's write set, `POLLOUT`)?
    ///
    /// Only while output waits in its buffer. A connected socket whose send
    /// buffer has room is writable nearly all the time, so a loop that
    /// always asks "writable?" gets "yes" at once, every round, and spins
    /// at 100 % CPU while nothing happens. Asked only while `output` holds
    /// bytes, the loop sleeps until the kernel has room for them.
    pub fn wants_write(&self) -> bool {
        // BEGIN SOLUTION
        !self.output.is_empty()
        // END SOLUTION
    }
    // ANCHOR_END: ch04_wants_write

    /// Bytes waiting in its output buffer.
    pub fn queued(&self) -> usize {
        self.output.len()
    }

    /// One `recv`: the bytes it read (possibly none), `None` at EOF.
    fn read_chunk(&mut self) -> std::result::Result<Option<Vec<u8>>, Why> {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            match socket::recv(self.raw_fd(), &mut chunk, MsgFlags::empty()) {
                Ok(0) => return Ok(None),
                Ok(n) => return Ok(Some(chunk[..n].to_vec())),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Ok(Some(Vec::new())),
                Err(errno) => {
                    return Err(Why::Error {
                        call: "recv",
                        errno,
                    });
                }
            }
        }
    }

    /// One `recv`: the complete lines it finished, `None` at EOF.
    fn read_lines(&mut self, max_line: usize) -> std::result::Result<Option<Vec<Vec<u8>>>, Why> {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            match socket::recv(self.raw_fd(), &mut chunk, MsgFlags::empty()) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    return take_lines(&mut self.input, &chunk[..n], max_line)
                        .map(Some)
                        .map_err(|e| Why::LineTooLong {
                            max_line: e.max_line,
                        });
                }
                Err(Errno::EINTR) => continue,
                // select/poll said readable, but a readiness report is a
                // hint, not a promise: try again next round.
                Err(Errno::EAGAIN) => return Ok(Some(Vec::new())),
                Err(errno) => {
                    return Err(Why::Error {
                        call: "recv",
                        errno,
                    });
                }
            }
        }
    }

    // ANCHOR: ch04_send
    /// **Assignment 5 (part 1 of 3): a bounded output buffer per client.**
    ///
    /// The server has a message for this client. It must never wait for the
    /// client to read: one thread serves everyone, and a client that does
    /// not read (or reads slowly) would stall them all. So:
    ///
    /// 1. If nothing is queued yet (`self.output` is empty), hand the kernel
    ///    what it takes now: `Client::write_some` (given) is `send(2)`
    ///    with `MSG_DONTWAIT | MSG_NOSIGNAL`, and returns how many bytes
    ///    the socket's send buffer took (0 when it is full). If something
    ///    is queued already, send nothing now: these bytes go *after* the
    ///    queued ones, or the client would get the lines out of order.
    /// 2. What is left goes at the end of `self.output`; the loop will send
    ///    it when the socket is writable (`Client::flush`,
    ///    [`Client::wants_write`]).
    /// 3. Bounded memory: if the queue would then hold more than `limit`
    ///    bytes, the client is not reading; return
    ///    `Err(Why::OutputFull { queued, limit })` with `queued` the size
    ///    the queue would have had (the caller disconnects it). A
    ///    [`Why::Error`] from `write_some` is returned as it is.
    ///
    /// Never loop until everything is sent: with a nonblocking socket that
    /// is a busy wait, and it stalls everyone exactly as a blocking `send`
    /// would. Man pages: [send(2)](https://man7.org/linux/man-pages/man2/send.2.html)
    /// (`MSG_DONTWAIT`, `EAGAIN`), [poll(2)](https://man7.org/linux/man-pages/man2/poll.2.html)
    /// (`POLLOUT`); UNP 16.2 builds the same buffers for `str_cli`.
    fn send(&mut self, msg: &[u8], limit: usize) -> std::result::Result<(), Why> {
        // BEGIN SOLUTION
        let mut rest = msg;
        if self.output.is_empty() {
            let n = self.write_some(msg)?;
            rest = &msg[n..];
        }
        if rest.is_empty() {
            return Ok(());
        }
        let queued = self.output.len() + rest.len();
        if queued > limit {
            return Err(Why::OutputFull { queued, limit });
        }
        self.output.extend_from_slice(rest);
        Ok(())
        // END SOLUTION
    }
    // ANCHOR_END: ch04_send

    // ANCHOR: ch04_flush
    /// **Assignment 5 (part 2 of 3): drain the buffer when writable.** The
    /// loop saw this client's socket writable while output waited: send as
    /// much of `self.output` as the kernel takes now (`Client::write_some`)
    /// and remove exactly those bytes from the front of the buffer; the rest
    /// waits for the next writable report. Errors from `write_some` are
    /// returned as they are.
    fn flush(&mut self) -> std::result::Result<(), Why> {
        // BEGIN SOLUTION
        let sent = self.write_some(&self.output)?;
        self.output.drain(..sent);
        Ok(())
        // END SOLUTION
    }
    // ANCHOR_END: ch04_flush

    /// `send(2)` without blocking: how many bytes the kernel took (0 when
    /// its buffer is full). `MSG_NOSIGNAL`: a reset peer is an `EPIPE`
    /// error, never a `SIGPIPE`.
    fn write_some(&self, buf: &[u8]) -> std::result::Result<usize, Why> {
        let mut done = 0;
        while done < buf.len() {
            match socket::send(
                self.raw_fd(),
                &buf[done..],
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(n) => done += n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => break,
                Err(errno) => {
                    return Err(Why::Error {
                        call: "send",
                        errno,
                    });
                }
            }
        }
        Ok(done)
    }
}

/// The whole server: the listening socket and every client, by fd.
#[derive(Debug)]
pub struct Chat {
    listener: OwnedFd,
    clients: BTreeMap<RawFd, Client>,
    config: Config,
    accepting: bool,
    stats: Stats,
    who: &'static str,
    /// Hold departing clients in `departed` instead of closing them at once
    /// ([`Chat::park_departures`]).
    park: bool,
    /// Clients that left, not closed yet, and why.
    departed: Vec<(Client, Why)>,
}

impl Chat {
    /// Take over a listening socket (made nonblocking here). `who` names the
    /// loop in the narration: `"select"` or `"poll"`.
    pub fn new(listener: OwnedFd, config: Config, who: &'static str) -> Result<Chat> {
        net::set_nonblocking(&listener, true)?;
        Ok(Chat {
            listener,
            clients: BTreeMap::new(),
            config,
            accepting: true,
            stats: Stats::default(),
            who,
            park: false,
            departed: Vec::new(),
        })
    }

    /// From now on, a client that leaves is not closed at once: it waits,
    /// off the client list, until the loop calls [`Chat::close_departed`].
    /// For a loop that must do something with an fd *before* it is closed
    /// (epoll: `EPOLL_CTL_DEL`), and whose bookkeeping by fd number must
    /// not meet a reused number before it has heard of the departure. The
    /// select and poll loops never call this: their clients close at once.
    pub fn park_departures(&mut self) {
        self.park = true;
    }

    /// Close every client that left since the last call (with
    /// [`Chat::park_departures`] on): `before_close` gets each one's fd
    /// while it is still open, then it is closed, logged, and its
    /// [`Event::Left`] sent. Until then its fd number cannot be reused.
    pub fn close_departed(&mut self, mut before_close: impl FnMut(BorrowedFd<'_>)) {
        for (client, why) in std::mem::take(&mut self.departed) {
            before_close(client.fd());
            self.close(client, why);
        }
    }

    /// The listening socket.
    pub fn listener(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Should the loop watch the listener? (Not while `accept` is paused
    /// for lack of fds: the listener would stay readable and the loop spin.)
    pub fn accepting(&self) -> bool {
        self.accepting
    }

    /// The connected clients, in fd order.
    pub fn clients(&self) -> impl Iterator<Item = &Client> {
        self.clients.values()
    }

    /// How many clients are connected.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Is nobody connected?
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Close every connection and return the counters.
    pub fn finish(self) -> Stats {
        say!(
            self.who,
            "stopping: closing the listener and {} client connections",
            self.clients.len() + self.departed.len()
        );
        self.stats
    }

    /// The listener is readable: accept the waiting connections (up to a
    /// burst), each nonblocking. A connection whose fd is `fd_limit` or more
    /// is refused: told so in one line, closed, logged. Only a failure of the
    /// listener itself is an error.
    pub fn accept_ready(&mut self, fd_limit: Option<usize>) -> Result<()> {
        let lfd = self.listener.as_raw_fd();
        for _ in 0..ACCEPT_BURST {
            let raw = match socket::accept4(lfd, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC) {
                Ok(raw) => raw,
                Err(Errno::EAGAIN) => return Ok(()),
                Err(errno) => match accept::classify(errno) {
                    AcceptError::Again => continue,
                    // The client gave up (reset) between the handshake and
                    // us, or another error of that one connection.
                    AcceptError::Dropped => {
                        eprintln!(
                            "[{}] accept4({lfd}) = {}: that connection is dropped; the server goes on",
                            self.who,
                            errno_text(errno)
                        );
                        continue;
                    }
                    AcceptError::OutOfFds => {
                        self.accepting = false;
                        eprintln!(
                            "[{}] accept4({lfd}) = {}: out of fds; not accepting until a client leaves",
                            self.who,
                            errno_text(errno)
                        );
                        self.emit(Event::AcceptPaused { errno });
                        return Ok(());
                    }
                    AcceptError::Fatal => {
                        return Err(Error::sys(format!("accept4({lfd})"), errno));
                    }
                },
            };
            // SAFETY: accept4 just returned this fd; nothing else owns it,
            // and the OwnedFd becomes its only owner, closing it once.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let peer = match net::peer_addr(&fd) {
                Ok(peer) => peer.to_string(),
                Err(e) => {
                    // Reset already: nothing to serve.
                    say!(self.who, "accept4({lfd}) = {raw}, but {e}; closed");
                    continue;
                }
            };
            if let Some(limit) = fd_limit.filter(|&limit| raw as usize >= limit) {
                self.refuse(fd, peer, limit);
                continue;
            }
            self.join(lfd, fd, peer);
        }
        Ok(())
    }

    fn refuse(&mut self, fd: OwnedFd, peer: String, limit: usize) {
        let raw = fd.as_raw_fd();
        say!(
            self.who,
            "refused {peer}: accept gave fd {raw}, and select cannot watch fd >= FD_SETSIZE ({limit}); closed"
        );
        let note = format!(
            "* refused: this server uses select(2), which cannot watch fd {raw} (FD_SETSIZE is {limit})\n"
        );
        // Best effort: a fresh socket's buffer is empty, so this fits.
        let _ = socket::send(
            raw,
            note.as_bytes(),
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        );
        drop(fd);
        self.stats.refused += 1;
        self.emit(Event::Refused {
            fd: raw,
            peer,
            limit,
        });
    }

    fn join(&mut self, lfd: RawFd, fd: OwnedFd, peer: String) {
        let raw = fd.as_raw_fd();
        // Chat lines are small and should go out at once, not wait for
        // Nagle's algorithm to collect more (chapter 3, TCP_NODELAY).
        if let Err(errno) = socket::setsockopt(&fd, sockopt::TcpNoDelay, &true) {
            say!(
                self.who,
                "setsockopt({raw}, TCP_NODELAY) = {}: {peer} not served",
                errno_text(errno)
            );
            return;
        }
        let mut client = Client {
            fd,
            peer: peer.clone(),
            input: Vec::new(),
            output: Vec::new(),
            closing: false,
            echo: self.config.echo,
        };
        let online = self.clients.len() + 1;
        let welcome = format!("* welcome {peer}, {online} online\n");
        let greeting: &[u8] = if self.config.echo {
            b""
        } else {
            welcome.as_bytes()
        };
        if let Err(why) = client.send(greeting, self.config.out_limit) {
            say!(self.who, "{peer} on fd {raw} left at once: {why}");
            return;
        }
        say!(
            self.who,
            "accept4({lfd}) = {raw}: joined {peer} ({online} online)"
        );
        self.clients.insert(raw, client);
        self.stats.accepted += 1;
        self.stats.peak = self.stats.peak.max(self.clients.len());
        self.emit(Event::Joined { fd: raw, peer });
    }

    /// The loop saw client `fd` readable and/or writable. Read one chunk and
    /// broadcast the lines it completes; send what waits for it. Trouble
    /// with this client drops this client; it is never the server's error.
    pub fn client_ready(&mut self, fd: RawFd, readable: bool, writable: bool) {
        let max_line = self.config.max_line;
        let Some(client) = self.clients.get_mut(&fd) else {
            return; // dropped earlier in this round
        };
        if self.config.echo {
            // Read only when nothing waits to go back: a client that sends
            // without reading fills its own socket buffers, not our memory.
            if readable && client.wants_read() {
                match client.read_chunk() {
                    Ok(Some(bytes)) => {
                        if let Err(why) = client.send(&bytes, self.config.out_limit) {
                            self.remove(fd, why);
                            return;
                        }
                    }
                    Ok(None) => client.closing = true,
                    Err(why) => {
                        self.remove(fd, why);
                        return;
                    }
                }
            }
        } else if readable && client.wants_read() {
            match client.read_lines(max_line) {
                Ok(Some(lines)) => {
                    if !lines.is_empty() {
                        self.broadcast(fd, &lines);
                    }
                }
                Ok(None) => {
                    // EOF. An unfinished last line still goes out.
                    let rest = std::mem::take(&mut client.input);
                    client.closing = true;
                    if !rest.is_empty() {
                        let mut line = rest;
                        line.push(b'\n');
                        self.broadcast(fd, &[line]);
                    }
                }
                Err(why) => {
                    self.remove(fd, why);
                    return;
                }
            }
        }
        let Some(client) = self.clients.get_mut(&fd) else {
            return;
        };
        if writable
            && client.wants_write()
            && let Err(why) = client.flush()
        {
            self.remove(fd, why);
            return;
        }
        if client.closing && !client.wants_write() {
            self.remove(fd, Why::Eof);
        }
    }

    /// Send `lines` (all completed by one read) from client `from` to every
    /// other client, each prefixed with the sender's address: one `send`
    /// per recipient, not one per line. A client whose buffer overflows is
    /// dropped.
    fn broadcast(&mut self, from: RawFd, lines: &[Vec<u8>]) {
        let Some(sender) = self.clients.get(&from) else {
            return;
        };
        self.stats.lines += lines.len() as u64;
        let mut msg = Vec::new();
        for line in lines {
            msg.extend_from_slice(sender.peer.as_bytes());
            msg.extend_from_slice(b": ");
            msg.extend_from_slice(line);
        }
        let limit = self.config.out_limit;
        let mut gone = Vec::new();
        for (&fd, client) in self.clients.iter_mut() {
            if fd == from || client.closing {
                continue;
            }
            if let Err(why) = client.send(&msg, limit) {
                gone.push((fd, why));
            }
        }
        for (fd, why) in gone {
            self.remove(fd, why);
        }
    }

    /// Take client `fd` off the list; close it (dropping its `OwnedFd`)
    /// and log why, or, with [`Chat::park_departures`], leave that to
    /// [`Chat::close_departed`].
    fn remove(&mut self, fd: RawFd, why: Why) {
        let Some(client) = self.clients.remove(&fd) else {
            return;
        };
        if why != Why::Eof {
            self.stats.dropped += 1;
        }
        if self.park {
            self.departed.push((client, why));
        } else {
            self.close(client, why);
        }
    }

    fn close(&mut self, client: Client, why: Why) {
        let fd = client.raw_fd();
        let peer = client.peer.clone();
        drop(client); // close(fd)
        if why == Why::Eof {
            say!(self.who, "close({fd}): {peer} left: {why}");
        } else {
            say!(self.who, "close({fd}): dropped {peer}: {why}");
        }
        if !self.accepting {
            say!(self.who, "an fd is free again: watching the listener");
            self.accepting = true;
        }
        self.emit(Event::Left { fd, peer, why });
    }

    fn emit(&self, event: Event) {
        if let Some(events) = &self.config.events {
            let _ = events.send(event); // nobody listening is fine
        }
    }
}
