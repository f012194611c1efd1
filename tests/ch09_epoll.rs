//! Graded tests for chapter 9: the level- and edge-triggered epoll echo
//! servers, the nonblocking connect with a deadline, EMFILE survival,
//! idle timeouts, and chapter 4's chat server on epoll. The clients are
//! independent of the chapter's code (`std::net`, raw `libc`), and CPU use
//! is read from `/proc` (`schedstat`: the time a thread was running or
//! waiting to run, which tells a busy loop from a sleeping server however
//! loaded the machine is).
//!
//! The chat tests (assignment 6) run chapter 4's own chat tests
//! (`support/chat.rs`) on [`epoll_loop`](sockbook::ch09_epoll::epoll_loop).
//! They depend on chapter 4's chat assignments being solved too: the loop
//! only waits, chapter 4's `Chat` does the rest.

#[macro_use]
mod support;

/// What the shared chat harness (`support/chat.rs`) runs here: chapter 4's
/// chat types and this chapter's epoll loop.
mod chat_server {
    use std::io::PipeReader;
    use std::os::fd::OwnedFd;

    pub use sockbook::ch04_select::{Config, Event, Stats, Why};

    /// The loop of this chapter.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        Epoll,
    }

    /// Serve chat with `kind` until `stop` is readable.
    pub fn serve(
        kind: Kind,
        listener: OwnedFd,
        stop: PipeReader,
        config: Config,
    ) -> sockbook::kit::Result<Stats> {
        match kind {
            Kind::Epoll => sockbook::ch09_epoll::serve_epoll(listener, stop, config),
        }
    }
}

#[path = "support/chat.rs"]
mod chat;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage};
use sockbook::ch09_epoll::conn::OUT_LIMIT;
use sockbook::ch09_epoll::{Config, Stats, connect_within, serve_et, serve_idle, serve_lt};
use sockbook::kit::{narrate, net, tcp};
use support::server_process::{ServerProcess, eventually};
use support::{Background, DEADLINE, open_sockets_on_port, std_addr};

const BIN: &str = env!("CARGO_BIN_EXE_ch09_epoll");

// ---------------------------------------------------------------------------
// A server under test on a background thread, stopped by closing a pipe.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Level,
    Edge,
    Idle(Duration),
}

struct Server {
    kind: Kind,
    addr: SocketAddr,
    port: u16,
    /// The server thread's id, for `/proc/self/task/TID/schedstat`.
    tid: i32,
    stop: Option<std::io::PipeWriter>,
    thread: Background<sockbook::kit::Result<Stats>>,
}

impl Server {
    fn start(kind: Kind) -> Server {
        narrate::set_quiet(true);
        let (listener, addr) = net::tcp_listen("server", &support::loopback_any(), 1024).unwrap();
        Server::start_on(kind, listener, addr)
    }

    /// `start` with small socket buffers on the listener, which accepted
    /// sockets inherit (and which stops the kernel growing them): the
    /// server's sends hit EAGAIN after a few KiB, so the test sees what it
    /// does with output the kernel will not take yet.
    fn start_small_sndbuf(kind: Kind) -> Server {
        narrate::set_quiet(true);
        let (listener, addr) = net::tcp_listen("server", &support::loopback_any(), 1024).unwrap();
        socket::setsockopt(&listener, socket::sockopt::SndBuf, &8192).unwrap();
        socket::setsockopt(&listener, socket::sockopt::RcvBuf, &8192).unwrap();
        Server::start_on(kind, listener, addr)
    }

    /// Serve on a listener the test made (and may have queued clients on).
    fn start_on(kind: Kind, listener: OwnedFd, addr: SockaddrStorage) -> Server {
        net::set_nonblocking(&listener, true).unwrap();
        let port = net::local_port(&listener).unwrap();
        let (stop_r, stop_w) = std::io::pipe().unwrap();
        let (tid_tx, tid_rx) = mpsc::channel();
        let thread = Background::spawn("server", move || {
            // SAFETY: gettid takes no arguments.
            let _ = tid_tx.send(unsafe { libc::gettid() });
            match kind {
                Kind::Level => serve_lt(listener.as_fd(), stop_r.as_fd(), &Config::default()),
                Kind::Edge => serve_et(listener.as_fd(), stop_r.as_fd()),
                Kind::Idle(t) => serve_idle(listener.as_fd(), stop_r.as_fd(), t),
            }
        });
        let tid = tid_rx
            .recv_timeout(DEADLINE)
            .expect("server thread started");
        Server {
            kind,
            addr: std_addr(&addr),
            port,
            tid,
            stop: Some(stop_w),
            thread,
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.addr, DEADLINE)
            .unwrap_or_else(|e| panic!("{:?} server: connect to {}: {e}", self.kind, self.addr));
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.set_write_timeout(Some(DEADLINE)).unwrap();
        s
    }

