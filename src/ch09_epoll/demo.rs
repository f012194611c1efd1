//! The narrated demo: every part of the chapter on loopback, each also a
//! subcommand (`ch09_epoll epoll`, …).

use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{self, MsgFlags, Shutdown, SockFlag};

use super::probe;
use super::timer::Timer;
use super::{Config, connect_within, serve_et, serve_idle, serve_lt};
use crate::ch07_threads::spawn::ServerChild;
use crate::kit::args::Args;
use crate::kit::error::errno_text;
use crate::kit::narrate::{heading, note};
use crate::kit::stop::Stop;
use crate::kit::{Call, Error, Result, addr, net, wait};
use crate::say;

/// One part of the demo.
pub type Part = fn() -> Result<()>;

/// The parts, by subcommand name, in the order the demo runs them.
pub const PARTS: &[(&str, Part)] = &[
    ("nonblock", nonblock),
    ("connect", connect),
    ("epoll", epoll_basics),
    ("oneshot", oneshot_rdhup),
    ("herd", herd),
    ("emfile", emfile),
    ("fds", fds_in_one_loop),
    ("echo", echo_servers),
];

/// No arguments: every part, then a pointer to `c10k`.
pub fn run() -> Result<()> {
    say!(
        "",
        "Chapter 9: nonblocking I/O and epoll. (`cargo run --bin ch09_epoll -- --help` for more)"
    );
    note("every part runs on 127.0.0.1");
    for (_, part) in PARTS {
        part()?;
    }
    // A small C10K: two sizes, short runs. `ch09_epoll c10k` goes to 10,000.
    super::c10k::run(&[100, 2000], 16, Duration::from_millis(300))?;
    heading("done");
    note("the full C10K measurement, up to 10,000 idle connections: `ch09_epoll c10k`");
    note(
        "Try: `ch09_epoll server --design et` and `strace -f -e trace=epoll_wait,epoll_ctl,accept4 -p PID`",
    );
    Ok(())
}

fn loopback() -> Result<nix::sys::socket::SockaddrStorage> {
    addr::parse("127.0.0.1:0")
}

/// A connected pair over loopback: (client, server side), both blocking.
fn tcp_pair() -> Result<(OwnedFd, OwnedFd)> {
    let (listener, at) = net::tcp_listen("", &loopback()?, 4)?;
    let client = net::tcp_connect("", &at)?;
    let (server, _) = net::accept("", &listener)?;
    Ok((client, server))
}

/// Quietly: a pair without narration.
fn quiet_pair() -> Result<(OwnedFd, OwnedFd)> {
    let was = crate::kit::narrate::is_quiet();
    crate::kit::narrate::set_quiet(true);
    let pair = tcp_pair();
    crate::kit::narrate::set_quiet(was);
    pair
}

fn send_all(fd: impl AsFd, bytes: &[u8]) -> Result<()> {
    crate::kit::io::writen(fd, bytes)
}

/// Bytes waiting to be read on `fd`: `ioctl(fd, FIONREAD, &n)`.
fn unread(fd: BorrowedFd<'_>) -> Result<i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the pointer, which is ours.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) } == -1 {
        return Err(Error::last_os(format!(
            "ioctl({}, FIONREAD)",
            fd.as_raw_fd()
        )));
    }
    Ok(n)
}

/// `epoll_wait` once, `ms` at most; the events it returned.
fn wait_events(epoll: &Epoll, ms: u16) -> Result<Vec<EpollEvent>> {
    let mut events = [EpollEvent::empty(); 16];
    loop {
        match epoll.wait(&mut events, EpollTimeout::from(ms)) {
            Ok(n) => return Ok(events[..n].to_vec()),
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(Error::sys("epoll_wait", errno)),
        }
    }
}

fn show(events: &[EpollEvent]) -> String {
    let parts: Vec<String> = events
        .iter()
        .map(|e| format!("{{token {}, {:?}}}", e.data(), e.events()))
        .collect();
    format!("{} [{}]", events.len(), parts.join(", "))
}

