//! Chapter 4's chat server under test: the harness and the test bodies
//! that `tests/ch04_select.rs` runs on the select and poll loops and
//! `tests/ch09_epoll.rs` runs on chapter 9's epoll loop. "The same tests
//! pass" means these very functions.
//!
//! Not a module of `support/mod.rs`: the two files include it with
//! `#[path = "support/chat.rs"] mod chat;`, after a module `chat_server`
//! of their own that gives it chapter 4's chat types (`Config`, `Event`,
//! `Stats`, `Why`), their `Kind` of loop and `serve(kind, listener, stop,
//! config)`. So this file names no chapter: the mutant grader links every
//! chapter to any chapter named under `tests/support/`.
//!
//! The clients are independent of the chapter's code: `std::net` streams,
//! read with `poll(2)` where there are many.

#![allow(dead_code)] // each of the two test files uses a different part

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{self, SockaddrStorage, sockopt};
use sockbook::kit::{narrate, net};

use super::chat_server::{Config, Event, Kind, Stats, Why, serve};
use super::support::server_process::ServerProcess;
use super::support::{
    Background, DEADLINE, open_sockets_on_port, std_addr, std_client, tcp_inodes_with_local_port,
};

// ---------------------------------------------------------------------------
// A server under test, on a background thread, stopped by closing a pipe.

pub struct Server {
    pub kind: Kind,
    pub addr: SockaddrStorage,
    pub port: u16,
    pub stop: Option<std::io::PipeWriter>,
    pub events: Receiver<Event>,
    pub backlog: VecDeque<Event>,
    pub thread: Background<sockbook::kit::Result<Stats>>,
    /// The server thread's kernel thread id (for its CPU time in /proc).
    pub tid: Arc<AtomicI32>,
}

impl Server {
    pub fn start(kind: Kind, config: Config) -> Server {
        Server::start_with(kind, config, |_| {})
    }

    /// `start`, after `setup` has set options on the listening socket
    /// (accepted sockets inherit them).
    pub fn start_with(kind: Kind, config: Config, setup: impl FnOnce(&OwnedFd)) -> Server {
        narrate::set_quiet(true);
        let (listener, addr) =
            net::tcp_listen("server", &super::support::loopback_any(), 1024).unwrap();
        setup(&listener);
        let port = net::local_port(&listener).unwrap();
        let (tx, events) = mpsc::channel();
        let config = Config {
            events: Some(tx),
            ..config
        };
        let (stop_r, stop_w) = std::io::pipe().unwrap();
        let tid = Arc::new(AtomicI32::new(0));
        let tid_of_server = Arc::clone(&tid);
        let thread = Background::spawn("server", move || {
            tid_of_server.store(nix::unistd::gettid().as_raw(), Ordering::SeqCst);
            serve(kind, listener, stop_r, config)
        });
        Server {
            kind,
            addr,
            port,
            stop: Some(stop_w),
            events,
            backlog: VecDeque::new(),
            thread,
            tid,
        }
    }

    pub fn sockets(&self) -> usize {
        open_sockets_on_port(self.port)
    }

    /// The first event (old or new) that `want` accepts; waits at most
    /// DEADLINE.
    pub fn event(&mut self, what: &str, want: impl Fn(&Event) -> bool) -> Event {
        if let Some(i) = self.backlog.iter().position(&want) {
            return self.backlog.remove(i).unwrap();
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) if want(&e) => return e,
                Ok(e) => self.backlog.push_back(e),
                Err(_) => panic!("{:?} server: no event {what} in time", self.kind),
            }
        }
    }

    /// Wait for `peer` to leave; returns why.
    pub fn left(&mut self, peer: &str) -> Why {
        match self.event(
            &format!("Left {{ peer: {peer} }}"),
            |e| matches!(e, Event::Left { peer: p, .. } if p == peer),
        ) {
            Event::Left { why, .. } => why,
            _ => unreachable!(),
        }
    }

    /// Close the stop pipe and wait for the server to return its stats.
    pub fn stop(mut self) -> Stats {
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

/// A chat client on a `std::net` stream, reading whole lines.
pub struct Chatter {
    pub s: TcpStream,
    pub buf: Vec<u8>,
    pub local: String,
}

impl Chatter {
    /// Connect and read the welcome, which names our own address as the
    /// server sees it. After the welcome the server has registered us.
    pub fn join(server: &Server) -> Chatter {
        let mut c = Chatter::connect(server);
        let welcome = c.line();
        assert!(
            welcome.starts_with(&format!("* welcome {}, ", c.local)),
            "welcome {welcome:?} should name our address {}",
            c.local
        );
        c
    }

    pub fn connect(server: &Server) -> Chatter {
        Chatter::from(std_client(&server.addr))
    }

    pub fn from(s: TcpStream) -> Chatter {
        let local = s.local_addr().unwrap().to_string();
        Chatter {
            s,
            buf: Vec::new(),
            local,
        }
    }

    pub fn send(&mut self, text: &str) {
        self.s.write_all(text.as_bytes()).unwrap_or_else(|e| {
            panic!(
                "{}: sending {text:?} to the chat server failed: {e}",
                self.local
            )
        });
    }

    /// The next line without its `\n`, waiting at most DEADLINE.
    pub fn line(&mut self) -> String {
        self.line_or_eof()
            .unwrap_or_else(|| panic!("{}: EOF while waiting for a line", self.local))
    }

    /// The next line, or `None` at EOF, waiting at most DEADLINE.
    pub fn line_or_eof(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Some(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => panic!("{}: no line: {e}", self.local),
            }
        }
    }

    /// The next line without its `\n`, or `""` if none came within `limit`
    /// (silence, EOF or a reset).
    pub fn line_within(&mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return String::from_utf8_lossy(&line[..end]).into_owned();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.s.set_read_timeout(Some(left)).is_err() {
                break;
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = self.s.set_read_timeout(Some(DEADLINE));
        String::new()
    }

    /// Read until EOF or a reset, at most DEADLINE: true if the connection
    /// ended (it must not just go quiet).
    pub fn ended(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        loop {
            match self.s.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false, // timed out
            }
        }
    }

    /// Close with RST instead of FIN: SO_LINGER {on, 0 s}.
    pub fn reset(self) {
        let abort = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        socket::setsockopt(&self.s, sockopt::Linger, &abort).unwrap();
        drop(self.s);
    }
}