    /// The share of `window` the server thread was running or runnable.
    fn busy_share(&self, window: Duration) -> f64 {
        let path = format!("/proc/self/task/{}/schedstat", self.tid);
        let read = || -> u64 {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {path}: {e} (did the server thread exit?)"));
            text.split_whitespace()
                .take(2)
                .map(|w| w.parse::<u64>().unwrap())
                .sum()
        };
        let (r0, t0) = (read(), Instant::now());
        std::thread::sleep(window); // a measuring window, not synchronisation
        let (r1, t1) = (read(), Instant::now());
        (r1 - r0) as f64 / (t1 - t0).as_nanos() as f64
    }

    /// Wait until the server holds no connection (only its listener).
    fn expect_only_listener(&self, after: &str) {
        let ok = eventually(DEADLINE, || open_sockets_on_port(self.port) <= 1);
        assert!(
            ok,
            "{:?} server: {after}, it still holds {} sockets on port {} (the listener is 1): \
             connections whose peer closed are never closed (EOF ignored?)",
            self.kind,
            open_sockets_on_port(self.port),
            self.port
        );
    }

    fn stop(mut self) -> Stats {
        drop(self.stop.take());
        let kind = self.kind;
        let stats = self
            .thread
            .join_within(DEADLINE, "server after its stop fd became readable")
            .unwrap_or_else(|e| panic!("{kind:?} server returned an error: {e}"));
        assert_eq!(
            open_sockets_on_port(self.port),
            0,
            "{kind:?} server returned but left sockets open on its port"
        );
        stats
    }
}

/// A recognisable byte pattern, different per stream.
fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7 + seed * 13 + i / 251) % 256) as u8)
        .collect()
}

/// Where two byte strings first differ, for a failure message.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!("first difference at byte {i}"),
        None => format!("lengths {} and {}", a.len(), b.len()),
    }
}

/// Send `data` on one thread while reading the echo on this one; shut
/// down the writing side at the end and read until EOF.
fn echo_concurrently(mut s: TcpStream, data: Vec<u8>) -> Vec<u8> {
    let mut w = s.try_clone().unwrap();
    let writer = Background::spawn("writer", move || {
        let r = w.write_all(&data);
        let _ = w.shutdown(std::net::Shutdown::Write);
        r.map_err(|e| e.to_string())
    });
    let mut got = Vec::new();
    let r = s.read_to_end(&mut got);
    if let Err(e) = r {
        panic!(
            "reading the echo failed after {} bytes: {e} (a server that stopped sending?)",
            got.len()
        );
    }
    writer
        .join_within(DEADLINE, "writer")
        .unwrap_or_else(|e| panic!("writing to the server failed: {e}"));
    got
}

/// A client that writes `total` bytes without reading until its writes
/// stall (or all are written), then reads: the server's sends must hit
/// EAGAIN and wait for EPOLLOUT. A small receive buffer (set before
/// connect) makes the stall come early.
fn late_reader(server: &Server, total: usize) {
    let s =
        support::client_with_buffers(&SockaddrStorage::from(server.addr), Some(4096), Some(8192));
    let data = pattern(99, total);
    let expect = data.clone();
    // The writer uses MSG_DONTWAIT on each send: O_NONBLOCK would be
    // shared with the reader's dup of the same socket.
    let w = s.try_clone().unwrap();
    let (stalled_tx, stalled) = mpsc::channel();
    let writer = Background::spawn("late writer", move || -> Result<usize, String> {
        let mut sent = 0;
        let mut told = false;
        let deadline = Instant::now() + Duration::from_secs(20);
        let flags = socket::MsgFlags::MSG_DONTWAIT | socket::MsgFlags::MSG_NOSIGNAL;
        while sent < data.len() {
            match socket::send(w.as_raw_fd(), &data[sent..], flags) {
                Ok(n) => sent += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    if !told {
                        let _ = stalled_tx.send(sent);
                        told = true;
                    }
                    if Instant::now() > deadline {
                        return Err(format!("stuck after writing {sent} bytes"));
                    }
                    let mut p = [libc::pollfd {
                        fd: w.as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    }];
                    // SAFETY: one valid pollfd, length 1.
                    unsafe { libc::poll(p.as_mut_ptr(), 1, 100) };
                }
                Err(e) => return Err(format!("send after {sent} bytes: {e}")),
            }
        }
        let _ = w.shutdown(std::net::Shutdown::Write);
        if !told {
            let _ = stalled_tx.send(sent);
        }
        Ok(sent)
    });
    // Read nothing until the writer stalls: by then the server holds
    // output it cannot send.
    let when = stalled
        .recv_timeout(DEADLINE)
        .expect("the writer neither stalled nor finished");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut r = &s;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "{:?} server: the client wrote without reading until its writes stalled (after {when} bytes), \
                 then read {} of {total} bytes of echo and waited {DEADLINE:?} for more: {e}. \
                 Output queued while the socket was full must be sent when it becomes writable \
                 (EPOLLOUT while output is pending)",
                server.kind,
                got.len()
            ),
        }
    }
    writer
        .join_within(Duration::from_secs(25), "late writer")
        .unwrap_or_else(|e| panic!("{:?} server: {e}", server.kind));
    assert!(
        got == expect,
        "{:?} server: the late reader sent {total} bytes and got {} back, not the same ({})",
        server.kind,
        got.len(),
        first_difference(&got, &expect)
    );
}

