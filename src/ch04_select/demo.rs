//! The narrated demo (`cargo run --bin ch04_select`): every part runs on
//! loopback, every wait is bounded, and it exits by itself.

use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::sys::select::{FdSet, select};
use nix::sys::socket::{self, SockaddrStorage, sockopt};
use nix::sys::stat::Mode;
use nix::sys::time::{TimeVal, TimeValLike};
use nix::unistd;

use super::chat::{Config, Event, Stats, Why};
use super::{cli, fdlimit, naive, serve_poll, serve_select, str_cli};
use crate::kit::error::errno_text;
use crate::kit::io::{LineReader, writen};
use crate::kit::narrate::{heading, note};
use crate::kit::{Call, Error, Result, net, wait};
use crate::say;

/// How long the demo waits for anything that should happen at once.
const PROMPT: Duration = Duration::from_secs(3);
/// Lines of 1000 bytes alice sends in one write while the non-reader sits.
const ROUND: usize = 64;
/// How long the demo gives the naive server before calling it stuck.
const PATIENCE: Duration = Duration::from_secs(1);

/// Run the whole demo.
pub fn run() -> Result<()> {
    crate::say!(
        "",
        "Chapter 4: one thread, many sockets: select(2) and poll(2). (`cargo run --bin ch04_select -- --help` for more)"
    );
    heading("select(2): fd sets, nfds, and a timeout that Linux rewrites");
    let (listener, addr) = net::tcp_listen("demo", &any_port()?, 16)?;
    select_timeout(&listener)?;
    heading("what \"readable\" means");
    readable_meanings(&listener, &addr)?;
    drop(listener);
    heading("a naive select server, and a client that sends half a line");
    naive_gets_stuck()?;
    heading("the fixed server: a buffer per client, in and out");
    fixed_server()?;
    heading("the FD_SETSIZE wall, and poll(2) which has none");
    fd_setsize_wall()?;
    heading("the select client: shutdown(SHUT_WR) when the input ends");
    client_half_close()?;
    super::acceptrace::demo()?;
    note("done: every server stopped, every fd closed");
    Ok(())
}

fn any_port() -> Result<SockaddrStorage> {
    crate::kit::addr::parse("127.0.0.1:0")
}

/// The timeout: wait 200 ms on a listener nobody connects to, with the raw
/// libc calls, and print what select left in the `timeval`; then a wait
/// that ends early, with nix.
fn select_timeout(listener: &OwnedFd) -> Result<()> {
    let (soft, hard) = fdlimit::nofile()?;
    note(format_args!(
        "FD_SETSIZE = {} (an fd_set is {} bytes: one bit per fd); RLIMIT_NOFILE soft {soft}, hard {hard}",
        libc::FD_SETSIZE,
        size_of::<libc::fd_set>()
    ));
    let lfd = listener.as_raw_fd();
    let (n, left, took) = raw_select_read(lfd, 200_000)?;
    say!(
        "demo",
        "select({}, {{{lfd}}}, NULL, NULL, {{0, 200000}}) = {n} after {} ms; timeval now {{{}, {}}}",
        lfd + 1,
        took.as_millis(),
        left.tv_sec,
        left.tv_usec
    );
    note("nfds is the highest fd plus one: the kernel looks at bits 0..nfds-1 only");
    note(
        "nobody connected: select returned 0 (timeout), and Linux wrote the time left (none) back",
    );
    let client = net::tcp_connect("client", &net::local_addr(listener)?)?;
    let mut read = FdSet::new();
    read.insert(listener.as_fd());
    let mut tv = TimeVal::seconds(2);
    let start = Instant::now();
    let n = select(None, &mut read, None, None, &mut tv).call("select")?;
    say!(
        "demo",
        "select({}, {{{lfd}}}, NULL, NULL, {{2, 0}}) = {n} after {} us; timeval now {{{}, {}}}",
        lfd + 1,
        start.elapsed().as_micros(),
        tv.tv_sec(),
        tv.tv_usec()
    );
    note(format_args!(
        "a connection is waiting, so select returned at once, and the timeval holds the {:.6} s it did not use:",
        tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6
    ));
    note(
        "re-initialise it before every call (POSIX leaves it unspecified, other systems leave it alone)",
    );
    drop(client);
    // Leave the listener's queue empty for the next part.
    let (conn, _) = net::accept("demo", listener)?;
    drop(conn);
    Ok(())
}