pub fn said(from: &Chatter, text: &str) -> String {
    format!("{}: {text}", from.local)
}

// ---------------------------------------------------------------------------
// The test bodies, each for one kind of loop.

/// The basic chat: lines split, broadcast to every other client with the
/// sender's address, a client that leaves, the counters.
pub fn basic_chat(kind: Kind) {
    let mut server = Server::start(kind, Config::default());
    let mut a = Chatter::join(&server);
    let mut b = Chatter::join(&server);
    let mut c = Chatter::join(&server);
    assert_eq!(server.sockets(), 4, "listener + 3 clients");

    // Two lines in one write: both go to everyone else, one by one.
    a.send("hi\nthere\n");
    for x in [&mut b, &mut c] {
        assert_eq!(
            x.line(),
            format!("{}: hi", a.local),
            "{kind:?}: a sent \"hi\\nthere\\n\" in one write; every other client should get \"hi\" first, prefixed with a's address (each complete line broadcast on its own)"
        );
        assert_eq!(
            x.line(),
            format!("{}: there", a.local),
            "{kind:?}: a sent \"hi\\nthere\\n\" in one write; the second line \"there\" should follow \"hi\""
        );
    }
    // A line cut across writes, and several lines in the next write.
    b.send("one\ntw");
    b.send("o\nthree\nfour\n");
    for x in [&mut a, &mut c] {
        // For a, this is also proof it did not get its own "hi" back.
        for word in ["one", "two", "three", "four"] {
            assert_eq!(
                x.line(),
                format!("{}: {word}", b.local),
                "{kind:?}: b sent \"one\\ntw\" then \"o\\nthree\\nfour\\n\"; the others should get one, two, three, four in order (a line cut across two reads is joined; the sender gets none of its own)"
            );
        }
    }
    c.send("bye\n");
    assert_eq!(
        a.line(),
        said(&c, "bye"),
        "{kind:?}: c sent \"bye\\n\"; a should get it"
    );
    assert_eq!(
        b.line(),
        said(&c, "bye"),
        "{kind:?}: c sent \"bye\\n\"; b should get it"
    );
    let c_addr = c.local.clone();
    drop(c);
    assert_eq!(
        server.left(&c_addr),
        Why::Eof,
        "{kind:?}: c closed its socket (FIN); the server should drop it as EOF"
    );
    assert_eq!(server.sockets(), 3, "c's socket was closed");
    a.send("still here\n");
    assert_eq!(
        b.line(),
        said(&a, "still here"),
        "{kind:?}: after c left, a sent \"still here\\n\"; b should still get it"
    );

    let stats = server.stop();
    assert_eq!(
        stats.accepted, 3,
        "{kind:?}: 3 clients connected; the server's accepted count"
    );
    assert_eq!(
        stats.lines, 8,
        "{kind:?}: 8 lines were sent in all (hi, there, one..four, bye, still here)"
    );
    assert_eq!(
        stats.refused, 0,
        "{kind:?}: nobody should have been refused"
    );
    assert_eq!(
        stats.dropped, 0,
        "{kind:?}: nobody misbehaved, so nobody should have been dropped"
    );
}