/// A client that sends `total` bytes and its FIN *before* reading a byte.
/// The server reads everything (it fits in its output buffer) but can send
/// only a small part into the full socket, so it sees EOF with most of the
/// echo still queued: that echo must still arrive, then the server's FIN.
fn half_close_then_read(server: &Server, total: usize) {
    assert!(
        total < OUT_LIMIT,
        "the test's burst must fit in the server's output buffer"
    );
    // Small buffers on both sides: the write below returns only once the
    // server has read nearly all of it, and the server can push little of
    // its echo into the client before the client reads.
    let mut s =
        support::client_with_buffers(&SockaddrStorage::from(server.addr), Some(4096), Some(4096));
    let data = pattern(41, total);
    if let Err(e) = s.write_all(&data) {
        panic!(
            "{:?} server: the client wrote {total} bytes without reading (they fit in the server's \
             {OUT_LIMIT}-byte output buffer) and its write stalled for {DEADLINE:?}: {e}. \
             The server must keep reading while its output buffer has room",
            server.kind
        );
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    // FIN_WAIT2: the server's kernel has acknowledged every byte and the
    // FIN, so the server's next wake-up reads EOF while it still holds most
    // of the echo. Only then start reading.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let state = tcp::tcp_info(&s).unwrap().state();
        if tcp::state_name(state) == "FIN_WAIT2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{:?} server: the client sent {total} bytes and shutdown(SHUT_WR); its socket stayed in {} \
             for {DEADLINE:?} (TCP_INFO), not FIN_WAIT2: the server's kernel never acknowledged the FIN",
            server.kind,
            tcp::state_name(state)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "{:?} server: the client sent {total} bytes, then shutdown(SHUT_WR), then read: \
                 {} bytes of echo, then no more and no EOF within {DEADLINE:?} ({e}). \
                 After EOF the server must send what it still holds, then close",
                server.kind,
                got.len()
            ),
        }
    }
    assert!(
        got == data,
        "{:?} server: the client sent {total} bytes and its FIN before reading anything; it got {} \
         bytes back and then EOF ({}). The server saw EOF while most of the echo was still queued \
         (the client's 4 KiB receive buffer holds little): it closed without sending it. \
         EOF means \"no more input\", not \"throw the output away\": close once the output is empty",
        server.kind,
        got.len(),
        first_difference(&got, &data)
    );
    server.expect_only_listener("after the half-closed client got its echo and closed");
}

/// An idle connection: one round trip, then nothing. The server thread
/// must sleep, not spin.
fn idle_costs_nothing(kind: Kind) {
    let server = Server::start(kind);
    let mut c = server.connect();
    c.write_all(b"ping\n").unwrap();
    let mut buf = [0u8; 5];
    c.read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("{kind:?} server: no echo of ping: {e}"));
    let share = server.busy_share(Duration::from_millis(600));
    assert!(
        share < 0.5,
        "{kind:?} server: with one idle connection, its thread was running or runnable {:.0} % of 600 ms \
         (from /proc/self/task/{}/schedstat); a sleeping server is near 0 %. A busy loop: \
         EPOLLOUT asked for with nothing to write (level-triggered), or EOF/errors never handled?",
        share * 100.0,
        server.tid
    );
    drop(c);
    server.stop();
}

// ---------------------------------------------------------------------------
// Assignment 1: the level-triggered echo server.

graded! {
    /// Eight clients at once each get their own 64 KiB back, byte for byte;
    /// closed connections are closed by the server too.
    points = 2;
    fn lt_echoes_many_clients_byte_for_byte() {
        let server = Server::start(Kind::Level);
        let clients: Vec<_> = (0..8)
            .map(|i| {
                let s = server.connect();
                Background::spawn("client", move || {
                    let data = pattern(i, 64 * 1024);
                    (data.clone(), echo_concurrently(s, data))
                })
            })
            .collect();
        for (i, c) in clients.into_iter().enumerate() {
            let (sent, got) = c.join_within(Duration::from_secs(8), "echo client");
            assert!(
                got == sent,
                "level-triggered server: client {i} sent {} bytes and got {} back ({})",
                sent.len(),
                got.len(),
                first_difference(&got, &sent)
            );
        }
        server.expect_only_listener("after all 8 clients closed");
        let stats = server.stop();
        assert_eq!(stats.accepted, 8, "Stats.accepted after 8 clients: {stats:?}");
    }
}