/// `select(fd + 1, {fd}, NULL, NULL, {0, usec})` with the raw libc calls:
/// the return value, the `timeval` as select left it, and the time it took.
pub fn raw_select_read(fd: RawFd, usec: i64) -> Result<(i32, libc::timeval, Duration)> {
    if super::fd_beyond_select(fd) {
        return Err(Error::msg(format!("fd {fd} >= FD_SETSIZE")));
    }
    // SAFETY: fd_set is an array of integers; all-zero is a valid (empty) set.
    let mut set: libc::fd_set = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid fd_set and fd < FD_SETSIZE (checked above),
    // so FD_SET stays inside it.
    unsafe { libc::FD_SET(fd, &mut set) };
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: usec,
    };
    let start = Instant::now();
    // SAFETY: `set` and `tv` are valid for the call and written only within
    // their size (nfds = fd + 1 <= FD_SETSIZE); the other sets are NULL.
    let n = unsafe {
        libc::select(
            fd + 1,
            &mut set,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut tv,
        )
    };
    if n == -1 {
        return Err(Error::last_os(format!("select({}, {{{fd}}})", fd + 1)));
    }
    Ok((n, tv, start.elapsed()))
}

/// Which of `read`/`write` select reports for `fd`, waiting at most 2 s.
fn ready(fd: BorrowedFd<'_>) -> Result<(bool, bool)> {
    let mut read = FdSet::new();
    let mut write = FdSet::new();
    read.insert(fd);
    write.insert(fd);
    let mut tv = TimeVal::seconds(2);
    select(None, &mut read, &mut write, None, &mut tv).call("select")?;
    Ok((read.contains(fd), write.contains(fd)))
}

fn show_ready(fd: BorrowedFd<'_>) -> Result<(bool, bool)> {
    let (r, w) = ready(fd)?;
    let raw = fd.as_raw_fd();
    say!(
        "demo",
        "select(readfds {{{raw}}}, writefds {{{raw}}}) -> readable {r}, writable {w}"
    );
    Ok((r, w))
}

/// The four things "readable" can mean, each shown on a real socket.
fn readable_meanings(listener: &OwnedFd, addr: &SockaddrStorage) -> Result<()> {
    note("1. a listening socket is readable when a connection waits: accept will not block");
    let client = net::tcp_connect("client", addr)?;
    show_ready(listener.as_fd())?;
    let (conn, _) = net::accept("demo", listener)?;

    note("2. a connection is readable when data waits: read returns it");
    writen(&client, b"hi\n")?;
    show_ready(conn.as_fd())?;
    let mut buf = [0u8; 64];
    let n = unistd::read(&conn, &mut buf).call("read")?;
    say!(
        "demo",
        "read({}) = {n} {:?}",
        conn.as_raw_fd(),
        String::from_utf8_lossy(&buf[..n])
    );

    note("3. a connection is readable at EOF: read returns 0, and will again every time");
    socket::shutdown(client.as_raw_fd(), socket::Shutdown::Write).call("shutdown(SHUT_WR)")?;
    say!("client", "shutdown({}, SHUT_WR) = 0", client.as_raw_fd());
    show_ready(conn.as_fd())?;
    let n = unistd::read(&conn, &mut buf).call("read")?;
    say!("demo", "read({}) = {n}  (EOF)", conn.as_raw_fd());
    drop(client);
    drop(conn);

    note("4. a connection is readable (and writable) when an error is pending: the peer reset it");
    let client = net::tcp_connect("client", addr)?;
    let (conn, _) = net::accept("demo", listener)?;
    let abort = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    socket::setsockopt(&client, sockopt::Linger, &abort).call("setsockopt(SO_LINGER)")?;
    say!(
        "client",
        "setsockopt({}, SOL_SOCKET, SO_LINGER, {{1, 0}}) = 0; close({}) sends RST",
        client.as_raw_fd(),
        client.as_raw_fd()
    );
    drop(client);
    show_ready(conn.as_fd())?;
    let pending = socket::getsockopt(&conn, sockopt::SocketError).call("getsockopt(SO_ERROR)")?;
    say!(
        "demo",
        "getsockopt({}, SOL_SOCKET, SO_ERROR) = {} (reading it clears it)",
        conn.as_raw_fd(),
        errno_text(Errno::from_raw(pending))
    );
    show_read(&conn)?;
    note("the same again, but read first: read itself reports the pending error");
    let client = net::tcp_connect("client", addr)?;
    let (conn, _) = net::accept("demo", listener)?;
    socket::setsockopt(&client, sockopt::Linger, &abort).call("setsockopt(SO_LINGER)")?;
    say!(
        "client",
        "setsockopt({}, SO_LINGER, {{1, 0}}); close({}) sends RST",
        client.as_raw_fd(),
        client.as_raw_fd()
    );
    drop(client);
    show_ready(conn.as_fd())?;
    show_read(&conn)?;
    note(
        "so after select says \"readable\", read may return data, 0, or -1 with an error: handle all three",
    );
    Ok(())
}