/// A client that sends half a line and stalls blocks nobody; its line
/// goes out whole when it finishes it.
pub fn stalled_client_blocks_nobody(kind: Kind) {
    let server = Server::start(kind, Config::default());
    let mut s = Chatter::join(&server);
    let mut a = Chatter::join(&server);
    let mut b = Chatter::join(&server);
    s.send("half a li");
    a.send("from a\n");
    assert_eq!(
        b.line(),
        said(&a, "from a"),
        "{kind:?}: the staller blocked b"
    );
    b.send("from b\n");
    assert_eq!(
        a.line(),
        said(&b, "from b"),
        "{kind:?}: the staller blocked a"
    );
    s.send("ne\n");
    assert_eq!(
        a.line(),
        said(&s, "half a line"),
        "{kind:?}: the staller s finished its line (\"ne\\n\"); a should then get s's whole line \"half a line\", joined from its two reads"
    );
    assert_eq!(
        b.line(),
        said(&s, "half a line"),
        "{kind:?}: the staller s finished its line; b should then get s's whole line \"half a line\", joined from its two reads"
    );
    assert_eq!(
        s.line(),
        said(&a, "from a"),
        "{kind:?}: while s stalled, a said \"from a\": s should get it too, first"
    );
    assert_eq!(
        s.line(),
        said(&b, "from b"),
        "{kind:?}: while s stalled, b said \"from b\": s should get it second"
    );
    assert_eq!(
        server.sockets(),
        4,
        "{kind:?}: the server should hold 4 sockets (the listener, s, a, b): one more is a leak, one less a client dropped"
    );
    drop((s, a, b));
    server.stop();
}

/// A client that never reads is disconnected when its output buffer is
/// full, with the reason logged; everyone else is served meanwhile.
pub fn non_reader_is_disconnected_and_blocks_nobody(kind: Kind) {
    let limit = 16 * 1024;
    let mut server = Server::start(
        kind,
        Config {
            out_limit: limit,
            ..Config::default()
        },
    );
    let mut n = small_window_client(&server);
    let n_addr = n.local.clone();
    server.event(
        "Joined (non-reader)",
        |e| matches!(e, Event::Joined { peer, .. } if *peer == n_addr),
    );
    let mut a = Chatter::join(&server);
    let mut b = Chatter::join(&server);
    let text = "z".repeat(999);
    let round = format!("{text}\n").repeat(64);
    let mut sent = 0;
    let why = loop {
        a.send(&round);
        sent += round.len();
        for _ in 0..64 {
            assert_eq!(
                b.line(),
                said(&a, &text),
                "{kind:?}: b must get every line whole"
            );
        }
        while let Ok(e) = server.events.try_recv() {
            server.backlog.push_back(e);
        }
        if server
            .backlog
            .iter()
            .any(|e| matches!(e, Event::Left { peer, .. } if *peer == n_addr))
        {
            break server.left(&n_addr);
        }
        assert!(
            sent < 64 << 20,
            "{kind:?}: sent {sent} bytes and the non-reader is still connected"
        );
    };
    match why {
        Why::OutputFull { queued, limit: l } => {
            assert_eq!(
                l, limit,
                "{kind:?}: Why::OutputFull reports limit {l}, but the server was configured with out_limit {limit}"
            );
            assert!(
                queued > limit,
                "{kind:?}: dropped with only {queued} bytes queued"
            );
        }
        other => panic!("{kind:?}: non-reader dropped for {other:?}"),
    }
    assert_eq!(
        server.sockets(),
        3,
        "{kind:?}: the non-reader's socket is closed"
    );
    assert!(
        n.ended(),
        "{kind:?}: the non-reader's connection did not end"
    );
    a.send("after\n");
    assert_eq!(
        b.line(),
        said(&a, "after"),
        "{kind:?}: after the non-reader was dropped, a said \"after\": b should get it (the server must go on serving)"
    );
    drop((a, b));
    let stats = server.stop();
    assert_eq!(stats.dropped, 1, "{kind:?}");
}

/// A server whose sockets have a 4 KiB send buffer (set on the listener,
/// inherited by accept, and so not grown by the kernel) and an output limit
/// of twice `bytes`, and a client `s` with a 4 KiB receive window that has
/// joined (named `who` in the wait): while `s` does not read, nearly all of
/// `bytes` sent its way must wait in the server's own output buffer.
fn small_buffers_and_window(kind: Kind, bytes: usize, who: &str) -> (Server, Chatter) {
    let small_sndbuf = |l: &OwnedFd| socket::setsockopt(l, sockopt::SndBuf, &4096).unwrap();
    let mut server = Server::start_with(
        kind,
        Config {
            out_limit: 2 * bytes,
            ..Config::default()
        },
        small_sndbuf,
    );
    let s = small_window_client(&server);
    let s_addr = s.local.clone();
    server.event(
        &format!("Joined ({who})"),
        |e| matches!(e, Event::Joined { peer, .. } if *peer == s_addr),
    );
    (server, s)
}