graded! {
    /// A client that reads only after its writes stall still gets all
    /// 1 MiB back: output is kept and sent on EPOLLOUT.
    points = 3;
    secs = 30;
    fn lt_keeps_output_for_a_client_that_reads_late() {
        let server = Server::start_small_sndbuf(Kind::Level);
        late_reader(&server, 1 << 20);
        server.stop();
    }
}

graded! {
    /// A client that sends 160 KiB and shuts down its write side before
    /// reading still gets all of it back: EOF does not discard output.
    points = 2;
    fn lt_half_closed_client_gets_its_whole_echo() {
        let server = Server::start_small_sndbuf(Kind::Level);
        half_close_then_read(&server, 160 * 1024);
        server.stop();
    }
}

graded! {
    /// An idle connection costs no CPU: EPOLLOUT only while output waits.
    points = 2;
    fn lt_idle_connection_costs_no_cpu() {
        idle_costs_nothing(Kind::Level);
    }
}

// ---------------------------------------------------------------------------
// Assignment 2: the edge-triggered echo server.

graded! {
    /// A burst much larger than one read comes back whole: each edge is
    /// drained until EAGAIN.
    points = 3;
    fn et_echoes_a_burst_larger_than_one_read() {
        let server = Server::start(Kind::Edge);
        for (i, size) in [300 * 1024, 100 * 1024 + 7].into_iter().enumerate() {
            let data = pattern(i, size);
            let got = echo_concurrently(server.connect(), data.clone());
            assert!(
                got == data,
                "edge-triggered server: sent {size} bytes in one burst, got {} back ({}). \
                 Reading once per edge leaves the rest unread with no new edge to come",
                got.len(),
                first_difference(&got, &data)
            );
        }
        server.expect_only_listener("after both clients closed");
        server.stop();
    }
}

graded! {
    /// The late reader again, edge-triggered: output waits for the
    /// EPOLLOUT edge.
    points = 2;
    secs = 30;
    fn et_keeps_output_for_a_client_that_reads_late() {
        let server = Server::start_small_sndbuf(Kind::Edge);
        late_reader(&server, 1 << 20);
        server.stop();
    }
}

graded! {
    /// Twelve connections queued before the server starts are all served:
    /// one edge, so accept until EAGAIN.
    points = 2;
    fn et_accepts_every_queued_connection() {
        narrate::set_quiet(true);
        let (listener, addr) = net::tcp_listen("server", &support::loopback_any(), 64).unwrap();
        let to = std_addr(&addr);
        let mut queued: Vec<TcpStream> = (0..12)
            .map(|_| {
                let s = TcpStream::connect_timeout(&to, DEADLINE).unwrap();
                s.set_read_timeout(Some(DEADLINE)).unwrap();
                s
            })
            .collect();
        let server = Server::start_on(Kind::Edge, listener, addr);
        for (i, s) in queued.iter_mut().enumerate() {
            let msg = format!("client {i}\n");
            s.write_all(msg.as_bytes()).unwrap();
            let mut buf = vec![0u8; msg.len()];
            if let Err(e) = s.read_exact(&mut buf) {
                panic!(
                    "edge-triggered server: 12 connections were queued before it started; client {i} \
                     got no echo ({e}). The listener reports one edge for all of them: accept until EAGAIN"
                );
            }
            assert_eq!(buf, msg.as_bytes(), "client {i}: wrong echo");
        }
        drop(queued);
        server.expect_only_listener("after the 12 clients closed");
        let stats = server.stop();
        assert_eq!(stats.accepted, 12, "Stats.accepted: {stats:?}");
    }
}

graded! {
    /// The half-closed client again, edge-triggered: after EOF, the queued
    /// echo still goes out on the EPOLLOUT edges.
    points = 2;
    fn et_half_closed_client_gets_its_whole_echo() {
        let server = Server::start_small_sndbuf(Kind::Edge);
        half_close_then_read(&server, 160 * 1024);
        server.stop();
    }
}

graded! {
    /// An idle edge-triggered connection costs no CPU (EPOLLET really set).
    /// A server that spins a core while nobody talks to it is broken
    /// however right its echo, so 2 points, as for the level-triggered one.
    points = 2;
    fn et_idle_connection_costs_no_cpu() {
        idle_costs_nothing(Kind::Edge);
    }
}

// ---------------------------------------------------------------------------
// Assignment 3: nonblocking connect with a deadline.