/// A server running on its own thread, stopped by closing a pipe.
struct Running {
    stop: OwnedFd,
    done: Receiver<Result<Stats>>,
}

impl Running {
    fn start(
        name: &str,
        run: impl FnOnce(OwnedFd, OwnedFd) -> Result<Stats> + Send + 'static,
        listener: OwnedFd,
    ) -> Result<Running> {
        let (stop_r, stop_w) = unistd::pipe().call("pipe")?;
        let (tx, done) = mpsc::channel();
        thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let _ = tx.send(run(listener, stop_r));
            })
            .map_err(|e| Error::msg(format!("spawn {name}: {e}")))?;
        Ok(Running { stop: stop_w, done })
    }

    /// Close the pipe's write end (the server's stop fd reads EOF) and wait
    /// for the server to return.
    fn stop(self) -> Result<Stats> {
        drop(self.stop);
        self.done
            .recv_timeout(PROMPT)
            .map_err(|_| Error::msg("the server did not stop in time"))?
    }
}

/// A demo client: its socket, a line reader, and a name.
struct Peer {
    name: &'static str,
    fd: OwnedFd,
    lines: LineReader,
}

impl Peer {
    fn connect(name: &'static str, addr: &SockaddrStorage) -> Result<Peer> {
        Ok(Peer {
            name,
            fd: net::tcp_connect(name, addr)?,
            lines: LineReader::new(),
        })
    }

    /// Connect with a small receive buffer (set before connect, so the
    /// window the kernel offers starts small).
    fn connect_small(name: &'static str, addr: &SockaddrStorage, rcvbuf: usize) -> Result<Peer> {
        let fd = net::tcp_socket(name, nix::sys::socket::AddressFamily::Inet)?;
        socket::setsockopt(&fd, sockopt::RcvBuf, &rcvbuf).call("setsockopt(SO_RCVBUF)")?;
        let got = socket::getsockopt(&fd, sockopt::RcvBuf).call("getsockopt(SO_RCVBUF)")?;
        say!(
            name,
            "setsockopt({}, SO_RCVBUF, {rcvbuf}) = 0; reads back {got}",
            fd.as_raw_fd()
        );
        socket::connect(fd.as_raw_fd(), addr).call(format!("connect({addr})"))?;
        say!(name, "connect({}, {addr}) = 0", fd.as_raw_fd());
        Ok(Peer {
            name,
            fd,
            lines: LineReader::new(),
        })
    }

    fn send(&self, text: &str) -> Result<()> {
        writen(&self.fd, text.as_bytes())?;
        say!(self.name, "write({}, {text:?})", self.fd.as_raw_fd());
        Ok(())
    }