/// A slow reader gets every line once it reads: what the kernel would
/// not take at once waits in its output buffer and goes out when the
/// loop sees its socket writable again (select's write set, POLLOUT, EPOLLOUT).
pub fn slow_reader_gets_every_line_once_it_reads(kind: Kind) {
    let text = "s".repeat(499);
    let count = 2000;
    let (server, mut s) = small_buffers_and_window(kind, count * (text.len() + 40), "slow reader");
    let mut a = Chatter::join(&server);
    let lines: String = (0..count).map(|i| format!("{i:06} {text}\n")).collect();
    a.send(&lines);
    // Now s reads: every line, in order, none lost.
    assert!(
        s.line().starts_with("* welcome "),
        "{kind:?}: welcome first"
    );
    for i in 0..count {
        assert_eq!(
            s.line(),
            said(&a, &format!("{i:06} {text}")),
            "{kind:?}: line {i}"
        );
    }
    drop((a, s));
    let stats = server.stop();
    assert_eq!(stats.dropped, 0, "{kind:?}");
}

/// A client that half-closes (`shutdown(SHUT_WR)`: "I have nothing more to
/// say") while lines still wait in its output buffer gets every one of them
/// before the server closes it: the server stops reading from it, not
/// writing to it.
pub fn half_closed_client_still_gets_its_queued_lines(kind: Kind) {
    let text = "h".repeat(499);
    let count = 400;
    let (server, mut s) = small_buffers_and_window(kind, count * (text.len() + 40), "half-closer");
    let mut a = Chatter::join(&server);
    let mut b = Chatter::join(&server);
    let lines: String = (0..count).map(|i| format!("{i:06} {text}\n")).collect();
    a.send(&lines);
    // When b has every line, the server has handed s its copies too (one
    // broadcast serves all): most wait in s's output buffer, s's window and
    // the server's send buffer being small.
    for i in 0..count {
        assert_eq!(
            b.line(),
            said(&a, &format!("{i:06} {text}")),
            "{kind:?}: b's line {i}"
        );
    }
    s.s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(
        s.line().starts_with("* welcome "),
        "{kind:?}: welcome first"
    );
    for i in 0..count {
        let got = s.line_or_eof().unwrap_or_else(|| "(EOF)".into());
        assert_eq!(
            got,
            said(&a, &format!("{i:06} {text}")),
            "{kind:?}: after shutdown(SHUT_WR), line {i} of the {count} queued for the \
             half-closed client is missing or wrong (was its output dropped when it sent EOF?)"
        );
    }
    assert!(
        s.ended(),
        "{kind:?}: once its output is sent, the half-closed client is closed"
    );
    drop((a, b));
    let stats = server.stop();
    assert_eq!(stats.dropped, 0, "{kind:?}: nobody should be dropped");
}

/// While output waits for a client that does not read, the loop sleeps:
/// it watches that client for writing only while output is pending, so
/// the other, idle clients' always-writable sockets do not wake it (its
/// CPU time is compared with a thread that spins beside it). When the
/// client reads while new lines keep coming, it gets them all in order.
pub fn pending_output_sleeps_and_keeps_order(kind: Kind) {
    let small_sndbuf = |l: &OwnedFd| socket::setsockopt(l, sockopt::SndBuf, &4096).unwrap();
    let mut server = Server::start_with(
        kind,
        Config {
            out_limit: 1 << 20,
            ..Config::default()
        },
        small_sndbuf,
    );
    // a and b first, so the loop (in fd order) reads a before it
    // flushes s: new lines for s must queue behind the old ones.
    let mut a = Chatter::join(&server);
    let mut b = Chatter::join(&server);
    let s = small_window_client(&server);
    let s_addr = s.local.clone();
    server.event(
        "Joined (slow reader)",
        |e| matches!(e, Event::Joined { peer, .. } if *peer == s_addr),
    );
    let text = "p".repeat(499);
    let count = 400;
    let lines: String = (0..count).map(|i| format!("{i:06} {text}\n")).collect();
    a.send(&lines);
    for i in 0..count {
        assert_eq!(
            b.line(),
            said(&a, &format!("{i:06} {text}")),
            "{kind:?}: b, line {i}"
        );
    }
    // Now about 200 KB wait for s, which does not read; a and b are
    // idle with empty buffers (and always-writable sockets).
    let tid = server.tid.load(Ordering::SeqCst);
    let (server_ns, spinner_ns, wall) = cpu_beside_a_spinner(tid);
    assert!(
        server_ns * 4 < spinner_ns,
        "{kind:?}: with output pending for a client that does not read, and nothing \
         else happening, the server thread used {} ms of CPU in {wall:?} while a thread \
         spinning beside it got {} ms: the loop is busy, not asleep in select/poll/epoll_wait. \
         Watch a client for writing only while its output buffer holds bytes \
         (wants_write), and never retry a send until it succeeds. \
         (By hand: `top -H` shows the server thread at 100 %.)",
        server_ns / 1_000_000,
        spinner_ns / 1_000_000
    );
    // Now s reads, while a sends as many lines again in small
    // writes: s gets every line, the old ones first, all in order.
    let reader = Background::spawn("slow reader", move || {
        let mut s = s;
        let got: Vec<String> = (0..=2 * count).map(|_| s.line()).collect();
        (s, got)
    });
    for chunk in 0..count / 10 {
        let more: String = (chunk * 10..chunk * 10 + 10)
            .map(|i| format!("{:06} {text}\n", count + i))
            .collect();
        a.send(&more);
    }
    let (s, got) = reader.join_within(Duration::from_secs(15), "s reading its lines");
    assert!(
        got[0].starts_with("* welcome "),
        "{kind:?}: welcome first, got {:?}",
        got[0]
    );
    for (i, line) in got[1..].iter().enumerate() {
        let want = said(&a, &format!("{i:06} {text}"));
        assert!(
            *line == want,
            "{kind:?}: s's line {i} is {:?}, expected {:?}: bytes for a client whose \
             buffer holds some already go after them, not straight to send()",
            &line[..line.len().min(40)],
            &want[..want.len().min(40)]
        );
    }
    for i in 0..count {
        assert_eq!(
            b.line(),
            said(&a, &format!("{:06} {text}", count + i)),
            "{kind:?}: b"
        );
    }
    drop((a, b, s));
    let stats = server.stop();
    assert_eq!(stats.dropped, 0, "{kind:?}");
}