graded! {
    /// connect_within connects, to the right peer, and returns a blocking
    /// socket.
    points = 1;
    fn connect_within_connects_and_returns_a_blocking_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let at = listener.local_addr().unwrap();
        let fd = connect_within(&SockaddrStorage::from(at), DEADLINE)
            .unwrap_or_else(|e| panic!("connect_within({at}) to a listening socket: {e}"));
        let peer = socket::getpeername::<SockaddrStorage>(fd.as_raw_fd())
            .unwrap_or_else(|e| panic!("getpeername on the returned fd: {e} (not connected?)"));
        assert_eq!(std_addr(&peer), at, "the returned socket's peer is not the listener");
        // SAFETY: F_GETFL only reads the fd's flags.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        assert!(
            flags != -1 && flags & libc::O_NONBLOCK == 0,
            "connect_within returned a socket with O_NONBLOCK still set (fcntl F_GETFL = {flags:#x}): \
             clear it before returning"
        );
        listener.set_nonblocking(false).unwrap();
        let (mut accepted, from) = listener.accept().unwrap();
        let local = socket::getsockname::<SockaddrStorage>(fd.as_raw_fd()).unwrap();
        assert_eq!(std_addr(&local), from, "the listener accepted someone else");
        accepted.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        assert_eq!(
            nix::unistd::read(&fd, &mut b).unwrap_or(0),
            1,
            "no byte arrived on the connected socket"
        );
    }
}

graded! {
    /// A refused connection reports ECONNREFUSED, the same errno std::net
    /// gets, at once.
    points = 2;
    fn connect_within_reports_the_real_error() {
        // A port with a socket bound but not listening: the SYN gets a RST.
        let closed = socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
        socket::bind(closed.as_raw_fd(), &support::loopback_any()).unwrap();
        let at: SockaddrStorage = socket::getsockname(closed.as_raw_fd()).unwrap();
        let expected = TcpStream::connect_timeout(&std_addr(&at), DEADLINE)
            .expect_err("std::net connected to a port nobody listens on?")
            .raw_os_error();
        let t0 = Instant::now();
        match connect_within(&at, DEADLINE) {
            Ok(_) => panic!(
                "connect_within({at}) returned Ok for a port nobody listens on (std::net got errno {expected:?}): \
                 writable is not success, read SO_ERROR"
            ),
            Err(e) => {
                assert_eq!(
                    e.errno().map(|e| e as i32),
                    expected,
                    "connect_within({at}) failed with {e}; std::net's connect got errno {expected:?} (ECONNREFUSED is {})",
                    Errno::ECONNREFUSED as i32
                );
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "a refused connect took {:?}: the RST comes at once on loopback",
            t0.elapsed()
        );
    }
}

graded! {
    /// A connect nobody answers ends at the deadline with ETIMEDOUT, not
    /// after the kernel's two minutes of SYN retries.
    points = 2;
    secs = 15;
    fn connect_within_gives_up_at_its_deadline() {
        // listen(fd, 0): the accept queue holds 1; further SYNs are dropped.
        let full = socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
        socket::bind(full.as_raw_fd(), &support::loopback_any()).unwrap();
        // SAFETY: listen on a bound socket we own.
        assert_eq!(unsafe { libc::listen(full.as_raw_fd(), 0) }, 0);
        let at: SockaddrStorage = socket::getsockname(full.as_raw_fd()).unwrap();
        let mut fillers = Vec::new();
        let mut full_now = false;
        for _ in 0..8 {
            match TcpStream::connect_timeout(&std_addr(&at), Duration::from_millis(300)) {
                Ok(s) => fillers.push(s),
                Err(_) => {
                    full_now = true;
                    break;
                }
            }
        }
        assert!(full_now, "could not fill the accept queue of a listen(fd, 0) socket with 8 connections");
        let deadline = Duration::from_millis(500);
        let t0 = Instant::now();
        let r = connect_within(&at, deadline);
        let took = t0.elapsed();
        match r {
            Ok(_) => panic!("connect_within to a full accept queue returned Ok after {took:?}"),
            Err(e) => assert_eq!(
                e.errno(),
                Some(Errno::ETIMEDOUT),
                "connect_within({at}, {deadline:?}) to a listener that drops SYNs: got {e} after {took:?}, want ETIMEDOUT"
            ),
        }
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(4),
            "connect_within({deadline:?}) gave up after {took:?}: it should wait about its deadline"
        );
    }
}

// ---------------------------------------------------------------------------
// Assignment 4: EMFILE survival (the server runs as a child process whose
// RLIMIT_NOFILE the test lowers with prlimit(2)).

/// Lower `pid`'s soft RLIMIT_NOFILE to `soft`.
fn lower_fd_limit(pid: i32, soft: u64) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: read the child's limits into `old`.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0, "prlimit({pid}) read: {}", Errno::last());
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: set the child's limits from `new`.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(
        rc,
        0,
        "prlimit({pid}, RLIMIT_NOFILE, {soft}): {}",
        Errno::last()
    );
}

fn runnable_ns(pid: i32) -> u64 {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("the server process {pid} is gone ({e}): did EMFILE kill it?"));
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .map(|s| {
            s.split_whitespace()
                .take(2)
                .map(|w| w.parse::<u64>().unwrap_or(0))
                .sum::<u64>()
        })
        .sum()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