    /// The next line, waiting at most `timeout`; `None` if none came.
    fn line_within(&mut self, timeout: Duration) -> Result<Option<String>> {
        match wait::read_line_within(&self.fd, &mut self.lines, 1 << 20, timeout) {
            Ok(Some(line)) => Ok(Some(String::from_utf8_lossy(&line).trim_end().to_string())),
            Ok(None) => Err(Error::msg(format!("{}: EOF", self.name))),
            Err(e) if e.errno() == Some(Errno::ETIMEDOUT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn expect_line(&mut self) -> Result<String> {
        let line = self
            .line_within(PROMPT)?
            .ok_or_else(|| Error::msg(format!("{}: no line within {PROMPT:?}", self.name)))?;
        say!(self.name, "read line {line:?}");
        Ok(line)
    }
}

/// The naive server blocks in `read` on the staller's half line; bob hears
/// nothing until the staller finishes.
fn naive_gets_stuck() -> Result<()> {
    let (listener, addr) = net::tcp_listen("naive", &any_port()?, 16)?;
    let server = Running::start(
        "naive",
        |l, stop| naive::serve_naive(l, stop).map(|()| Stats::default()),
        listener,
    )?;
    // The staller connects first: its fd is the lowest, so the server
    // looks at it first whenever several clients are readable.
    let mut staller = Peer::connect("staller", &addr)?;
    staller.expect_line()?;
    let mut alice = Peer::connect("alice", &addr)?;
    alice.expect_line()?;
    let mut bob = Peer::connect("bob", &addr)?;
    bob.expect_line()?;
    staller.send("half a li")?;
    alice.send("hello from alice\n")?;
    let start = Instant::now();
    match bob.line_within(PATIENCE)? {
        None => note(format_args!(
            "bob heard nothing for {} ms: the server is blocked inside read() on the staller's socket, waiting for a '\\n'",
            start.elapsed().as_millis()
        )),
        Some(line) => note(format_args!(
            "bob got {line:?} (the server was not stuck this time)"
        )),
    }
    staller.send("ne\n")?;
    let first = bob.expect_line()?;
    let second = bob.expect_line()?;
    note(format_args!(
        "the staller finished its line; only then did the server move on: {first:?}, then alice's {second:?}, {} ms late",
        start.elapsed().as_millis()
    ));
    drop((staller, alice, bob));
    server.stop()?;
    note(
        "one client with half a line stopped everyone: \"readable\" promised one byte, not a line",
    );
    Ok(())
}

/// Wait for the first event matching `want`, at most `timeout`.
fn wait_event(
    events: &Receiver<Event>,
    timeout: Duration,
    want: impl Fn(&Event) -> bool,
) -> Result<Event> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(e) if want(&e) => return Ok(e),
            Ok(_) => continue,
            Err(_) => return Err(Error::msg("expected server event did not come in time")),
        }
    }
}

fn local(peer: &Peer) -> Result<String> {
    Ok(net::local_addr(&peer.fd)?.to_string())
}

/// The fixed select server: the staller blocks nobody, the non-reader is
/// dropped when its output buffer fills, everyone else is served.
fn fixed_server() -> Result<()> {
    let (listener, addr) = net::tcp_listen("server", &any_port()?, 16)?;
    let (tx, events) = mpsc::channel();
    let config = Config {
        out_limit: 16 * 1024,
        events: Some(tx),
        ..Config::default()
    };
    note(format_args!(
        "same clients, the select server from this chapter: nonblocking sockets, an input buffer per client, output buffers of at most {} bytes",
        config.out_limit
    ));
    let server = Running::start("select", move |l, s| serve_select(l, s, config), listener)?;
    let joined = |events: &Receiver<Event>| {
        wait_event(events, PROMPT, |e| matches!(e, Event::Joined { .. }))
    };
    let mut staller = Peer::connect("staller", &addr)?;
    joined(&events)?;
    staller.expect_line()?;
    let mut alice = Peer::connect("alice", &addr)?;
    joined(&events)?;
    alice.expect_line()?;
    let mut bob = Peer::connect("bob", &addr)?;
    joined(&events)?;
    bob.expect_line()?;

    staller.send("half a li")?;
    alice.send("hello from alice\n")?;
    let start = Instant::now();
    bob.expect_line()?;
    note(format_args!(
        "bob got alice's line {} us later; the staller's 9 bytes wait in its input buffer",
        start.elapsed().as_micros()
    ));
    staller.send("ne\n")?;
    alice.expect_line()?;
    bob.expect_line()?;
    note("the staller finished: its line went out whole, once; it reads alice's line and leaves");
    staller.expect_line()?;
    drop(staller);
    wait_event(&events, PROMPT, |e| matches!(e, Event::Left { .. }))?;

    note("now a client that never reads, with a small receive buffer");
    let nonreader = Peer::connect_small("nonreader", &addr, 4096)?;
    let nonreader_addr = local(&nonreader)?;
    joined(&events)?;
    let line = format!("{}\n", "x".repeat(1000));
    let round = line.repeat(ROUND);
    let mut sent = 0usize;
    let dropped = loop {
        writen(&alice.fd, round.as_bytes())?;
        sent += round.len();
        for _ in 0..ROUND {
            bob.line_within(PROMPT)?
                .ok_or_else(|| Error::msg("bob: a flood line did not arrive"))?;
        }
        let mut dropped = None;
        while let Ok(event) = events.try_recv() {
            if let Event::Left { peer, why, .. } = event
                && peer == nonreader_addr
            {
                dropped = Some((peer, why));
            }
        }
        if let Some(dropped) = dropped {
            break dropped;
        }
        if sent > 16 << 20 {
            return Err(Error::msg("the non-reader was never dropped"));
        }
    };
    say!(
        "alice",
        "wrote {} lines of 1000 bytes; bob read every one of them",
        sent / line.len()
    );
    note(format_args!(
        "after {} KB the server dropped {}: {}",
        sent / 1024,
        dropped.0,
        dropped.1
    ));
    let wmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").unwrap_or_default();
    note(format_args!(
        "the kernel's buffers filled first: the non-reader's receive buffer, then the server's send buffer, which grows up to the last of tcp_wmem ({}); then the server's own",
        wmem.trim().replace('\t', " ")
    ));
    alice.send("still there, bob?\n")?;
    bob.expect_line()?;
    drop(nonreader);
    let stats = server.stop()?;
    cli::report(&stats);
    if !matches!(dropped.1, Why::OutputFull { .. }) {
        return Err(Error::msg("the non-reader was dropped for another reason"));
    }
    Ok(())
}

