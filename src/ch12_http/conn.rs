//! One connection: bytes in, requests parsed, responses queued in order and
//! written out, and the close done right.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{Shutdown, shutdown};

use super::parse::{Limits, Parsed, Parser, Version};
use super::respond::{Response, respond};

/// How the server bounds a connection's time and memory.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory served (canonical).
    pub root: PathBuf,
    /// Parser bounds.
    pub limits: Limits,
    /// A request head must be complete this long after its first byte
    /// (nginx: `client_header_timeout`), or the connection is closed.
    pub header_timeout: Duration,
    /// An idle keep-alive connection is closed after this
    /// (nginx: `keepalive_timeout`).
    pub idle_timeout: Duration,
    /// A response that makes no progress this long is abandoned (the client
    /// does not read; nginx: `send_timeout`).
    pub send_timeout: Duration,
    /// After `shutdown(SHUT_WR)`, how long to drain the client's bytes
    /// before `close` (nginx: `lingering_timeout`).
    pub linger_timeout: Duration,
    /// Most responses queued (parsed, not yet sent) per connection; while
    /// full, the server stops reading from it.
    pub max_pipeline: usize,
    /// Most connections per loop; more are accepted and closed at once.
    pub max_conns: usize,
    /// Print one line per request to stdout.
    pub log: bool,
}

impl Config {
    /// Defaults for `root`.
    pub fn new(root: PathBuf) -> Config {
        Config {
            root,
            limits: Limits::default(),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(30),
            linger_timeout: Duration::from_secs(2),
            max_pipeline: 16,
            max_conns: 20_000,
            log: false,
        }
    }
}

/// What the loop does with a connection after [`Conn::advance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Keep it; wait for these readiness events.
    Wait {
        /// Wake on readable.
        read: bool,
        /// Wake on writable.
        write: bool,
    },
    /// Close it now.
    Close,
}

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket (nonblocking).
    pub fd: OwnedFd,
    /// The request parser.
    pub parser: Parser,
    /// Bytes read and not yet fed to the parser (the next pipelined
    /// requests, while the queue is full).
    pub unparsed: Vec<u8>,
    /// Responses in request order; the front one is being written.
    pub queue: VecDeque<Response>,
    /// No more requests will be read: after the queue is sent, close.
    pub closing: bool,
    /// The peer sent EOF.
    pub peer_done: bool,
    /// Set once `shutdown(SHUT_WR)` is done: drain until EOF or this time.
    pub linger_until: Option<Instant>,
    /// When the head being received started (its first byte).
    pub head_started: Option<Instant>,
    /// Last time anything was read or written.
    pub last_progress: Instant,
    /// Requests answered (queued) on this connection.
    pub requests: u64,
    /// Log lines, `METHOD TARGET STATUS (request N on fd F)`, when logging.
    pub log: Vec<String>,
    /// Set by [`Conn::read_some`]: the last read left the socket's receive
    /// queue empty (it came back short of the buffer, with EOF, `EAGAIN` or
    /// an error). The event loop is edge-triggered, so it learns here that
    /// it need not call [`Conn::advance`] again until the next event.
    pub drained: bool,
}

impl Conn {
    /// A fresh connection on an accepted, nonblocking socket.
    pub fn new(fd: OwnedFd, config: &Config, now: Instant) -> Conn {
        Conn {
            fd,
            parser: Parser::new(config.limits),
            unparsed: Vec::new(),
            queue: VecDeque::new(),
            closing: false,
            peer_done: false,
            linger_until: None,
            head_started: None,
            last_progress: now,
            requests: 0,
            log: Vec::new(),
            drained: false,
        }
    }