graded! {
    /// Out of fds under a flood, the server neither dies nor spins, and it
    /// serves again once the flood leaves.
    points = 3;
    secs = 25;
    fn emfile_flood_neither_kills_nor_spins_the_server() {
        let server = ServerProcess::start(BIN, &["server", "--design", "single", "--addr", "127.0.0.1:0"], DEADLINE);
        let limit = 48u64;
        lower_fd_limit(server.pid, limit);
        let to = std_addr(&server.addr);
        let mut flood = Vec::new();
        for _ in 0..(limit as usize + 40) {
            match TcpStream::connect_timeout(&to, DEADLINE) {
                Ok(s) => flood.push(s),
                Err(e) => panic!("flood connect {} failed: {e} (the listen backlog is 4096)", flood.len()),
            }
        }
        // Wait until the server has used up its fds (fd numbers reach the limit).
        let pid = server.pid;
        let top_fd = || {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
                        .filter(|&n| n < limit)
                        .count() as u64
                })
                .unwrap_or(0)
        };
        let full = eventually(DEADLINE, || top_fd() >= limit - 1 || !alive(pid));
        assert!(alive(pid), "the server died when it ran out of fds (EMFILE must not be fatal)");
        assert!(full, "the server never used up its {limit} fds: it holds {} below the limit", top_fd());
        let r0 = runnable_ns(pid);
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(1)); // the measuring window
        let share = (runnable_ns(pid) - r0) as f64 / t0.elapsed().as_nanos() as f64;
        assert!(alive(pid), "the server died while out of fds");
        assert!(
            share < 0.5,
            "out of fds with {} clients connected, the server was running or runnable {:.0} % of 1 s \
             (/proc/{pid}/task/*/schedstat): a busy loop. The listener stays readable while \
             accept fails with EMFILE; shed the connection with the reserve fd",
            flood.len(),
            share * 100.0
        );
        // The clients it cannot hold (at least all but `limit` of them) have
        // been shed by now: accepted and closed, so they read EOF.
        let shed = flood
            .iter()
            .filter(|s| {
                s.set_nonblocking(true).unwrap();
                match s.peek(&mut [0u8; 1]) {
                    Ok(0) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                    Ok(_) => false,
                }
            })
            .count();
        let must = flood.len() - limit as usize;
        assert!(
            shed >= must,
            "out of fds (RLIMIT_NOFILE {limit}) with {} clients connected, only {shed} of them had \
             been shed (read EOF) a second later; at least {must} cannot be held. Shed each one \
             at once with the spare fd, and reopen the spare after each (accept_all)",
            flood.len()
        );
        drop(flood);
        // Once the flood has gone the server must serve again.
        let mut ok = false;
        let deadline = Instant::now() + DEADLINE;
        let mut last = String::new();
        while !ok && Instant::now() < deadline {
            let attempt = (|| -> std::io::Result<Vec<u8>> {
                let mut s = TcpStream::connect_timeout(&to, DEADLINE)?;
                s.set_read_timeout(Some(Duration::from_millis(500)))?;
                s.write_all(b"again\n")?;
                let mut b = [0u8; 6];
                s.read_exact(&mut b)?;
                Ok(b.to_vec())
            })();
            match attempt {
                Ok(b) if b == b"again\n" => ok = true,
                Ok(b) => last = format!("wrong echo {b:?}"),
                Err(e) => last = e.to_string(),
            }
        }
        assert!(ok, "after the flood closed, a new client got no echo within {DEADLINE:?}: {last}");
        assert!(alive(pid), "the server died");
    }
}

// ---------------------------------------------------------------------------
// Assignment 5: idle timeouts with timerfd.

graded! {
    /// A connection that sends nothing is closed after the idle time, not
    /// before.
    points = 2;
    fn idle_connection_is_closed_after_its_timeout() {
        let idle = Duration::from_millis(500);
        let server = Server::start(Kind::Idle(idle));
        let mut quiet = server.connect();
        let t0 = Instant::now();
        let mut b = [0u8; 1];
        let r = quiet.read(&mut b);
        let took = t0.elapsed();
        match r {
            Ok(0) => {}
            Ok(n) => panic!("the idle server sent {n} bytes to a client that sent nothing"),
            Err(e) => panic!(
                "a client that sent nothing was not closed within {DEADLINE:?} (idle timeout {idle:?}): {e}"
            ),
        }
        assert!(
            took >= idle.mul_f32(0.8),
            "a quiet client was closed after {took:?}, before its idle timeout of {idle:?}"
        );
        server.expect_only_listener("after the idle timeout");
        let stats = server.stop();
        assert_eq!(stats.timed_out, 1, "Stats.timed_out after one idle close: {stats:?}");
    }
}