/// Occupy every free fd below `below`, so the next fd the kernel hands out
/// is `below` or more. Returns the fillers (closing them frees the fds).
fn fill_fds_below(below: usize) -> Result<Vec<OwnedFd>> {
    let null = open(
        "/dev/null",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .call("open(/dev/null)")?;
    let mut fillers = Vec::new();
    loop {
        let raw = fcntl(&null, FcntlArg::F_DUPFD_CLOEXEC(0)).call("fcntl(F_DUPFD_CLOEXEC)")?;
        // SAFETY: fcntl just returned this new fd; the OwnedFd is its only owner.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if raw as usize >= below {
            break; // dropped: that one was above the line already
        }
        fillers.push(fd);
    }
    fillers.push(null);
    Ok(fillers)
}

/// Push the server's next fd past FD_SETSIZE: the select server refuses
/// the connection cleanly, the poll server serves it.
fn fd_setsize_wall() -> Result<()> {
    let setsize = libc::FD_SETSIZE;
    let want = setsize as u64 + 64;
    let soft = fdlimit::raise_nofile(want)?;
    if soft < want {
        note(format_args!(
            "skipped: the fd limit (RLIMIT_NOFILE hard limit) is {soft}, and this part needs {want} fds"
        ));
        return Ok(());
    }
    say!("demo", "setrlimit(RLIMIT_NOFILE) soft limit now {soft}");
    let (listener, addr) = net::tcp_listen("server", &any_port()?, 16)?;
    let (tx, events) = mpsc::channel();
    let config = Config {
        events: Some(tx),
        ..Config::default()
    };
    let select_server = Running::start("select", move |l, s| serve_select(l, s, config), listener)?;

    let fillers = fill_fds_below(setsize)?;
    say!(
        "demo",
        "dup'ed /dev/null {} times: every fd below {setsize} is taken, the next one is {setsize} or more",
        fillers.len()
    );
    let mut late = Peer::connect("late", &addr)?;
    let refused = wait_event(&events, PROMPT, |e| matches!(e, Event::Refused { .. }))?;
    let line = late.expect_line()?;
    match late.line_within(PROMPT) {
        Err(_) => say!("late", "read = 0 (EOF): the server closed it"),
        Ok(other) => say!("late", "unexpected: {other:?}"),
    }
    if let Event::Refused { fd, .. } = refused {
        note(format_args!(
            "accept gave the server fd {fd}; FD_SET({fd}) would write past the end of the {}-byte fd_set, so it refused: {line:?}",
            size_of::<libc::fd_set>()
        ));
    }

    note("the same chat on poll(2): an array of pollfd, any fd number");
    let (listener, paddr) = net::tcp_listen("server", &any_port()?, 16)?;
    let (ptx, pevents) = mpsc::channel();
    let pconfig = Config {
        events: Some(ptx),
        ..Config::default()
    };
    let poll_server = Running::start("poll", move |l, s| serve_poll(l, s, pconfig), listener)?;
    let mut carol = Peer::connect("carol", &paddr)?;
    let joined = wait_event(&pevents, PROMPT, |e| matches!(e, Event::Joined { .. }))?;
    carol.expect_line()?;
    let mut dave = Peer::connect("dave", &paddr)?;
    wait_event(&pevents, PROMPT, |e| matches!(e, Event::Joined { .. }))?;
    dave.expect_line()?;
    carol.send("hello from way up here\n")?;
    dave.expect_line()?;
    if let Event::Joined { fd, .. } = joined {
        note(format_args!(
            "poll served carol on fd {fd}, past FD_SETSIZE"
        ));
    }
    drop((carol, dave, late));
    cli::report(&poll_server.stop()?);
    drop(fillers);
    cli::report(&select_server.stop()?);
    Ok(())
}