/// A flood is served whole and in order, interleaved only at line
/// boundaries; a flooder that sends a line past the limit is dropped.
pub fn flood_is_served_whole_and_overlong_line_dropped(kind: Kind) {
    let mut server = Server::start(
        kind,
        Config {
            out_limit: 4 << 20,
            ..Config::default()
        },
    );
    let mut r = Chatter::join(&server);
    let mut q = Chatter::join(&server);
    let f = Chatter::join(&server);
    let f_addr = f.local.clone();
    let count = 20_000;
    let flood: String = (0..count).map(|i| format!("flood {i:06}\n")).collect();
    let mut fs = f.s.try_clone().unwrap();
    let writer = Background::spawn("flooder", move || fs.write_all(flood.as_bytes()).unwrap());
    for k in 0..5 {
        q.send(&format!("ping {k}\n"));
    }
    let mut next = 0;
    let mut pings = 0;
    while next < count || pings < 5 {
        let line = r.line();
        if let Some(rest) = line.strip_prefix(&format!("{f_addr}: ")) {
            assert_eq!(
                rest,
                format!("flood {next:06}"),
                "{kind:?}: flood out of order or torn"
            );
            next += 1;
        } else {
            assert_eq!(
                line,
                said(&q, &format!("ping {pings}")),
                "{kind:?}: torn or unknown line"
            );
            pings += 1;
        }
    }
    writer.join_within(DEADLINE, "flooder");
    let mut f = f;
    let max_line = Config::default().max_line;
    f.send(&"g".repeat(max_line + 1000));
    assert_eq!(
        server.left(&f_addr),
        Why::LineTooLong { max_line },
        "{kind:?}: the flooder sent {} bytes without a newline; the server should drop it with Why::LineTooLong {{ max_line: {max_line} }}",
        max_line + 1000
    );
    assert_eq!(server.sockets(), 3, "{kind:?}");
    r.send("after the flood\n");
    // q has the whole flood waiting before this line.
    let want = said(&r, "after the flood");
    while q.line() != want {}
    drop((r, q, f));
    server.stop();
}

/// Clients that reset (RST) at any moment are dropped and closed; the
/// server goes on serving the others.
pub fn abrupt_resets_are_survived(kind: Kind) {
    let mut server = Server::start(kind, Config::default());
    let mut a = Chatter::join(&server);
    let mut b = Chatter::join(&server);
    let mut gone = Vec::new();
    for i in 0..30 {
        let mut c = Chatter::join(&server);
        match i % 3 {
            0 => {}                   // reset with nothing in flight
            1 => c.send("half a li"), // reset in the middle of a line
            _ => {
                a.send(&format!("to {i}\n")); // reset with unread data
                assert_eq!(
                    b.line(),
                    said(&a, &format!("to {i}")),
                    "{kind:?}: client {i} is about to reset with unread data; a's line \"to {i}\" should still reach b"
                );
            }
        }
        gone.push(c.local.clone());
        c.reset();
    }
    for peer in &gone {
        let why = server.left(peer);
        assert!(
            matches!(
                why,
                Why::Eof
                    | Why::Error {
                        errno: Errno::ECONNRESET | Errno::EPIPE,
                        ..
                    }
            ),
            "{kind:?}: {peer} left for {why:?}"
        );
    }
    assert_eq!(server.sockets(), 3, "{kind:?}: listener + a + b");
    // Resets before the server even accepted.
    for _ in 0..20 {
        Chatter::connect(&server).reset();
    }
    a.send("still alive\n");
    assert_eq!(
        b.line(),
        said(&a, "still alive"),
        "{kind:?}: after 30 resets and 20 more right after connect (before the server accepted them), a said \"still alive\": b should get it"
    );
    drop((a, b));
    server.stop();
}