/// Part 1: O_NONBLOCK and EAGAIN.
pub fn nonblock() -> Result<()> {
    heading("O_NONBLOCK: calls that would wait return EAGAIN instead");
    let (listener, at) = net::tcp_listen("server", &loopback()?, 16)?;
    net::set_nonblocking(&listener, true)?;
    let lfd = listener.as_raw_fd();
    say!("server", "fcntl({lfd}, F_SETFL, O_NONBLOCK) = 0");
    match socket::accept4(lfd, SockFlag::SOCK_CLOEXEC) {
        Err(errno) => say!(
            "server",
            "accept4({lfd}) = -1 {}: nobody waits; a blocking accept would sleep here",
            errno_text(errno)
        ),
        Ok(raw) => {
            // SAFETY: accept4 returned a new fd we own.
            drop(unsafe { OwnedFd::from_raw_fd(raw) });
        }
    }
    let client = net::tcp_connect("client", &at)?;
    wait::wait_readable(&listener, Duration::from_secs(5))?;
    let (server, _) = net::accept("server", &listener)?;
    net::set_nonblocking(&server, true)?;
    let sfd = server.as_raw_fd();
    let mut buf = [0u8; 64];
    match socket::recv(sfd, &mut buf, MsgFlags::empty()) {
        Err(errno) => say!(
            "server",
            "recv({sfd}) = -1 {}: no data yet (not an error: try later)",
            errno_text(errno)
        ),
        Ok(n) => say!("server", "recv({sfd}) = {n}"),
    }
    send_all(&client, b"hello")?;
    wait::wait_readable(&server, Duration::from_secs(5))?;
    let n = socket::recv(sfd, &mut buf, MsgFlags::empty()).call(format!("recv({sfd})"))?;
    say!(
        "server",
        "recv({sfd}) = {n} {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Fill the pipe: the client writes, nobody reads.
    net::set_nonblocking(&client, true)?;
    let cfd = client.as_raw_fd();
    let chunk = vec![b'x'; 64 * 1024];
    let mut total = 0usize;
    let errno = loop {
        match socket::send(cfd, &chunk, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => total += n,
            Err(Errno::EINTR) => continue,
            Err(errno) => break errno,
        }
    };
    say!(
        "client",
        "send({cfd}, 64 KiB) again and again: {total} bytes taken, then -1 {}",
        errno_text(errno)
    );
    let wmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").unwrap_or_default();
    let rmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_rmem").unwrap_or_default();
    note(format!(
        "the client's send buffer and the server's receive buffer are full (tcp_wmem {}, tcp_rmem {} from /proc/sys/net/ipv4)",
        wmem.trim(),
        rmem.trim()
    ));
    note("EAGAIN (= EWOULDBLOCK on Linux) means 'not now': wait for readiness, then call again");
    Ok(())
}

/// Part 2: nonblocking connect, three outcomes.
pub fn connect() -> Result<()> {
    heading("nonblocking connect: EINPROGRESS, then writable, then SO_ERROR");
    let (_listener, at) = net::tcp_listen("server", &loopback()?, 16)?;
    let t0 = Instant::now();
    let fd = connect_within(&at, Duration::from_secs(2))?;
    say!(
        "client",
        "connect_within({at}, 2 s) = fd {} in {} us; getpeername = {}",
        fd.as_raw_fd(),
        t0.elapsed().as_micros(),
        net::peer_addr(&fd)?
    );
    // A port with a socket bound but not listening: the SYN gets a RST.
    let closed = net::tcp_socket("client", nix::sys::socket::AddressFamily::Inet)?;
    socket::bind(closed.as_raw_fd(), &loopback()?).call("bind(127.0.0.1:0)")?;
    let closed_at = net::local_addr(&closed)?;
    match connect_within(&closed_at, Duration::from_secs(2)) {
        Ok(_) => say!("client", "connect_within({closed_at}) succeeded?"),
        Err(e) => say!("client", "connect_within({closed_at}, 2 s) = {e}"),
    }
    note(
        "bound but not listening: the kernel answers the SYN with RST; SO_ERROR says ECONNREFUSED",
    );
    // A listener whose accept queue is full drops SYNs: connect never finishes.
    let (full, full_at) = net::tcp_listen("server", &loopback()?, 0)?;
    let mut admitted = Vec::new();
    for _ in 0..8 {
        let t0 = Instant::now();
        match connect_within(&full_at, Duration::from_millis(300)) {
            Ok(fd) => admitted.push(fd),
            Err(e) => {
                say!(
                    "client",
                    "after {} admitted: connect_within({full_at}, 300 ms) = {e} after {} ms",
                    admitted.len(),
                    t0.elapsed().as_millis()
                );
                break;
            }
        }
    }
    note(format!(
        "listen(fd, 0) admits {} (backlog + 1, chapter 5); then SYNs are dropped and only our deadline ends the wait",
        admitted.len()
    ));
    drop(full);
    Ok(())
}

/// Part 3: epoll, LT vs ET, and the standing EPOLLOUT.
pub fn epoll_basics() -> Result<()> {
    heading("epoll: an interest list you edit, a ready list you read");
    // The raw form once: int epfd = epoll_create1(EPOLL_CLOEXEC);
    // SAFETY: takes a flag, returns a new fd or -1.
    let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if raw == -1 {
        return Err(Error::last_os("epoll_create1(EPOLL_CLOEXEC)"));
    }
    // SAFETY: a new fd that nothing else owns.
    let epoll = Epoll(unsafe { OwnedFd::from_raw_fd(raw) });
    say!("", "epoll_create1(EPOLL_CLOEXEC) = {raw}");
    let pairs = [quiet_pair()?, quiet_pair()?, quiet_pair()?];
    for (i, (_, server)) in pairs.iter().enumerate() {
        epoll
            .add(server, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
            .call("epoll_ctl(ADD)")?;
        say!(
            "",
            "epoll_ctl({raw}, EPOLL_CTL_ADD, {}, {{EPOLLIN, token {i}}}) = 0",
            server.as_raw_fd()
        );
    }
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{raw}")).unwrap_or_default();
    note(format!(
        "the interest list: /proc/self/fdinfo/{raw} has {} `tfd:` lines, one per watched fd",
        fdinfo.lines().filter(|l| l.starts_with("tfd:")).count()
    ));
    say!(
        "",
        "epoll_wait({raw}, timeout 0) = {}",
        show(&wait_events(&epoll, 0)?)
    );
    note("nothing ready: the ready list is empty, whatever the interest list holds");
    send_all(&pairs[1].0, b"ping")?;
    say!("client1", "write \"ping\"");
    say!(
        "",
        "epoll_wait({raw}, 1000 ms) = {}",
        show(&wait_events(&epoll, 1000)?)
    );
    say!(
        "",
        "epoll_wait({raw}, 0) again, not having read = {}",
        show(&wait_events(&epoll, 0)?)
    );
    note("level-triggered (the default): reported for as long as the data is there, like poll");
    let mut buf = [0u8; 64];
    let n = nix::unistd::read(&pairs[1].1, &mut buf).call("read")?;
    say!(
        "",
        "read = {n}; epoll_wait(0) = {}",
        show(&wait_events(&epoll, 0)?)
    );

    heading("edge-triggered: told once per change, so drain until EAGAIN");
    let et = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).call("epoll_create1")?;
    let (client, server) = &pairs[2];
    epoll.delete(server).call("epoll_ctl(DEL)")?;
    et.add(
        server,
        EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, 2),
    )
    .call("epoll_ctl(ADD, EPOLLIN|EPOLLET)")?;
    say!(
        "",
        "epoll_ctl({}, EPOLL_CTL_ADD, {}, {{EPOLLIN|EPOLLET}}) = 0",
        et.0.as_raw_fd(),
        server.as_raw_fd()
    );
    send_all(client, b"0123456789")?;
    say!("client2", "write 10 bytes");
    say!(
        "",
        "epoll_wait(1000 ms) = {}",
        show(&wait_events(&et, 1000)?)
    );
    let n = nix::unistd::read(server, &mut buf[..4]).call("read")?;
    say!(
        "",
        "read(.., 4) = {n}: a reader that takes one small chunk per wake-up"
    );
    let t0 = Instant::now();
    let again = wait_events(&et, 200)?;
    say!(
        "",
        "epoll_wait(200 ms) = {} after {} ms, with {} bytes still unread (ioctl FIONREAD)",
        show(&again),
        t0.elapsed().as_millis(),
        unread(server.as_fd())?
    );
    note(
        "THE edge-triggered bug: the data is there, but nothing changed, so no event; a server waits forever",
    );
    send_all(client, b"!")?;
    say!("client2", "write 1 more byte: a new edge");
    say!(
        "",
        "epoll_wait(1000 ms) = {}",
        show(&wait_events(&et, 1000)?)
    );
    net::set_nonblocking(server, true)?;
    let mut drained = 0;
    let end = loop {
        match nix::unistd::read(server, &mut buf[..4]) {
            Ok(0) => break "EOF".to_string(),
            Ok(n) => drained += n,
            Err(Errno::EINTR) => continue,
            Err(errno) => break errno_text(errno),
        }
    };
    say!(
        "",
        "read(.., 4) until it fails: {drained} bytes, then {end}"
    );
    note("the rule: on each edge, read (and write) until EAGAIN; only then go back to epoll_wait");

    heading("EPOLLOUT with nothing to write: a busy loop");
    let (_c, s) = &pairs[0];
    for (label, flags) in [
        ("EPOLLIN", EpollFlags::EPOLLIN),
        (
            "EPOLLIN|EPOLLOUT",
            EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT,
        ),
    ] {
        let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).call("epoll_create1")?;
        ep.add(s, EpollEvent::new(flags, 0))
            .call("epoll_ctl(ADD)")?;
        let t0 = Instant::now();
        let mut returns = 0u64;
        while t0.elapsed() < Duration::from_millis(100) {
            if !wait_events(&ep, 20)?.is_empty() {
                returns += 1;
            }
        }
        say!(
            "",
            "an idle connection registered for {label}: {returns} epoll_wait returns with events in 100 ms"
        );
    }
    note(
        "a connected socket with room in its send buffer is always writable: ask for EPOLLOUT only while output waits",
    );
    Ok(())
}