graded! {
    /// A connection that keeps talking outlives several idle timeouts, and
    /// its echoes keep coming.
    points = 2;
    secs = 20;
    fn busy_connection_outlives_the_idle_timeout() {
        // Generous against a loaded machine: a 100 ms pace beside a 1.5 s
        // timeout leaves 1.4 s of scheduling slack per round.
        let idle = Duration::from_millis(1500);
        let server = Server::start(Kind::Idle(idle));
        let mut busy = server.connect();
        let quiet = server.connect();
        let t0 = Instant::now();
        let mut rounds = 0;
        while t0.elapsed() < idle * 3 {
            busy.write_all(b"k").unwrap_or_else(|e| {
                panic!("after {:?} of one byte every 100 ms, writing failed: {e}", t0.elapsed())
            });
            let mut b = [0u8; 1];
            match busy.read(&mut b) {
                Ok(1) => rounds += 1,
                other => panic!(
                    "a client sending one byte every 100 ms was cut after {:?} ({other:?}); the idle \
                     timeout is {idle:?}: re-arm the connection's timer when it sends",
                    t0.elapsed()
                ),
            }
            std::thread::sleep(Duration::from_millis(100)); // the client's pace
        }
        assert!(rounds >= 5, "only {rounds} echoes in {:?}", idle * 3);
        // The quiet one, meanwhile, has been closed.
        let mut q = quiet;
        q.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut b = [0u8; 1];
        assert!(
            matches!(q.read(&mut b), Ok(0)),
            "a quiet client connected beside the busy one was still open after {:?}",
            idle * 3
        );
        drop(busy);
        server.stop();
    }
}

// ---------------------------------------------------------------------------
// Assignment 6: chapter 4's chat server on epoll. The same tests as chapter
// 4's select and poll loops (support/chat.rs), and what only epoll can get
// wrong. These need chapter 4's chat assignments solved as well.

const EPOLL: chat_server::Kind = chat_server::Kind::Epoll;

graded! {
    /// The epoll loop serves chapter 4's chat: lines split and broadcast
    /// with the sender's address, departures, the counters.
    points = 2;
    fn epoll_chat_serves_the_same_chat() {
        chat::basic_chat(EPOLL);
    }
}

graded! {
    /// A client that sends half a line and stalls blocks nobody (epoll).
    points = 1;
    fn epoll_chat_stalled_client_blocks_nobody() {
        chat::stalled_client_blocks_nobody(EPOLL);
    }
}

graded! {
    /// A client that never reads is disconnected when its output buffer is
    /// full; everyone else is served meanwhile (epoll).
    points = 1;
    fn epoll_chat_non_reader_is_disconnected() {
        chat::non_reader_is_disconnected_and_blocks_nobody(EPOLL);
    }
}

graded! {
    /// A slow reader gets every line once it reads: its writable interest
    /// is turned on (EPOLL_CTL_MOD) while output waits.
    points = 2;
    fn epoll_chat_slow_reader_gets_every_line() {
        chat::slow_reader_gets_every_line_once_it_reads(EPOLL);
    }
}

graded! {
    /// A client that half-closes while lines wait in its output buffer gets
    /// them all before it is closed: after its EOF the loop drops read
    /// interest, keeps EPOLLOUT while output waits, then closes (epoll).
    points = 1;
    fn epoll_chat_half_closed_client_still_gets_its_queued_lines() {
        chat::half_closed_client_still_gets_its_queued_lines(EPOLL);
    }
}

graded! {
    /// While output waits for a client that does not read, the epoll loop
    /// sleeps (EPOLLOUT only while output is pending, measured against a
    /// spinning thread), and the lines keep their order.
    points = 2;
    secs = 30;
    fn epoll_chat_pending_output_sleeps() {
        chat::pending_output_sleeps_and_keeps_order(EPOLL);
    }
}

graded! {
    /// A flood is served whole and in order; an overlong line is dropped
    /// (epoll).
    points = 1;
    fn epoll_chat_flood_is_served_whole() {
        chat::flood_is_served_whole_and_overlong_line_dropped(EPOLL);
    }
}

graded! {
    /// Clients that reset at any moment are dropped and closed; the others
    /// go on (epoll).
    points = 1;
    fn epoll_chat_abrupt_resets_are_survived() {
        chat::abrupt_resets_are_survived(EPOLL);
    }
}

graded! {
    /// 200 clients at once, every line to the 199 others (epoll).
    points = 1;
    secs = 15;
    fn epoll_chat_two_hundred_clients_at_once() {
        chat::two_hundred_clients_at_once(EPOLL);
    }
}

graded! {
    /// `ch09_epoll chat` serves 1,500 clients: no FD_SETSIZE wall.
    points = 1;
    secs = 20;
    fn epoll_chat_serves_1500() {
        chat::child_serves_many(EPOLL, BIN, &["chat", "--addr", "127.0.0.1:0"], 1500);
    }
}