/// 200 clients connect at once; every one is welcomed, every line
/// reaches the 199 others, and every socket is closed after.
pub fn two_hundred_clients_at_once(kind: Kind) {
    let mut server = Server::start(kind, Config::default());
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut swarm = Swarm::new();
    swarm.connect(std_addr(&server.addr), 200, 200, deadline);
    let served = swarm.served();
    assert_eq!(served.len(), 200, "{kind:?}: not all 200 were welcomed");
    assert_eq!(server.sockets(), 201, "{kind:?}");
    let all: Vec<usize> = (0..200).collect();
    swarm.broadcast_check(&served, &all, deadline);
    let locals: Vec<String> = swarm.peers.iter().map(|p| p.local.clone()).collect();
    drop(swarm);
    for peer in &locals {
        server.left(peer);
    }
    assert_eq!(server.sockets(), 1, "{kind:?}: the listener alone is left");
    let stats = server.stop();
    assert_eq!(
        stats.accepted, 200,
        "{kind:?}: 200 clients connected at once"
    );
    assert_eq!(
        stats.peak, 200,
        "{kind:?}: all 200 should have been connected at the same time"
    );
    assert_eq!(
        stats.lines, 200,
        "{kind:?}: each of the 200 clients sent one line"
    );
}

/// A client with a tiny receive buffer (set before connect).
pub fn small_window_client(server: &Server) -> Chatter {
    let s = crate::support::client_with_buffers(&server.addr, Some(4096), None);
    Chatter::from(s)
}

/// CPU time a thread of this process has used so far, in nanoseconds:
/// the first field of /proc/self/task/TID/schedstat, or utime + stime from
/// /proc/self/task/TID/stat (clock ticks, see proc(5)) where schedstat is
/// missing.
pub fn thread_cpu_ns(tid: i32) -> u64 {
    let base = format!("/proc/self/task/{tid}");
    if let Ok(text) = std::fs::read_to_string(format!("{base}/schedstat"))
        && let Some(ns) = text.split_whitespace().next().and_then(|f| f.parse().ok())
    {
        return ns;
    }
    let stat = std::fs::read_to_string(format!("{base}/stat"))
        .unwrap_or_else(|e| panic!("read {base}/stat: {e}"));
    // Fields after the ")" that ends the command name: state is field 3,
    // utime field 14, stime field 15.
    let after = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no memory arguments.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    (fields[11] + fields[12]) * 1_000_000_000 / tick
}

/// Compare the server thread's CPU time with a thread that spins on
/// purpose (this one) over the same stretch of time: a loop that never
/// sleeps gets about the share of a CPU the spinner gets, whatever else the
/// machine is doing; a loop that sleeps in its wait gets next to none.
/// Returns (server ns, spinner ns, wall time).
pub fn cpu_beside_a_spinner(server_tid: i32) -> (u64, u64, Duration) {
    let me = nix::unistd::gettid().as_raw();
    let started = Instant::now();
    let (server0, me0) = (thread_cpu_ns(server_tid), thread_cpu_ns(me));
    loop {
        let spun = thread_cpu_ns(me) - me0;
        if spun >= 300_000_000 || started.elapsed() > Duration::from_secs(6) {
            return (thread_cpu_ns(server_tid) - server0, spun, started.elapsed());
        }
    }
}

// ---------------------------------------------------------------------------
// Many clients: nonblocking std streams driven by one poll loop.

/// fds at or above this are kept for the test's own clients, so the servers
/// in this process keep the fds below FD_SETSIZE. 0: not possible here.
pub fn high_fd_floor() -> usize {
    static FLOOR: Mutex<Option<usize>> = Mutex::new(None);
    let mut floor = FLOOR.lock().unwrap();
    *floor.get_or_insert_with(|| {
        let want = 4096;
        if raise_nofile(want) >= want {
            libc::FD_SETSIZE
        } else {
            0
        }
    })
}

/// Raise the soft RLIMIT_NOFILE to `want` if the hard limit allows;
/// returns the soft limit now. (Raw libc: the independent implementation.)
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit for the call to fill in.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) },
        0,
        "test scaffolding: getrlimit(RLIMIT_NOFILE) failed: {}",
        std::io::Error::last_os_error()
    );
    if lim.rlim_cur >= want {
        return lim.rlim_cur;
    }
    let new = libc::rlimit {
        rlim_cur: want.min(lim.rlim_max),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: new is a valid rlimit that outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
        new.rlim_cur
    } else {
        lim.rlim_cur
    }
}

pub struct Peer {
    pub s: TcpStream,
    pub local: String,
    pub buf: Vec<u8>,
    pub lines: Vec<String>,
    pub eof: bool,
}

pub struct Swarm {
    pub peers: Vec<Peer>,
}

impl Swarm {
    pub fn new() -> Swarm {
        Swarm { peers: Vec::new() }
    }