/// Part 4: EPOLLONESHOT and EPOLLRDHUP.
pub fn oneshot_rdhup() -> Result<()> {
    heading("EPOLLONESHOT: one report, then disarmed until you re-arm it");
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).call("epoll_create1")?;
    let (client, server) = quiet_pair()?;
    let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLONESHOT;
    ep.add(&server, EpollEvent::new(flags, 7))
        .call("epoll_ctl(ADD)")?;
    say!(
        "",
        "epoll_ctl(ADD, {}, EPOLLIN|EPOLLONESHOT) = 0",
        server.as_raw_fd()
    );
    send_all(&client, b"a")?;
    say!(
        "",
        "client writes 1 byte; epoll_wait = {}",
        show(&wait_events(&ep, 1000)?)
    );
    send_all(&client, b"b")?;
    say!(
        "",
        "client writes 1 more; epoll_wait(200 ms) = {} (disarmed: {} bytes wait unread)",
        show(&wait_events(&ep, 200)?),
        unread(server.as_fd())?
    );
    ep.modify(&server, &mut EpollEvent::new(flags, 7))
        .call("epoll_ctl(MOD)")?;
    say!(
        "",
        "epoll_ctl(MOD, {}, EPOLLIN|EPOLLONESHOT) re-arms it; epoll_wait = {}",
        server.as_raw_fd(),
        show(&wait_events(&ep, 1000)?)
    );
    note(
        "with several threads on one epoll set, ONESHOT hands a connection to exactly one of them until it re-arms",
    );

    heading("EPOLLRDHUP: the peer shut down its writing side");
    let (client, server) = quiet_pair()?;
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).call("epoll_create1")?;
    ep.add(
        &server,
        EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP, 8),
    )
    .call("epoll_ctl(ADD)")?;
    socket::shutdown(client.as_raw_fd(), Shutdown::Write).call("shutdown(SHUT_WR)")?;
    say!("client", "shutdown({}, SHUT_WR)", client.as_raw_fd());
    say!("", "epoll_wait = {}", show(&wait_events(&ep, 1000)?));
    let mut buf = [0u8; 8];
    let n = nix::unistd::read(&server, &mut buf).call("read")?;
    say!("", "read = {n} (EOF)");
    note("EPOLLRDHUP says 'EOF is queued' in the event itself, without a read that returns 0");
    Ok(())
}