    /// Read what there is (one [`read(2)`](https://man7.org/linux/man-pages/man2/read.2.html)
    /// of up to `buf.len()` bytes); `Ok(0)` is EOF, `Err(EAGAIN)` nothing yet.
    ///
    /// Read the socket only through this: it sets [`Conn::drained`] when the
    /// read did not fill `buf`. TCP's `read` copies everything queued up to
    /// `buf.len()`, so a short read took all there was, and bytes that
    /// arrive during or after it raise a new edge for the loop.
    pub fn read_some(&mut self, buf: &mut [u8]) -> std::result::Result<usize, Errno> {
        let result = loop {
            match nix::unistd::read(&self.fd, buf) {
                Err(Errno::EINTR) => continue,
                other => break other,
            }
        };
        self.drained = !matches!(result, Ok(n) if n == buf.len());
        result
    }

    // ANCHOR: ch12_parse_queued
    /// Feed `unparsed` to the parser while the queue has room, queueing a
    /// response per request.
    ///
    /// **Assignment** (with [`Conn::advance`]). One read may hold several
    /// pipelined requests, or part of one: feed what is there, keep what the
    /// parser did not use for the next request, and queue each response
    /// *behind* the earlier ones (RFC 9112 §9.3.2: responses in request
    /// order). Track when a head started (`head_started`) for the header
    /// deadline. A request that does not keep the connection alive, or a
    /// rejected one (its error response says `Connection: close`), ends the
    /// reading: set `closing`.
    pub fn parse_queued(&mut self, config: &Config, now: Instant) {
        // BEGIN SOLUTION
        while !self.closing && !self.unparsed.is_empty() && self.queue.len() < config.max_pipeline {
            if self.head_started.is_none() {
                self.head_started = Some(now);
            }
            let (used, parsed) = self.parser.feed(&self.unparsed);
            self.unparsed.drain(..used);
            match parsed {
                Parsed::Incomplete => {
                    if self.parser.state == super::parse::State::Start
                        && self.parser.line.is_empty()
                    {
                        self.head_started = None;
                    }
                }
                Parsed::Done(request) => {
                    self.head_started = None;
                    let close = !request.keep_alive();
                    let mut response = respond(&config.root, &request, close);
                    if request.version == Version::Http10 && !close {
                        let at = response.head.len() - 2;
                        response.head.splice(at..at, *b"Connection: keep-alive\r\n");
                    }
                    if config.log {
                        self.log.push(format!(
                            "{} {} {} (request {} on fd {})",
                            request.method,
                            request.target,
                            response.status,
                            self.requests + 1,
                            self.fd.as_raw_fd()
                        ));
                    }
                    self.requests += 1;
                    self.queue.push_back(response);
                    self.closing = close;
                }
                Parsed::Rejected(why) => {
                    self.head_started = None;
                    if config.log {
                        self.log.push(format!("rejected {}", why.status()));
                    }
                    self.queue
                        .push_back(Response::error(why.status(), "", false, true));
                    self.closing = true;
                }
            }
        }
        // END SOLUTION
    }
    // ANCHOR_END: ch12_parse_queued