    /// Connect `n` more clients, `batch` at a time, each waiting for its
    /// first line (a welcome or a refusal) before the next batch.
    pub fn connect(&mut self, addr: SocketAddr, n: usize, batch: usize, deadline: Instant) {
        let floor = high_fd_floor();
        let mut made = 0;
        while made < n {
            let start = self.peers.len();
            let this = batch.min(n - made);
            for _ in 0..this {
                let s = TcpStream::connect_timeout(&addr, DEADLINE).unwrap();
                let s = if floor > 0 {
                    let raw =
                        nix::fcntl::fcntl(&s, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(floor as i32))
                            .unwrap();
                    // SAFETY: fcntl just returned this new fd; the OwnedFd is its only owner.
                    TcpStream::from(unsafe { OwnedFd::from_raw_fd(raw) })
                } else {
                    s
                };
                s.set_nonblocking(true).unwrap();
                let local = s.local_addr().unwrap().to_string();
                self.peers.push(Peer {
                    s,
                    local,
                    buf: Vec::new(),
                    lines: Vec::new(),
                    eof: false,
                });
            }
            made += this;
            self.pump(deadline, |sw| {
                sw.peers[start..]
                    .iter()
                    .all(|p| !p.lines.is_empty() || p.eof)
            });
        }
    }

    /// Read from every peer until `done` holds, at most until `deadline`.
    pub fn pump(&mut self, deadline: Instant, done: impl Fn(&Swarm) -> bool) {
        let mut chunk = vec![0u8; 65536];
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "swarm: the server did not answer in time");
            let live: Vec<usize> = (0..self.peers.len())
                .filter(|&i| !self.peers[i].eof)
                .collect();
            let ready: Vec<usize> = {
                let mut fds: Vec<PollFd> = live
                    .iter()
                    .map(|&i| PollFd::new(self.peers[i].s.as_fd(), PollFlags::POLLIN))
                    .collect();
                let ms = PollTimeout::try_from(left.as_millis().min(1000) as i32 + 1).unwrap();
                match poll(&mut fds, ms) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => panic!("poll: {e}"),
                }
                live.iter()
                    .zip(&fds)
                    .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
                    .map(|(&i, _)| i)
                    .collect()
            };
            for i in ready {
                let p = &mut self.peers[i];
                loop {
                    match p.s.read(&mut chunk) {
                        Ok(0) => {
                            p.eof = true;
                            break;
                        }
                        Ok(n) => p.buf.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                            p.eof = true;
                            break;
                        }
                        Err(e) => panic!("read from {}: {e}", p.local),
                    }
                }
                while let Some(end) = p.buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = p.buf.drain(..=end).collect();
                    p.lines
                        .push(String::from_utf8_lossy(&line[..end]).into_owned());
                }
            }
        }
    }

    pub fn send(&mut self, i: usize, text: &str) {
        let p = &mut self.peers[i];
        let mut rest = text.as_bytes();
        while !rest.is_empty() {
            match p.s.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted =>
                {
                    sockbook::kit::wait::wait_writable(&p.s, DEADLINE).unwrap();
                }
                Err(e) => panic!("write to {}: {e}", p.local),
            }
        }
    }

    pub fn served(&self) -> Vec<usize> {
        (0..self.peers.len())
            .filter(|&i| {
                self.peers[i]
                    .lines
                    .first()
                    .is_some_and(|l| l.starts_with("* welcome "))
            })
            .collect()
    }

    /// `senders` each say one line; every other served peer must receive
    /// exactly those lines (after its welcome), with the right prefixes.
    pub fn broadcast_check(&mut self, served: &[usize], senders: &[usize], deadline: Instant) {
        for &i in senders {
            let text = format!("hello from {i}\n");
            self.send(i, &text);
        }
        let expect = |me: usize, sw: &Swarm| -> BTreeSet<String> {
            senders
                .iter()
                .filter(|&&s| s != me)
                .map(|&s| format!("{}: hello from {s}", sw.peers[s].local))
                .collect()
        };
        let counts: Vec<(usize, usize)> = served
            .iter()
            .map(|&i| (i, 1 + senders.iter().filter(|&&s| s != i).count()))
            .collect();
        self.pump(deadline, |sw| {
            counts
                .iter()
                .all(|&(i, want)| sw.peers[i].lines.len() >= want)
        });
        for &i in served {
            let got: BTreeSet<String> = self.peers[i].lines[1..].iter().cloned().collect();
            assert_eq!(
                got.len(),
                self.peers[i].lines.len() - 1,
                "peer {i} got a line twice"
            );
            assert_eq!(
                got,
                expect(i, self),
                "peer {i} ({}) got the wrong lines",
                self.peers[i].local
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 1,000 and more clients: the server binary in its own process, so its fd
// numbers are its own.

/// A `ch04_select server` child (a `ServerProcess`: killed when dropped,
/// and when this test process dies) and what these tests look at in it.
pub struct Child {
    pub server: ServerProcess,
    pub addr: SocketAddr,
}

impl Child {
    /// Start `bin` (the test's `env!("CARGO_BIN_EXE_…")`) with `args`.
    pub fn start(bin: &str, args: &[&str]) -> Child {
        let server = ServerProcess::start(bin, args, DEADLINE);
        let addr = std_addr(&server.addr);
        Child { server, addr }
    }

    /// The child's open socket fds, by number, from /proc.
    /// Only the sockets on the server's port (the listener and its
    /// clients): a socket another test of this process left inheritable
    /// may sit in the child too, and is none of its doing.
    pub fn socket_fds(&self) -> Vec<usize> {
        let ours = tcp_inodes_with_local_port(self.addr.port());
        let mut fds: Vec<usize> = std::fs::read_dir(format!("/proc/{}/fd", self.server.pid))
            .unwrap()
            .filter_map(|e| {
                let e = e.ok()?;
                let target = std::fs::read_link(e.path()).ok()?;
                let inode: u64 = target
                    .to_string_lossy()
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse()
                    .ok()?;
                if !ours.contains(&inode) {
                    return None;
                }
                e.file_name().to_string_lossy().parse().ok()
            })
            .collect();
        fds.sort_unstable();
        fds
    }

    pub fn fd_count_below(&self, limit: usize) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.server.pid))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_string_lossy().parse::<usize>().ok())
            .filter(|&fd| fd < limit)
            .count()
    }

    /// After every client has gone: connect probes until one is welcomed
    /// as the only client online (each waits on its own welcome line), then
    /// check in /proc that the server holds just the listener and the probe.
    pub fn check_all_closed(&self, deadline: Instant) {
        loop {
            assert!(
                Instant::now() < deadline,
                "the server never got down to one client"
            );
            let probe = TcpStream::connect_timeout(&self.addr, DEADLINE).unwrap();
            probe.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut welcome = String::new();
            std::io::BufReader::new(&probe)
                .read_line(&mut welcome)
                .unwrap();
            if welcome.trim_end().ends_with(", 1 online") {
                let sockets = self.socket_fds();
                assert_eq!(
                    sockets.len(),
                    2,
                    "listener + probe, but the server holds {sockets:?}"
                );
                return;
            }
        }
    }

    /// SIGTERM, then the exit status and everything it printed.
    pub fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        self.server.signal(libc::SIGTERM);
        self.server.wait_exit(DEADLINE)
    }
}