/// The system call a thread is blocked in (`/proc/self/task/TID/syscall`).
fn blocked_in(tid: i32) -> Option<i64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Is this system call number an epoll wait?
fn is_epoll_wait(nr: i64) -> bool {
    #[cfg(target_arch = "x86_64")]
    if nr == libc::SYS_epoll_wait {
        return true;
    }
    nr == libc::SYS_epoll_pwait || nr == libc::SYS_epoll_pwait2
}

/// Four threads, each with its own epoll set watching one listener; one
/// connection arrives. How many threads wake?
pub fn herd_wakeups(exclusive: bool, threads: usize) -> Result<usize> {
    let (listener, at) = {
        crate::kit::narrate::set_quiet(true);
        let l = net::tcp_listen("", &loopback()?, 16);
        crate::kit::narrate::set_quiet(false);
        l?
    };
    net::set_nonblocking(&listener, true)?;
    let listener = Arc::new(listener);
    let tids = Arc::new(Mutex::new(Vec::new()));
    let ready = Arc::new(Barrier::new(threads + 1));
    let mut handles = Vec::new();
    for _ in 0..threads {
        let (listener, tids, ready) =
            (Arc::clone(&listener), Arc::clone(&tids), Arc::clone(&ready));
        handles.push(std::thread::spawn(move || -> Result<bool> {
            let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).call("epoll_create1")?;
            let mut flags = EpollFlags::EPOLLIN;
            if exclusive {
                flags |= EpollFlags::EPOLLEXCLUSIVE;
            }
            ep.add(listener.as_fd(), EpollEvent::new(flags, 0))
                .call("epoll_ctl(ADD, listener)")?;
            // SAFETY: gettid takes no arguments.
            tids.lock()
                .map_err(|_| Error::msg("poisoned"))?
                .push(unsafe { libc::gettid() });
            ready.wait();
            Ok(!wait_events(&ep, 500)?.is_empty())
        }));
    }
    ready.wait();
    // Connect only once every thread sleeps in epoll_wait.
    let all: Vec<i32> = tids.lock().map_err(|_| Error::msg("poisoned"))?.clone();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !all
        .iter()
        .all(|&t| blocked_in(t).is_some_and(is_epoll_wait))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    let client = std::net::TcpStream::connect(addr::to_std(&at).ok_or_else(|| Error::msg("addr"))?)
        .map_err(|e| Error::msg(format!("connect: {e}")))?;
    let mut woken = 0;
    for h in handles {
        if h.join().map_err(|_| Error::msg("a waiter panicked"))?? {
            woken += 1;
        }
    }
    drop(client);
    Ok(woken)
}