graded! {
    /// A client that leaves frees its fd number, and `accept` gives that
    /// number to the next client: the loop must have forgotten the old
    /// registration (EPOLL_CTL_DEL and its own map), or the new client
    /// looks registered already and is never read. The server runs as a
    /// child so that its fd numbers are its own.
    points = 2;
    fn epoll_chat_serves_a_client_on_a_reused_fd() {
        let server = chat::Child::start(BIN, &["chat", "--addr", "127.0.0.1:0"]);
        let connect = || {
            let s = TcpStream::connect_timeout(&server.addr, DEADLINE)
                .unwrap_or_else(|e| panic!("connect to the chat child at {}: {e}", server.addr));
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut c = chat::Chatter::from(s);
            let welcome = c.line();
            assert!(welcome.starts_with("* welcome "), "expected a welcome, got {welcome:?}");
            c
        };
        let mut a = connect();
        for round in 0..3 {
            let c = connect();
            let with_c = server.socket_fds();
            let c_addr = c.local.clone();
            drop(c);
            let closed = eventually(DEADLINE, || server.socket_fds().len() == with_c.len() - 1);
            assert!(
                closed,
                "round {round}: {c_addr} closed its connection; the server still holds {:?} \
                 (/proc/{}/fd sockets), it held {with_c:?} with it",
                server.socket_fds(),
                server.server.pid
            );
            let mut d = connect();
            let with_d = server.socket_fds();
            assert_eq!(
                with_d, with_c,
                "round {round}: precondition: the next client should get the fd number the \
                 last one freed (accept gives the lowest free fd)"
            );
            d.send(&format!("d in round {round}\n"));
            let want = chat::said(&d, &format!("d in round {round}"));
            let mut got = String::new();
            let ok = (0..2).any(|_| {
                got = a.line_within(Duration::from_secs(2));
                got == want
            });
            assert!(
                ok,
                "round {round}: a client got the fd number of one that had just left \
                 ({with_d:?} in /proc/{}/fd) and said {want:?}; the other client got {got:?}. \
                 The loop still took the old registration for the new client's: a departed \
                 fd must leave the epoll set and the loop's map before it is closed",
                server.server.pid
            );
            a.send(&format!("a in round {round}\n"));
            assert_eq!(d.line(), chat::said(&a, &format!("a in round {round}")), "round {round}: d");
        }
        drop(a);
        let (status, _) = server.terminate();
        assert!(status.success(), "the chat child's exit status after SIGTERM: {status}");
    }
}

/// How many times [`count_signal`] has run.
static SIGNALS_HANDLED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A signal handler that only counts: its effect is to interrupt the
/// system call the thread it hits is blocked in. (A lock-free atomic is
/// async-signal-safe.)
extern "C" fn count_signal(_: libc::c_int) {
    SIGNALS_HANDLED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// The state letter of thread `tid` of this process (`R`, `S`…), from
/// `/proc/self/task/TID/stat`.
fn thread_state(tid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .and_then(|rest| rest.trim_start().chars().next())
        .unwrap_or('?')
}

graded! {
    /// A signal caught while the loop sleeps in epoll_wait makes it return
    /// EINTR (even with SA_RESTART, see signal(7)); the loop waits again
    /// and the chat goes on.
    points = 1;
    fn epoll_chat_survives_eintr() {
        // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the
        // handler does nothing, so it is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = count_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
        }
        let server = chat::Server::start(EPOLL, chat_server::Config::default());
        let mut a = chat::Chatter::join(&server);
        let mut b = chat::Chatter::join(&server);
        let tid = server.tid.load(std::sync::atomic::Ordering::SeqCst);
        for i in 0..3 {
            // Idle, the server thread can only be asleep in epoll_wait.
            let asleep = eventually(DEADLINE, || thread_state(tid) == 'S');
            assert!(asleep, "the idle server thread {tid} never went to sleep (state {})", thread_state(tid));
            let handled = SIGNALS_HANDLED.load(std::sync::atomic::Ordering::SeqCst);
            // SAFETY: tgkill sends a signal to one thread of this process;
            // the handler above is installed.
            let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR1) };
            assert_eq!(rc, 0, "tgkill({tid}, SIGUSR1): {}", Errno::last());
            // Send only once the handler has run: epoll_wait has returned
            // EINTR by then. (Data arriving first would make it return the
            // event instead, and the signal would prove nothing.)
            let ran = eventually(DEADLINE, || {
                SIGNALS_HANDLED.load(std::sync::atomic::Ordering::SeqCst) > handled
            });
            assert!(ran, "the SIGUSR1 handler never ran in the server thread {tid}");
            a.send(&format!("after signal {i}\n"));
            let want = chat::said(&a, &format!("after signal {i}"));
            let got = b.line_within(DEADLINE);
            if got != want {
                let ended = match server.thread.try_join() {
                    Some(Ok(Err(e))) => format!("the server returned an error: {e}"),
                    Some(Ok(Ok(_))) => "the server returned Ok, as if stopped".to_string(),
                    Some(Err(_)) => "the server thread panicked".to_string(),
                    None => "the server thread is still running".to_string(),
                };
                panic!(
                    "SIGUSR1 (a handler with SA_RESTART) hit the server thread while it slept in \
                     epoll_wait; then a said {want:?} and b got {got:?}; {ended}. epoll_wait \
                     returns EINTR on a signal, SA_RESTART or not: wait again"
                );
            }
        }
        drop((a, b));
        server.stop();
    }
}