/// How many clients this process can hold above FD_SETSIZE: `clients`,
/// or, where RLIMIT_NOFILE cannot be raised that far, a smaller crowd (the
/// test then checks what it can and prints why it skipped the rest).
pub fn crowd(clients: usize) -> usize {
    let floor = high_fd_floor();
    let soft = raise_nofile(4096) as usize;
    if floor > 0 && soft >= floor + clients + 64 {
        return clients;
    }
    let fallback = 200;
    println!(
        "SKIPPED the {clients}-client part: it needs RLIMIT_NOFILE >= {}, and the hard limit \
         allows only {soft} (raise it with `ulimit -Hn` or limits.conf); checking {fallback} clients",
        libc::FD_SETSIZE + clients + 64
    );
    fallback
}

/// A server child (`bin` with `args`, a loop with no `FD_SETSIZE` wall)
/// serves `clients` at once (fewer where `RLIMIT_NOFILE` cannot be raised:
/// see [`crowd`]): every one welcomed, fds past `FD_SETSIZE` in use, lines
/// broadcast, every socket closed after, nobody refused.
pub fn child_serves_many(kind: Kind, bin: &str, args: &[&str], clients: usize) {
    let clients = crowd(clients);
    let server = Child::start(bin, args);
    let deadline = Instant::now() + Duration::from_secs(14);
    let mut swarm = Swarm::new();
    swarm.connect(server.addr, clients, 100, deadline);
    let served = swarm.served();
    assert_eq!(
        served.len(),
        clients,
        "{kind:?} must serve them all: no FD_SETSIZE wall"
    );
    let sockets = server.socket_fds();
    assert_eq!(sockets.len(), clients + 1, "listener + clients");
    if clients > libc::FD_SETSIZE {
        assert!(
            sockets.iter().any(|&fd| fd >= libc::FD_SETSIZE),
            "expected fds past FD_SETSIZE"
        );
    }
    let mut senders: Vec<usize> = served.iter().copied().step_by(75).collect();
    senders.extend(served.iter().rev().take(10));
    senders.sort_unstable();
    senders.dedup();
    swarm.broadcast_check(&served, &senders, deadline);
    drop(swarm);
    server.check_all_closed(deadline);
    let (status, log) = server.terminate();
    assert!(status.success(), "server exit: {status}");
    assert!(
        !log.iter().any(|l| l.contains("] refused ")),
        "{kind:?} refused someone: {:?}",
        log.iter().find(|l| l.contains("] refused "))
    );
}