/// Part 5: the thundering herd, with and without EPOLLEXCLUSIVE.
pub fn herd() -> Result<()> {
    heading("the thundering herd: 4 threads, 4 epoll sets, 1 listener, 1 connection");
    let plain = herd_wakeups(false, 4)?;
    say!("", "listener added with EPOLLIN: {plain} of 4 threads woke");
    let exclusive = herd_wakeups(true, 4)?;
    say!(
        "",
        "listener added with EPOLLIN|EPOLLEXCLUSIVE: {exclusive} of 4 threads woke"
    );
    note(
        "without it every waiter wakes and all but one find nothing to accept; with it the kernel wakes one (or a few)",
    );
    note("SO_REUSEPORT is the other cure: one listener, one accept queue per thread (chapter 7)");
    Ok(())
}

/// `emfile-child [--naive] [--limit N]`: a server whose fd limit is N.
pub fn emfile_child(args: &Args) -> Result<()> {
    let stop = Stop::on_ctrl_c()?;
    let limit = args.number("--limit", 32, 8..=1024)? as u64;
    let (_, hard) = crate::ch04_select::fdlimit::nofile()?;
    let lim = libc::rlimit {
        rlim_cur: limit,
        rlim_max: hard,
    };
    // SAFETY: a valid rlimit that outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == -1 {
        return Err(Error::last_os(format!("setrlimit(RLIMIT_NOFILE, {limit})")));
    }
    crate::kit::narrate::set_quiet(true);
    let (listener, at) = net::tcp_listen("", &loopback()?, 256)?;
    crate::kit::narrate::set_quiet(false);
    net::set_nonblocking(&listener, true)?;
    println!("listening on {at}");
    if !args.flag("--naive") {
        let stats = serve_lt(listener.as_fd(), stop.fd(), &Config::default())?;
        println!("stopped: {} accepted, {} shed", stats.accepted, stats.shed);
        return Ok(());
    }
    // The naive loop: on EMFILE, just go back to epoll_wait.
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).call("epoll_create1")?;
    ep.add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, 0))
        .call("epoll_ctl")?;
    ep.add(stop.fd(), EpollEvent::new(EpollFlags::EPOLLIN, 1))
        .call("epoll_ctl")?;
    let mut held = Vec::new();
    let mut wakeups = 0u64;
    let mut emfiles = 0u64;
    loop {
        let events = wait_events(&ep, 1000)?;
        wakeups += 1;
        if events.iter().any(|e| e.data() == 1) {
            println!(
                "stopped: {} held, {wakeups} wake-ups, {emfiles} EMFILE",
                held.len()
            );
            return Ok(());
        }
        loop {
            match socket::accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
                // SAFETY: accept4 returned a new fd we now own.
                Ok(raw) => held.push(unsafe { OwnedFd::from_raw_fd(raw) }),
                Err(Errno::EMFILE) => {
                    emfiles += 1;
                    break;
                }
                Err(_) => break,
            }
        }
    }
}