/// str_cli against a peer that answers only after it reads EOF: every
/// reply arrives after the client's shutdown(SHUT_WR).
fn client_half_close() -> Result<()> {
    let (listener, addr) = net::tcp_listen("peer", &any_port()?, 16)?;
    let (ptx, peer_done) = mpsc::channel();
    thread::Builder::new()
        .name("batch-peer".into())
        .spawn(move || {
            let _ = ptx.send(batch_peer(listener));
        })
        .map_err(|e| Error::msg(format!("spawn: {e}")))?;
    note(
        "the peer reads until EOF, then sends everything back: no reply can come before the client's shutdown",
    );

    let lines = 2000;
    let input: Vec<u8> = (1..=lines)
        .flat_map(|i| format!("line {i} of {lines}\n").into_bytes())
        .collect();
    let (in_r, in_w) = unistd::pipe().call("pipe")?;
    let (out_r, out_w) = unistd::pipe().call("pipe")?;
    let feed = {
        let input = input.clone();
        thread::spawn(move || writen(&in_w, &input)) // in_w closes here: EOF
    };
    let (otx, output) = mpsc::channel();
    thread::spawn(move || {
        let _ = otx.send(wait::read_to_end_within(&out_r, 1 << 24, PROMPT));
    });
    let sock = net::tcp_connect("client", &addr)?;
    say!(
        "client",
        "str_cli(input pipe {}, socket {}, output pipe {}): select on input and socket",
        in_r.as_raw_fd(),
        sock.as_raw_fd(),
        out_w.as_raw_fd()
    );
    let copied = str_cli(in_r.as_fd(), sock.as_fd(), out_w.as_fd())?;
    drop(out_w);
    feed.join()
        .map_err(|_| Error::msg("the input feeder panicked"))??;
    let echoed = output
        .recv_timeout(PROMPT)
        .map_err(|_| Error::msg("the output reader did not finish"))??;
    let peer_saw = peer_done
        .recv_timeout(PROMPT)
        .map_err(|_| Error::msg("the peer did not finish"))??;
    say!(
        "client",
        "input ended -> shutdown({}, SHUT_WR); then read until the peer closed: sent {} bytes, received {}",
        sock.as_raw_fd(),
        copied.sent,
        copied.received
    );
    note(format_args!(
        "{} lines in, {} lines back, identical: {}; the peer read {} bytes before EOF",
        lines,
        echoed.iter().filter(|&&b| b == b'\n').count(),
        echoed == input,
        peer_saw
    ));
    if echoed != input {
        return Err(Error::msg("the replies did not match the input"));
    }
    note(
        "had the client closed the socket (or returned) at the end of its input, every reply would have been lost",
    );
    Ok(())
}

/// Accept one connection, read it to EOF, send it all back, close.
fn batch_peer(listener: OwnedFd) -> Result<usize> {
    let (conn, _) = net::accept("peer", &listener)?;
    let all = wait::read_to_end_within(&conn, 1 << 24, PROMPT)?;
    say!(
        "peer",
        "read {} bytes, then EOF; sending them all back",
        all.len()
    );
    writen(&conn, &all)?;
    Ok(all.len())
}

/// One `read` on `conn`, narrated whatever it returns.
fn show_read(conn: &OwnedFd) -> Result<()> {
    let mut buf = [0u8; 64];
    match unistd::read(conn, &mut buf) {
        Ok(n) => say!("demo", "read({}) = {n}", conn.as_raw_fd()),
        Err(e) => say!("demo", "read({}) = -1 {}", conn.as_raw_fd(), errno_text(e)),
    }
    Ok(())
}