    // ANCHOR: ch12_advance
    /// Do everything that can be done now, after a readiness event or a
    /// timer tick, and say what to wait for next.
    ///
    /// **Assignment.** In this order:
    /// 1. If lingering (`linger_until` set): read and discard until EAGAIN;
    ///    EOF, an error, or `now` past `linger_until` is [`Next::Close`];
    ///    otherwise wait to read.
    /// 2. Unless `closing`, `peer_done` or the queue is full
    ///    (`max_pipeline`): read once into a buffer, append to `unparsed`
    ///    (EOF sets `peer_done`, EAGAIN is nothing, another error closes).
    ///    Read with [`Conn::read_some`]: the loop is edge-triggered and
    ///    learns from it whether the socket is drained.
    ///    Then parse what is there in order (`parse_queued`).
    /// 3. Write: the front response with [`Response::write_to`] until it is
    ///    all sent (pop it; in order, never skipping one) or the socket is
    ///    full. An error closes. Progress updates `last_progress`.
    ///    Parse again if the queue had been full.
    /// 4. Timers: a head started more than `header_timeout` ago (slowloris),
    ///    a queue not moving for `send_timeout`, or an idle connection
    ///    (nothing queued, no head started) past `idle_timeout`: close.
    /// 5. When the queue is empty and `closing` (or `peer_done`): if the
    ///    peer is done, close; else lingering close: `shutdown(SHUT_WR)`
    ///    (the client gets FIN after the last response), set `linger_until`
    ///    = now + `linger_timeout`, and wait to read. Closing at once
    ///    instead would answer unread client bytes with an RST that can
    ///    destroy the response in the client's receive queue.
    pub fn advance(&mut self, config: &Config, now: Instant) -> Next {
        // BEGIN SOLUTION
        // A head is usually far below 1 KiB (nginx's client_header_buffer_size
        // is 1k), and this buffer is zeroed on every call: 4 KiB, not more.
        let mut buf = [0u8; 4096];
        if let Some(until) = self.linger_until {
            loop {
                match self.read_some(&mut buf) {
                    Ok(0) => return Next::Close,
                    Ok(_) => {}
                    Err(Errno::EAGAIN) => break,
                    Err(_) => return Next::Close,
                }
            }
            if now >= until {
                return Next::Close;
            }
            return Next::Wait {
                read: true,
                write: false,
            };
        }
        if !self.closing && !self.peer_done && self.queue.len() < config.max_pipeline {
            match self.read_some(&mut buf) {
                Ok(0) => self.peer_done = true,
                Ok(n) => {
                    self.unparsed.extend_from_slice(&buf[..n]);
                    self.last_progress = now;
                }
                Err(Errno::EAGAIN) => {}
                Err(_) => return Next::Close,
            }
        }
        self.parse_queued(config, now);
        while let Some(front) = self.queue.front_mut() {
            let before = (front.head_sent, front.body_left());
            let done = match front.write_to(&self.fd) {
                Ok(done) => done,
                Err(_) => return Next::Close,
            };
            if (front.head_sent, front.body_left()) != before {
                self.last_progress = now;
            }
            if !done {
                break;
            }
            self.queue.pop_front();
            self.parse_queued(config, now);
        }
        if let Some(started) = self.head_started
            && now.duration_since(started) > config.header_timeout
        {
            return Next::Close;
        }
        let quiet = now.duration_since(self.last_progress);
        if !self.queue.is_empty() && quiet > config.send_timeout {
            return Next::Close;
        }
        if self.queue.is_empty() && self.head_started.is_none() && quiet > config.idle_timeout {
            return Next::Close;
        }
        if self.queue.is_empty() && (self.closing || self.peer_done) {
            if self.peer_done {
                return Next::Close;
            }
            if shutdown(self.fd.as_raw_fd(), Shutdown::Write).is_err() {
                return Next::Close;
            }
            self.linger_until = Some(now + config.linger_timeout);
            return Next::Wait {
                read: true,
                write: false,
            };
        }
        Next::Wait {
            read: !self.closing && !self.peer_done && self.queue.len() < config.max_pipeline,
            write: !self.queue.is_empty(),
        }
        // END SOLUTION
    }
    // ANCHOR_END: ch12_advance

    /// When this connection's next timer is due, by the rules of
    /// [`Conn::advance`] step 4 and the linger deadline: the loop wakes it
    /// then (if nothing else does first) so that `advance` can close it.
    /// Only a hint: `advance` decides.
    pub fn deadline(&self, config: &Config) -> Instant {
        if let Some(until) = self.linger_until {
            return until;
        }
        let mut due = if self.queue.is_empty() {
            self.last_progress + config.idle_timeout
        } else {
            self.last_progress + config.send_timeout
        };
        if let Some(started) = self.head_started {
            due = due.min(started + config.header_timeout);
        }
        due
    }

    /// The socket, for the event loop.
    pub fn socket(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