/// Part 6: EMFILE.
pub fn emfile() -> Result<()> {
    heading("EMFILE: a readable listener and no fd to accept into");
    let exe = std::env::current_exe().map_err(|e| Error::msg(format!("current_exe: {e}")))?;
    let exe = exe.to_string_lossy().to_string();
    let limit = 24;
    for naive in [true, false] {
        let mut words = vec![
            "emfile-child".to_string(),
            "--limit".into(),
            limit.to_string(),
        ];
        if naive {
            words.push("--naive".into());
        }
        let child = ServerChild::start(&exe, &words, None, Duration::from_secs(5))?;
        let at = addr::to_std(&child.addr).ok_or_else(|| Error::msg("addr"))?;
        let mut flood = Vec::new();
        for _ in 0..(limit + 16) {
            if let Ok(s) = std::net::TcpStream::connect(at) {
                flood.push(s);
            }
        }
        let pid = child.pid;
        let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        let deadline = Instant::now() + Duration::from_secs(3);
        while fds() < limit && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let (share, cpu) = probe::busy_share(pid, Duration::from_millis(400))
            .ok_or_else(|| Error::msg("cannot read /proc/PID/task/*/schedstat"))?;
        say!(
            "",
            "{}: RLIMIT_NOFILE {limit}, {} clients connected, {} fds open; over 400 ms it was runnable {:.0} % of the time, {cpu:.2} s CPU",
            if naive {
                "naive loop    "
            } else {
                "reserve fd    "
            },
            flood.len(),
            fds(),
            share * 100.0
        );
        if !naive {
            let mut eof = 0;
            for s in &mut flood {
                let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
                let mut b = [0u8; 1];
                if matches!(s.read(&mut b), Ok(0)) {
                    eof += 1;
                }
            }
            say!(
                "",
                "reserve fd: {eof} of the flood were accepted and closed at once (they read EOF)"
            );
        }
        let (_, lines) = child.stop(Duration::from_secs(3))?;
        for line in lines {
            say!("child", "{line}");
        }
    }
    note(
        "naive: accept fails with EMFILE, the connection stays queued, the listener stays readable, epoll_wait returns at once: 100 % CPU",
    );
    note(
        "reserve fd: close a spare fd, accept into its slot, close the connection, reopen the spare: the queue drains and the loop sleeps",
    );
    note(
        "back-off is the other cure: stop watching the listener until a connection closes (chapter 4's chat server does this)",
    );
    Ok(())
}

/// Part 7: timerfd, eventfd and signalfd in one loop; idle timeouts.
pub fn fds_in_one_loop() -> Result<()> {
    heading("timerfd, eventfd, signalfd: timers, wake-ups and signals as fds in one epoll set");
    // SIGUSR1 blocked in this thread and read from an fd; raise() sends it
    // to this thread only, so no other thread's mask matters.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGUSR1);
    mask.thread_block()
        .call("pthread_sigmask(SIG_BLOCK, SIGUSR1)")?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .call("signalfd(SIGUSR1)")?;
    let timer = Timer::new()?;
    let efd =
        EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC).call("eventfd")?;
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).call("epoll_create1")?;
    ep.add(&timer, EpollEvent::new(EpollFlags::EPOLLIN, 1))
        .call("epoll_ctl")?;
    ep.add(&efd, EpollEvent::new(EpollFlags::EPOLLIN, 2))
        .call("epoll_ctl")?;
    ep.add(sfd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, 3))
        .call("epoll_ctl")?;
    say!(
        "",
        "epoll set: timerfd {} (token 1), eventfd {} (token 2), signalfd {} for SIGUSR1 (token 3)",
        timer.as_fd().as_raw_fd(),
        efd.as_fd().as_raw_fd(),
        sfd.as_fd().as_raw_fd()
    );
    let t0 = Instant::now();
    timer.arm(Duration::from_millis(150))?;
    let waker = efd
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Error::msg(format!("dup: {e}")))?;
    let helper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50)); // the helper's own work
        nix::unistd::write(&waker, &3u64.to_ne_bytes())
    });
    loop {
        let events = wait_events(&ep, 2000)?;
        if events.is_empty() {
            return Err(Error::msg("nothing happened within 2 s"));
        }
        let ms = t0.elapsed().as_millis();
        match events[0].data() {
            1 => {
                say!(
                    "",
                    "{ms:>4} ms: timerfd readable, {} expiry; raise(SIGUSR1)",
                    timer.expirations()?
                );
                // SAFETY: raise sends a signal to the calling thread, which blocks it.
                unsafe { libc::raise(libc::SIGUSR1) };
            }
            2 => say!(
                "",
                "{ms:>4} ms: eventfd readable, counter {} (another thread wrote it)",
                efd.read().call("read(eventfd)")?
            ),
            _ => {
                let info = sfd.read_signal().call("read(signalfd)")?;
                say!(
                    "",
                    "{ms:>4} ms: signalfd readable: signal {} from pid {}; leaving the loop by the front door",
                    info.map_or(0, |i| i.ssi_signo),
                    info.map_or(0, |i| i.ssi_pid)
                );
                break;
            }
        }
    }
    let _ = helper.join();
    mask.thread_unblock().call("pthread_sigmask(SIG_UNBLOCK)")?;
    // Re-arming clears an expiry nobody has read yet.
    timer.arm(Duration::from_millis(10))?;
    wait::wait_readable(&timer, Duration::from_secs(2))?;
    timer.arm(Duration::from_secs(60))?;
    say!(
        "",
        "armed 10 ms, fired (readable), re-armed before reading: read gives {} expiries (EAGAIN): re-arming clears it",
        timer.expirations()?
    );

    heading("idle timeouts: one timerfd per connection");
    let (listener, at) = net::tcp_listen("server", &loopback()?, 16)?;
    net::set_nonblocking(&listener, true)?;
    let stop = EventFd::from_flags(EfdFlags::EFD_CLOEXEC).call("eventfd")?;
    let stop_fd = stop
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Error::msg(format!("dup: {e}")))?;
    let idle = Duration::from_millis(300);
    let server = std::thread::spawn(move || serve_idle(listener.as_fd(), stop_fd.as_fd(), idle));
    let to = addr::to_std(&at).ok_or_else(|| Error::msg("addr"))?;
    let quiet =
        std::net::TcpStream::connect(to).map_err(|e| Error::msg(format!("connect: {e}")))?;
    let mut busy =
        std::net::TcpStream::connect(to).map_err(|e| Error::msg(format!("connect: {e}")))?;
    busy.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let t0 = Instant::now();
    let quiet_closed = Arc::new(Mutex::new(None));
    let qc = Arc::clone(&quiet_closed);
    let watcher = std::thread::spawn(move || {
        let mut q = quiet;
        q.set_read_timeout(Some(Duration::from_secs(3))).ok();
        let mut b = [0u8; 1];
        let r = q.read(&mut b);
        if let Ok(mut slot) = qc.lock() {
            *slot = Some((r.map_err(|e| e.to_string()), t0.elapsed()));
        }
    });
    let mut echoed = 0;
    while t0.elapsed() < Duration::from_millis(700) {
        let _ = busy.write_all(b"x");
        let mut b = [0u8; 1];
        if matches!(busy.read(&mut b), Ok(1)) {
            echoed += 1;
        }
        std::thread::sleep(Duration::from_millis(100)); // the busy client's pace
    }
    let _ = watcher.join();
    if let Ok(slot) = quiet_closed.lock()
        && let Some((r, when)) = slot.as_ref()
    {
        say!(
            "quiet",
            "read = {:?} after {} ms: closed by the server's {} ms idle timer",
            r,
            when.as_millis(),
            idle.as_millis()
        );
    }
    say!(
        "busy",
        "one byte every 100 ms for 700 ms: {echoed} echoes, still connected"
    );
    stop.write(1).call("write(eventfd)")?;
    let stats = server.join().map_err(|_| Error::msg("server panicked"))??;
    say!(
        "server",
        "stopped by its eventfd: {} accepted, {} closed by the idle timer",
        stats.accepted,
        stats.timed_out
    );
    Ok(())
}

/// Echo `size` bytes through the server at `at` (writer thread + reader).
fn echo_through(at: std::net::SocketAddr, size: usize) -> Result<usize> {
    let mut s =
        std::net::TcpStream::connect(at).map_err(|e| Error::msg(format!("connect: {e}")))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut w = s.try_clone().map_err(|e| Error::msg(format!("dup: {e}")))?;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let expect = data.clone();
    let writer = std::thread::spawn(move || {
        let r = w.write_all(&data);
        let _ = w.shutdown(std::net::Shutdown::Write);
        r
    });
    let mut got = Vec::with_capacity(size);
    let _ = s.read_to_end(&mut got);
    let _ = writer.join();
    Ok(if got == expect { got.len() } else { 0 })
}

/// Part 8: the two echo servers.
pub fn echo_servers() -> Result<()> {
    heading("the echo servers: level-triggered and edge-triggered, 1 MiB each way");
    for edge in [false, true] {
        let (listener, at) = net::tcp_listen("server", &loopback()?, 64)?;
        net::set_nonblocking(&listener, true)?;
        let stop = EventFd::from_flags(EfdFlags::EFD_CLOEXEC).call("eventfd")?;
        let stop_fd = stop
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::msg(format!("dup: {e}")))?;
        let server = std::thread::spawn(move || {
            if edge {
                serve_et(listener.as_fd(), stop_fd.as_fd())
            } else {
                serve_lt(listener.as_fd(), stop_fd.as_fd(), &Config::default())
            }
        });
        let to = addr::to_std(&at).ok_or_else(|| Error::msg("addr"))?;
        let t0 = Instant::now();
        let ok = echo_through(to, 1 << 20)?;
        let ms = t0.elapsed().as_millis();
        stop.write(1).call("write(eventfd)")?;
        let stats = server.join().map_err(|_| Error::msg("server panicked"))??;
        say!(
            "client",
            "{}: {ok} of {} bytes echoed intact in {ms} ms; the server's epoll_wait returned {} times",
            if edge {
                "edge-triggered "
            } else {
                "level-triggered"
            },
            1 << 20,
            stats.wakeups
        );
    }
    note(
        "both keep a per-connection output buffer; LT asks for EPOLLOUT only while it is not empty, ET asks once and drains",
    );
    Ok(())
}
