//! The chapter's demos, each a subcommand of `ch03_sockopts`: an option
//! set on a real socket over loopback and what the kernel then does.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, SockFlag, SockType, SockaddrStorage, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};

use super::option::{Kind, SetReport, Value, get_option, set_and_explain};
use super::tcpinfo::{TcpSummary, read_tcp_info, show};
use super::typed;
use crate::kit::error::errno_text;
use crate::kit::narrate::{heading, note};
use crate::kit::tcp::state_name;
use crate::kit::{Call, Error, Result, addr, io, net, wait};
use crate::say;

/// How long any demo waits for the kernel before it reports a failure.
const PATIENCE: Duration = Duration::from_secs(3);

fn loopback_any() -> Result<SockaddrStorage> {
    addr::parse("127.0.0.1:0")
}

/// A listener and one connection to it, both ends open.
struct Pair {
    listener: OwnedFd,
    client: OwnedFd,
    server: OwnedFd,
}

/// socket/bind/listen on 127.0.0.1:0, connect, accept: narrated by the kit.
fn connected_pair() -> Result<Pair> {
    let (listener, bound) = net::tcp_listen("server", &loopback_any()?, 8)?;
    let client = net::tcp_connect("client", &bound)?;
    let (server, _) = net::accept("server", &listener)?;
    Ok(Pair {
        listener,
        client,
        server,
    })
}

/// Close an fd, narrated (dropping the `OwnedFd` is the `close(2)`).
fn close(who: &str, fd: OwnedFd, what: &str) {
    let raw = fd.as_raw_fd();
    drop(fd);
    say!(who, "close({raw}) = 0{what}");
}

/// Read one integer the kernel exposes under `/proc/sys`.
pub fn sysctl(path: &str) -> Result<i64> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::msg(format!("read {path}: {e}")))?;
    text.split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| Error::msg(format!("{path}: not a number: {text:?}")))
}

/// The states (`st` column) of the IPv4 TCP sockets in `/proc/net/tcp` whose
/// local port is `port`: what `ss -tan sport = :PORT` would list.
pub fn states_on_port(port: u16) -> Vec<u8> {
    let Ok(text) = std::fs::read_to_string("/proc/net/tcp") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (_, hex_port) = cols.get(1)?.rsplit_once(':')?;
            (u16::from_str_radix(hex_port, 16).ok()? == port)
                .then(|| u8::from_str_radix(cols.get(3)?, 16).ok())
                .flatten()
        })
        .collect()
}

fn state_list(states: &[u8]) -> String {
    if states.is_empty() {
        return "none".to_string();
    }
    states
        .iter()
        .map(|s| state_name(*s))
        .collect::<Vec<_>>()
        .join(", ")
}

fn sockaddr_v4(port: u16) -> SockaddrStorage {
    SockaddrStorage::from(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        port,
    ))
}

// ---------------------------------------------------------------- reuseaddr

/// A port held by a connection in TIME_WAIT, tried twice: once when the old
/// server did not set `SO_REUSEADDR`, once when it did. On Linux the
/// TIME_WAIT entry keeps the flag of the socket it came from, and the
/// kernel's bind check (`inet_csk_bind_conflict`) lets a new socket past it
/// only when *both* have the flag. So a restarted server that sets it still
/// gets EADDRINUSE if the old one did not.
pub fn reuseaddr() -> Result<()> {
    heading("reuseaddr: restart a server while its old connection sits in TIME_WAIT");
    note(
        "on Linux a TIME_WAIT entry keeps the SO_REUSEADDR flag of the socket it came from: \
         bind gets past it only if the old server AND the new one set the flag",
    );
    for old_reuse in [false, true] {
        restart_after_time_wait(old_reuse)?;
    }
    Ok(())
}

/// One case of [`time_wait_bind_matrix`]: SO_REUSEADDR on the old listener,
/// on the new socket, and what `bind` returned.
pub type BindCase = (bool, bool, std::result::Result<(), Errno>);

/// What `bind` to a port held by a TIME_WAIT entry returns, for each
/// setting of `SO_REUSEADDR` on the old listener and on the new socket:
/// [`BindCase`]s `(old, new, result)`, the four cases, quietly (no narration). The test
/// `demo_ch03::time_wait_keeps_the_old_listeners_reuse_flag` checks them.
pub fn time_wait_bind_matrix() -> Result<Vec<BindCase>> {
    let mut out = Vec::new();
    for old_reuse in [false, true] {
        for new_reuse in [false, true] {
            let port = leave_time_wait_quietly(old_reuse)?;
            let fd = socket::socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )
            .call("socket")?;
            if new_reuse {
                socket::setsockopt(&fd, sockopt::ReuseAddr, &true)
                    .call("setsockopt(SO_REUSEADDR)")?;
            }
            out.push((
                old_reuse,
                new_reuse,
                socket::bind(fd.as_raw_fd(), &sockaddr_v4(port)),
            ));
        }
    }
    Ok(out)
}

/// A listener on 127.0.0.1:0 with or without `SO_REUSEADDR`, one
/// connection the server closes first, the listener closed: returns the
/// port, which a TIME_WAIT entry now holds.
fn leave_time_wait_quietly(reuse: bool) -> Result<u16> {
    let listener = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .call("socket")?;
    if reuse {
        socket::setsockopt(&listener, sockopt::ReuseAddr, &true)
            .call("setsockopt(SO_REUSEADDR)")?;
    }
    socket::bind(listener.as_raw_fd(), &loopback_any()?).call("bind")?;
    socket::listen(&listener, socket::Backlog::new(1).call("Backlog")?).call("listen")?;
    let port = net::local_port(&listener)?;
    let client = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .call("socket")?;
    socket::connect(client.as_raw_fd(), &sockaddr_v4(port)).call("connect")?;
    let raw = socket::accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC).call("accept4")?;
    // SAFETY: accept4 just returned this fd and nothing else owns it.
    let server = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    drop(server);
    wait::wait_readable(&client, PATIENCE)?;
    let mut byte = [0u8; 1];
    nix::unistd::read(&client, &mut byte).call("read(client)")?;
    drop(client);
    drop(listener);
    let deadline = Instant::now() + PATIENCE;
    while !states_on_port(port).contains(&6) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(port)
}

/// One round of the demo: the old server's listener with or without
/// `SO_REUSEADDR`, its connection left in TIME_WAIT, then a new server
/// without and with the flag.
fn restart_after_time_wait(old_reuse: bool) -> Result<()> {
    let with = if old_reuse { "with" } else { "WITHOUT" };
    note(format_args!(
        "--- round {}: the old server set up its listener {with} SO_REUSEADDR",
        if old_reuse { 2 } else { 1 }
    ));
    let listener = net::tcp_socket("server", AddressFamily::Inet)?;
    if old_reuse {
        socket::setsockopt(&listener, sockopt::ReuseAddr, &true)
            .call("setsockopt(SO_REUSEADDR)")?;
        say!(
            "server",
            "setsockopt({}, SOL_SOCKET, SO_REUSEADDR, 1) = 0",
            listener.as_raw_fd()
        );
    }
    let any = loopback_any()?;
    socket::bind(listener.as_raw_fd(), &any).call("bind")?;
    socket::listen(&listener, socket::Backlog::new(8).call("Backlog")?).call("listen")?;
    let port = net::local_port(&listener)?;
    let here = sockaddr_v4(port);
    say!(
        "server",
        "bind({}, {here}) = 0; listen = 0",
        listener.as_raw_fd()
    );
    let client = net::tcp_connect("client", &here)?;
    let (server, _) = net::accept("server", &listener)?;

    if !old_reuse {
        note(
            "while the listener still listens, not even SO_REUSEADDR lets a second socket bind its port",
        );
        let second = net::tcp_socket("other", AddressFamily::Inet)?;
        socket::setsockopt(&second, sockopt::ReuseAddr, &true).call("setsockopt(SO_REUSEADDR)")?;
        report_bind("other", &second, &here);
        drop(second);
    }

    note(
        "the server closes first (the active close): its end of the connection will wait in TIME_WAIT",
    );
    close("server", server, " (FIN sent)");
    wait::wait_readable(&client, PATIENCE)?;
    let mut byte = [0u8; 1];
    let n = nix::unistd::read(&client, &mut byte).call("read(client)")?;
    say!(
        "client",
        "read({}) = {n} (EOF: the server's FIN)",
        client.as_raw_fd()
    );
    close(
        "client",
        client,
        " (FIN sent; the server's side answers and enters TIME_WAIT)",
    );
    close("server", listener, " (the listener is gone)");

    // The closed socket has no fd left to wait on, so look at the kernel's
    // table, a bounded number of times.
    let deadline = Instant::now() + PATIENCE;
    let mut states = states_on_port(port);
    while !states.contains(&6) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        states = states_on_port(port);
    }
    note(format_args!(
        "/proc/net/tcp, local port {port}: {}",
        state_list(&states)
    ));

    note("a new server on the same port, without SO_REUSEADDR:");
    let plain = net::tcp_socket("restart", AddressFamily::Inet)?;
    report_bind("restart", &plain, &here);
    drop(plain);

    note("and with SO_REUSEADDR set before bind:");
    let reuse = net::tcp_socket("restart", AddressFamily::Inet)?;
    socket::setsockopt(&reuse, sockopt::ReuseAddr, &true).call("setsockopt(SO_REUSEADDR)")?;
    say!(
        "restart",
        "setsockopt({}, SOL_SOCKET, SO_REUSEADDR, 1) = 0",
        reuse.as_raw_fd()
    );
    if report_bind("restart", &reuse, &here) {
        socket::listen(&reuse, socket::Backlog::new(8).call("Backlog")?)
            .call(format!("listen({})", reuse.as_raw_fd()))?;
        say!("restart", "listen({}, 8) = 0", reuse.as_raw_fd());
        note("the restarted server listens while the old connection still waits out TIME_WAIT");
    } else {
        note(
            "EADDRINUSE although the new socket set SO_REUSEADDR: the TIME_WAIT entry came from a \
             listener without it, and keeps that setting for its 60 s",
        );
    }
    Ok(())
}

/// `bind`, narrated with its result either way; true if it succeeded.
fn report_bind(who: &str, fd: &OwnedFd, at: &SockaddrStorage) -> bool {
    match socket::bind(fd.as_raw_fd(), at) {
        Ok(()) => {
            say!(who, "bind({}, {at}) = 0", fd.as_raw_fd());
            true
        }
        Err(e) => {
            say!(who, "bind({}, {at}) = -1 {}", fd.as_raw_fd(), errno_text(e));
            false
        }
    }
}

// ------------------------------------------------------------------- rcvbuf

/// `SO_RCVBUF` reads back doubled, clamped by `net.core.rmem_max`; buffer
/// sizes and MSS before and after `connect`.
pub fn rcvbuf() -> Result<()> {
    heading("rcvbuf: the kernel doubles what you ask, up to a ceiling");
    let rmem_max = sysctl("/proc/sys/net/core/rmem_max")?;
    let tcp_rmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_rmem").unwrap_or_default();
    note(format_args!(
        "net.core.rmem_max = {rmem_max}; net.ipv4.tcp_rmem = {} (min default max)",
        tcp_rmem.split_whitespace().collect::<Vec<_>>().join(" ")
    ));
    let fd = net::tcp_socket("demo", AddressFamily::Inet)?;
    let raw = fd.as_raw_fd();
    let default = socket::getsockopt(&fd, sockopt::RcvBuf).call("getsockopt(SO_RCVBUF)")?;
    say!(
        "demo",
        "getsockopt({raw}, SOL_SOCKET, SO_RCVBUF) = {default}  (the middle of tcp_rmem)"
    );

    let asked: usize = 9973;
    socket::setsockopt(&fd, sockopt::RcvBuf, &asked).call("setsockopt(SO_RCVBUF)")?;
    say!(
        "demo",
        "setsockopt({raw}, SOL_SOCKET, SO_RCVBUF, {asked}) = 0"
    );
    let typed = socket::getsockopt(&fd, sockopt::RcvBuf).call("getsockopt(SO_RCVBUF)")?;
    say!(
        "demo",
        "getsockopt({raw}, SOL_SOCKET, SO_RCVBUF) = {typed}  (nix's typed sockopt::RcvBuf)"
    );
    let raw_read = get_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, Kind::Int);
    match &raw_read {
        Ok(v) => say!(
            "demo",
            "getsockopt({raw}, SOL_SOCKET, SO_RCVBUF) = {v}  (raw libc::getsockopt)"
        ),
        Err(e) => say!("demo", "getsockopt({raw}, SOL_SOCKET, SO_RCVBUF) = {e}"),
    }
    note(format_args!(
        "asked {asked}, got {typed} = {:.2} x asked: the other half is room for the kernel's bookkeeping (socket(7))",
        typed as f64 / asked as f64
    ));

    let huge = usize::try_from(rmem_max.saturating_mul(4)).unwrap_or(usize::MAX / 4);
    let huge = huge.min(i32::MAX as usize);
    socket::setsockopt(&fd, sockopt::RcvBuf, &huge).call("setsockopt(SO_RCVBUF)")?;
    say!(
        "demo",
        "setsockopt({raw}, SOL_SOCKET, SO_RCVBUF, {huge}) = 0  (no error!)"
    );
    let clamped = socket::getsockopt(&fd, sockopt::RcvBuf).call("getsockopt(SO_RCVBUF)")?;
    say!(
        "demo",
        "getsockopt({raw}, SOL_SOCKET, SO_RCVBUF) = {clamped}"
    );
    note(format_args!(
        "clamped to rmem_max ({rmem_max}) first, then doubled: 2 x {rmem_max} = {}",
        2 * rmem_max
    ));
    drop(fd);

    heading("rcvbuf: buffer sizes and MSS before and after connect");
    let (listener, bound) = net::tcp_listen("server", &loopback_any()?, 8)?;
    let client = net::tcp_socket("client", AddressFamily::Inet)?;
    let before = sizes(&client)?;
    note(format_args!("unconnected:        {before}"));
    socket::connect(client.as_raw_fd(), &bound).call("connect")?;
    say!("client", "connect({}, {bound}) = 0", client.as_raw_fd());
    let (server, _) = net::accept("server", &listener)?;
    note(format_args!("connected (client): {}", sizes(&client)?));
    note(format_args!("connected (server): {}", sizes(&server)?));
    note(
        "unconnected, TCP_MAXSEG is the protocol's default MSS (536, RFC 879); after the handshake it is what this connection really sends, from lo's MTU and what the peer announced, and the two ends need not agree",
    );
    Ok(())
}

/// `SO_RCVBUF`, `SO_SNDBUF` and `TCP_MAXSEG` of one socket, as text.
fn sizes(fd: &OwnedFd) -> Result<String> {
    let rcv = socket::getsockopt(fd, sockopt::RcvBuf).call("getsockopt(SO_RCVBUF)")?;
    let snd = socket::getsockopt(fd, sockopt::SndBuf).call("getsockopt(SO_SNDBUF)")?;
    let mss = socket::getsockopt(fd, sockopt::TcpMaxSeg).call("getsockopt(TCP_MAXSEG)")?;
    Ok(format!(
        "SO_RCVBUF = {rcv}, SO_SNDBUF = {snd}, TCP_MAXSEG = {mss}"
    ))
}

// ------------------------------------------------------------------- sndbuf

/// A small send buffer and a peer that never reads: a nonblocking send
/// takes part of the data, then fails with EAGAIN.
pub fn sndbuf() -> Result<()> {
    heading("sndbuf: a small send buffer, a peer that never reads, a nonblocking send");
    // The listener's receive buffer is inherited by the connection it
    // accepts: keep it small so the peer cannot soak everything up.
    let listener = net::tcp_socket("server", AddressFamily::Inet)?;
    socket::setsockopt(&listener, sockopt::RcvBuf, &4096).call("setsockopt(SO_RCVBUF)")?;
    say!(
        "server",
        "setsockopt({}, SOL_SOCKET, SO_RCVBUF, 4096) = 0",
        listener.as_raw_fd()
    );
    socket::bind(listener.as_raw_fd(), &loopback_any()?).call("bind")?;
    socket::listen(&listener, socket::Backlog::new(8).call("Backlog")?).call("listen")?;
    let bound = net::local_addr(&listener)?;
    say!(
        "server",
        "bind + listen({}) on {bound}",
        listener.as_raw_fd()
    );

    let client = net::tcp_socket("client", AddressFamily::Inet)?;
    let c = client.as_raw_fd();
    socket::setsockopt(&client, sockopt::SndBuf, &4096).call("setsockopt(SO_SNDBUF)")?;
    let snd = socket::getsockopt(&client, sockopt::SndBuf).call("getsockopt(SO_SNDBUF)")?;
    say!(
        "client",
        "setsockopt({c}, SOL_SOCKET, SO_SNDBUF, 4096) = 0; reads back {snd}"
    );
    socket::connect(c, &bound).call("connect")?;
    say!("client", "connect({c}, {bound}) = 0");
    let (server, _) = net::accept("server", &listener)?;
    note("the server never reads");
    net::set_nonblocking(&client, true)?;
    say!("client", "fcntl({c}, F_SETFL, O_NONBLOCK) = 0");

    let chunk = vec![b'x'; 256 * 1024];
    let mut total = 0usize;
    for _ in 0..64 {
        match socket::send(c, &chunk, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => {
                total += n;
                let what = if n < chunk.len() { " (partial)" } else { "" };
                say!("client", "send({c}, {} bytes) = {n}{what}", chunk.len());
            }
            Err(Errno::EAGAIN) => {
                say!(
                    "client",
                    "send({c}, {} bytes) = -1 {}",
                    chunk.len(),
                    errno_text(Errno::EAGAIN)
                );
                break;
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys(format!("send({c})"), e)),
        }
    }
    let queued_out = queued(&client, libc::TIOCOUTQ)?;
    let queued_in = queued(&server, libc::FIONREAD)?;
    note(format_args!(
        "accepted {total} bytes in all; {queued_out} are not yet acknowledged by the peer (ioctl SIOCOUTQ), {queued_in} wait unread in the server's receive queue (ioctl FIONREAD); bytes received but not yet ACKed count in both"
    ));
    note(
        "a blocking socket would now sleep in send until the peer reads; a nonblocking one says EAGAIN: wait for POLLOUT",
    );
    Ok(())
}

/// `ioctl(fd, FIONREAD or SIOCOUTQ, &n)`: bytes waiting in a queue.
fn queued(fd: &OwnedFd, request: libc::Ioctl) -> Result<i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: both requests write one int through the pointer, which points
    // at `n`, alive for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, &raw mut n) };
    if rc == -1 {
        return Err(Error::last_os(format!(
            "ioctl({}, {request})",
            fd.as_raw_fd()
        )));
    }
    Ok(n)
}

// ------------------------------------------------------------------- linger

/// `SO_LINGER {1, 0}`: close sends RST; the peer's read fails ECONNRESET.
pub fn linger() -> Result<()> {
    heading("linger: SO_LINGER {1, 0} turns close into a reset");
    let Pair {
        listener: _listener,
        client,
        server,
    } = connected_pair()?;
    let c = client.as_raw_fd();
    let cport = net::local_port(&client)?;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    socket::setsockopt(&client, sockopt::Linger, &l).call("setsockopt(SO_LINGER)")?;
    say!(
        "client",
        "setsockopt({c}, SOL_SOCKET, SO_LINGER, {{l_onoff = 1, l_linger = 0}}) = 0"
    );
    match get_option(&client, libc::SOL_SOCKET, libc::SO_LINGER, Kind::Linger) {
        Ok(v) => say!("client", "getsockopt({c}, SOL_SOCKET, SO_LINGER) = {v}"),
        Err(e) => say!("client", "getsockopt({c}, SOL_SOCKET, SO_LINGER) = {e}"),
    }
    close("client", client, " (RST sent instead of FIN)");
    note(format_args!(
        "/proc/net/tcp, client port {cport}: {} (an abortive close skips TIME_WAIT)",
        state_list(&states_on_port(cport))
    ));
    let s = server.as_raw_fd();
    wait::wait_readable(&server, PATIENCE)?;
    let mut buf = [0u8; 16];
    match nix::unistd::read(&server, &mut buf) {
        Err(e) => say!("server", "read({s}) = -1 {}", errno_text(e)),
        Ok(n) => say!(
            "server",
            "read({s}) = {n} (expected ECONNRESET: the reset did not arrive first)"
        ),
    }
    Ok(())
}

// ----------------------------------------------------------------- rcvtimeo

/// `SO_RCVTIMEO`: a blocking read gives up with EAGAIN after the timeout.
pub fn rcvtimeo() -> Result<()> {
    heading("rcvtimeo: a blocking read that gives up");
    let Pair {
        listener: _listener,
        client,
        server: _server,
    } = connected_pair()?;
    let c = client.as_raw_fd();
    let timeout = TimeVal::milliseconds(250);
    socket::setsockopt(&client, sockopt::ReceiveTimeout, &timeout)
        .call("setsockopt(SO_RCVTIMEO)")?;
    say!(
        "client",
        "setsockopt({c}, SOL_SOCKET, SO_RCVTIMEO, {{0 sec, 250000 usec}}) = 0"
    );
    let back =
        socket::getsockopt(&client, sockopt::ReceiveTimeout).call("getsockopt(SO_RCVTIMEO)")?;
    say!(
        "client",
        "getsockopt({c}, SOL_SOCKET, SO_RCVTIMEO) = {{{} sec, {} usec}}",
        back.tv_sec(),
        back.tv_usec()
    );
    note("the server sends nothing; the client blocks in read");
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let result = nix::unistd::read(&client, &mut buf);
    let took = start.elapsed();
    match result {
        Err(e) => say!(
            "client",
            "read({c}) = -1 {} after {:.1} ms",
            errno_text(e),
            took.as_secs_f64() * 1e3
        ),
        Ok(n) => say!(
            "client",
            "read({c}) = {n} after {:.1} ms",
            took.as_secs_f64() * 1e3
        ),
    }
    note("EAGAIN (= EWOULDBLOCK) from a blocking socket means: the timeout passed, nothing came");
    Ok(())
}

// ------------------------------------------------------------------ nodelay

/// Rounds of write-write-read with Nagle on, then with `TCP_NODELAY`: the
/// delay Nagle plus delayed ACK add, measured on this machine.
pub fn nodelay() -> Result<()> {
    heading("nodelay: write, write, read; with Nagle and without");
    let Pair {
        listener: _listener,
        client,
        server,
    } = connected_pair()?;
    const PART: usize = 8;
    const ROUNDS: usize = 12;
    // The server: read two parts, answer one byte, until EOF.
    socket::setsockopt(&server, sockopt::ReceiveTimeout, &TimeVal::seconds(5))
        .call("setsockopt(SO_RCVTIMEO)")?;
    let echo = std::thread::spawn(move || -> Result<()> {
        let mut req = [0u8; 2 * PART];
        loop {
            if io::readn(&server, &mut req)? < req.len() {
                return Ok(());
            }
            io::writen(&server, b"!")?;
        }
    });
    let on = socket::getsockopt(&client, sockopt::TcpNoDelay).call("getsockopt(TCP_NODELAY)")?;
    say!(
        "client",
        "getsockopt({}, IPPROTO_TCP, TCP_NODELAY) = {}",
        client.as_raw_fd(),
        u8::from(on)
    );
    let nagle = rounds(&client, PART, ROUNDS)?;
    socket::setsockopt(&client, sockopt::TcpNoDelay, &true).call("setsockopt(TCP_NODELAY)")?;
    say!(
        "client",
        "setsockopt({}, IPPROTO_TCP, TCP_NODELAY, 1) = 0",
        client.as_raw_fd()
    );
    let nodelay = rounds(&client, PART, ROUNDS)?;
    note(format_args!("Nagle on:    {}", ms_list(&nagle)));
    note(format_args!("TCP_NODELAY: {}", ms_list(&nodelay)));
    note(format_args!(
        "median {:.2} ms with Nagle, {:.2} ms without",
        median(&nagle),
        median(&nodelay)
    ));
    note(
        "with Nagle the second small write waits for the ACK of the first, and the server delays that ACK, hoping to send it with its answer, which needs the second write: a standoff the delayed-ACK timer ends. The first rounds may be fast: a new connection ACKs at once ('quick ACK' mode)",
    );
    drop(client);
    match echo.join() {
        Ok(r) => r,
        Err(_) => Err(Error::msg("the echo thread panicked")),
    }
}

fn rounds(client: &OwnedFd, part: usize, n: usize) -> Result<Vec<Duration>> {
    let msg = vec![b'a'; part];
    let mut reply = [0u8; 1];
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        io::writen(client, &msg)?;
        io::writen(client, &msg)?;
        wait::wait_readable(client, PATIENCE)?;
        if io::readn(client, &mut reply)? != 1 {
            return Err(Error::msg("the server closed early"));
        }
        took.push(start.elapsed());
    }
    Ok(took)
}

fn ms_list(times: &[Duration]) -> String {
    times
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
        .collect::<Vec<_>>()
        .join(" ")
        + " ms"
}

fn median(times: &[Duration]) -> f64 {
    let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    ms.get(ms.len() / 2).copied().unwrap_or(0.0)
}

// ---------------------------------------------------------------- keepalive

/// `SO_KEEPALIVE` with `TCP_KEEPIDLE`/`INTVL`/`CNT` of one second: probes
/// counted in `TCP_INFO` while neither side sends a byte.
pub fn keepalive() -> Result<()> {
    heading("keepalive: probes on an idle connection");
    let Pair {
        listener: _listener,
        client,
        server,
    } = connected_pair()?;
    let c = client.as_raw_fd();
    socket::setsockopt(&client, sockopt::KeepAlive, &true).call("setsockopt(SO_KEEPALIVE)")?;
    say!("client", "setsockopt({c}, SOL_SOCKET, SO_KEEPALIVE, 1) = 0");
    socket::setsockopt(&client, sockopt::TcpKeepIdle, &1).call("setsockopt(TCP_KEEPIDLE)")?;
    say!(
        "client",
        "setsockopt({c}, IPPROTO_TCP, TCP_KEEPIDLE, 1) = 0  (default: net.ipv4.tcp_keepalive_time = {} s)",
        sysctl("/proc/sys/net/ipv4/tcp_keepalive_time").unwrap_or(-1)
    );
    socket::setsockopt(&client, sockopt::TcpKeepInterval, &1).call("setsockopt(TCP_KEEPINTVL)")?;
    say!(
        "client",
        "setsockopt({c}, IPPROTO_TCP, TCP_KEEPINTVL, 1) = 0"
    );
    socket::setsockopt(&client, sockopt::TcpKeepCount, &3).call("setsockopt(TCP_KEEPCNT)")?;
    say!("client", "setsockopt({c}, IPPROTO_TCP, TCP_KEEPCNT, 3) = 0");
    note(
        "neither side writes; every second the client's kernel sends a probe (no data) and the server's kernel ACKs it",
    );
    let first = read_tcp_info(&client)?;
    let first_server = read_tcp_info(&server)?;
    keepalive_line(
        0.0,
        &first,
        &first,
        first_server.segs_in,
        first_server.segs_in,
    );
    let start = Instant::now();
    for i in 1..=3 {
        // Nothing to wait on: the point is that nothing happens, to the
        // application. Watch the kernel's counters meanwhile.
        let at = Duration::from_millis(1000 * i + 200);
        std::thread::sleep(at.saturating_sub(start.elapsed()));
        let now = read_tcp_info(&client)?;
        let now_server = read_tcp_info(&server)?;
        keepalive_line(
            start.elapsed().as_secs_f64(),
            &first,
            &now,
            first_server.segs_in,
            now_server.segs_in,
        );
    }
    note(
        "segs_out rises by one a second with no data sent (data_segs_out stays): those are the probes; each is answered, so last_ack_recv falls back to ~0 and tcpi_probes (unanswered probes) is back to 0. Against a dead peer tcpi_probes would count up to TCP_KEEPCNT and the connection would fail with ETIMEDOUT",
    );
    Ok(())
}

fn keepalive_line(t: f64, first: &TcpSummary, now: &TcpSummary, s0: Option<u32>, s1: Option<u32>) {
    let delta = |a: Option<u32>, b: Option<u32>| match (a, b) {
        (Some(a), Some(b)) => format!("+{}", b.wrapping_sub(a)),
        _ => "-".to_string(),
    };
    say!(
        "client",
        "t={t:.1}s TCP_INFO: segs_out {} ({}), segs_in {} ({}), data_segs_out {}, probes {}, last_ack_recv {} ms ago; server segs_in {}",
        show(now.segs_out),
        delta(first.segs_out, now.segs_out),
        show(now.segs_in),
        delta(first.segs_in, now.segs_in),
        show(now.data_segs_out),
        show(now.probes),
        show(now.last_ack_recv),
        delta(s0, s1),
    );
}

// -------------------------------------------------------------------- error

/// `SO_ERROR` after a nonblocking connect to a port nobody listens on.
pub fn error() -> Result<()> {
    heading("error: SO_ERROR tells how a nonblocking connect ended");
    // Hold a port with a socket that is bound but not listening: a connect
    // there is refused, and no other program can start listening on it.
    let holder = net::tcp_socket("holder", AddressFamily::Inet)?;
    socket::bind(holder.as_raw_fd(), &loopback_any()?).call("bind")?;
    let target = net::local_addr(&holder)?;
    say!(
        "holder",
        "bind({}, 127.0.0.1:0) = 0 -> {target}, no listen",
        holder.as_raw_fd()
    );
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .call("socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)")?;
    let c = fd.as_raw_fd();
    say!(
        "client",
        "socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0) = {c}"
    );
    match socket::connect(c, &target) {
        Ok(()) => say!(
            "client",
            "connect({c}, {target}) = 0 (unexpected: someone listens)"
        ),
        Err(e) => say!("client", "connect({c}, {target}) = -1 {}", errno_text(e)),
    }
    let revents = wait::wait_for(&fd, nix::poll::PollFlags::POLLOUT, PATIENCE)?;
    say!("client", "poll({c}, POLLOUT) -> revents {revents:?}");
    let err = socket::getsockopt(&fd, sockopt::SocketError).call("getsockopt(SO_ERROR)")?;
    say!(
        "client",
        "getsockopt({c}, SOL_SOCKET, SO_ERROR) = {err} ({})",
        errno_text(Errno::from_raw(err))
    );
    let again = socket::getsockopt(&fd, sockopt::SocketError).call("getsockopt(SO_ERROR)")?;
    say!(
        "client",
        "getsockopt({c}, SOL_SOCKET, SO_ERROR) = {again}  (reading it cleared it)"
    );
    note(
        "the pattern: connect -> EINPROGRESS, poll for POLLOUT, then SO_ERROR: 0 is connected, anything else is connect's errno",
    );
    Ok(())
}

// ------------------------------------------------------------------ tcpinfo

/// A `TCP_INFO` snapshot of a live connection.
pub fn tcpinfo() -> Result<()> {
    heading("tcpinfo: a snapshot of a live connection");
    let Pair {
        listener: _listener,
        client,
        server,
    } = connected_pair()?;
    const SIZE: usize = 64 * 1024;
    let peer = std::thread::spawn(move || -> Result<OwnedFd> {
        let mut buf = vec![0u8; SIZE];
        if io::readn(&server, &mut buf)? < SIZE {
            return Err(Error::msg("the client closed early"));
        }
        io::writen(&server, b"thanks\n")?;
        Ok(server)
    });
    io::writen(&client, &vec![b'z'; SIZE])?;
    say!(
        "client",
        "write({}, {SIZE} bytes) = {SIZE}",
        client.as_raw_fd()
    );
    wait::wait_readable(&client, PATIENCE)?;
    let mut reply = [0u8; 7];
    let n = io::readn(&client, &mut reply)?;
    say!("client", "read({}) = {n}", client.as_raw_fd());
    let server = match peer.join() {
        Ok(r) => r?,
        Err(_) => return Err(Error::msg("the server thread panicked")),
    };
    let info = read_tcp_info(&client)?;
    say!(
        "client",
        "getsockopt({}, IPPROTO_TCP, TCP_INFO) = {} of {} bytes",
        client.as_raw_fd(),
        info.len,
        std::mem::size_of::<libc::tcp_info>()
    );
    print_snapshot(&info);
    drop(server);
    Ok(())
}

/// Print the interesting fields of a `TCP_INFO` snapshot, one group a line.
pub fn print_snapshot(i: &TcpSummary) {
    note(format_args!(
        "state {}, ca_state {}, retransmits {}, probes {}, backoff {}",
        i.state_text(),
        show(i.ca_state),
        show(i.retransmits),
        show(i.probes),
        show(i.backoff)
    ));
    note(format_args!(
        "rtt {} us (var {}), min_rtt {} us, rto {} us, ato {} us",
        show(i.rtt),
        show(i.rttvar),
        show(i.min_rtt),
        show(i.rto),
        show(i.ato)
    ));
    note(format_args!(
        "snd_mss {}, rcv_mss {}, advmss {}, pmtu {}",
        show(i.snd_mss),
        show(i.rcv_mss),
        show(i.advmss),
        show(i.pmtu)
    ));
    note(format_args!(
        "snd_cwnd {} segments, snd_ssthresh {}, snd_wnd {} bytes, unacked {}",
        show(i.snd_cwnd),
        show(i.snd_ssthresh),
        show(i.snd_wnd),
        show(i.unacked)
    ));
    note(format_args!(
        "bytes_sent {}, bytes_acked {}, bytes_received {}, total_retrans {}",
        show(i.bytes_sent),
        show(i.bytes_acked),
        show(i.bytes_received),
        show(i.total_retrans)
    ));
    note(format_args!(
        "segs_out {} (data {}), segs_in {}, last data sent {} ms ago",
        show(i.segs_out),
        show(i.data_segs_out),
        show(i.segs_in),
        show(i.last_data_sent)
    ));
}

// ---------------------------------------------------------------------- set

/// `set_and_explain` on a few options whose value the kernel changes, or
/// refuses, or keeps.
pub fn set() -> Result<()> {
    heading("set: what the kernel keeps of what you set");
    let rmem_max = sysctl("/proc/sys/net/core/rmem_max")?;
    let above_max = i32::try_from(rmem_max.saturating_mul(3)).unwrap_or(i32::MAX);
    let cases: [(&str, libc::c_int, libc::c_int, Kind, Value); 7] = [
        (
            "SO_RCVBUF",
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            Kind::Int,
            Value::Int(9973),
        ),
        (
            "SO_RCVBUF",
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            Kind::Int,
            Value::Int(above_max),
        ),
        (
            "SO_SNDLOWAT",
            libc::SOL_SOCKET,
            libc::SO_SNDLOWAT,
            Kind::Int,
            Value::Int(1),
        ),
        (
            "TCP_DEFER_ACCEPT",
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            Kind::Int,
            Value::Int(5),
        ),
        (
            "SO_RCVTIMEO",
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            Kind::Timeval,
            Value::Timeval {
                sec: 1,
                usec: 234_567,
            },
        ),
        (
            "TCP_NODELAY",
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            Kind::Flag,
            Value::Flag(true),
        ),
        (
            "TCP_CONGESTION",
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            Kind::Text,
            Value::Text("reno".to_string()),
        ),
    ];
    for (name, level, optname, kind, value) in cases {
        let fd = net::tcp_socket("set", AddressFamily::Inet)?;
        let raw = fd.as_raw_fd();
        let outcome: Result<SetReport> = set_and_explain(&fd, level, optname, kind, &value);
        match outcome {
            Ok(report) => say!(
                "set",
                "setsockopt({raw}, {name}, {value}) = 0; reads back {}: {}",
                report.got,
                report.explain()
            ),
            Err(e) => say!(
                "set",
                "setsockopt({raw}, {name}, {value}) = -1 {}",
                e.errno().map_or_else(|| e.to_string(), errno_text)
            ),
        }
    }
    note(
        "nix has no SO_SNDLOWAT; the chapter defines it with sockopt_impl! (ch03_sockopts::typed):",
    );
    let fd = net::tcp_socket("set", AddressFamily::Inet)?;
    let raw = fd.as_raw_fd();
    let low = socket::getsockopt(&fd, typed::SndLowat).call("getsockopt(SO_SNDLOWAT)")?;
    say!(
        "set",
        "getsockopt({raw}, SOL_SOCKET, SO_SNDLOWAT) = {low}  (reading works)"
    );
    match socket::setsockopt(&fd, typed::SndLowat, &4096) {
        Ok(()) => say!(
            "set",
            "setsockopt({raw}, SOL_SOCKET, SO_SNDLOWAT, 4096) = 0"
        ),
        Err(e) => say!(
            "set",
            "setsockopt({raw}, SOL_SOCKET, SO_SNDLOWAT, 4096) = -1 {}  (setting does not)",
            errno_text(e)
        ),
    }
    Ok(())
}

/// A demo's body.
pub type Demo = fn() -> Result<()>;

/// The demos in the order the no-argument run shows them, with their
/// subcommand names.
pub const DEMOS: &[(&str, Demo, &str)] = &[
    (
        "set",
        set,
        "set options and see what the kernel keeps (set_and_explain)",
    ),
    (
        "reuseaddr",
        reuseaddr,
        "bind a port held by TIME_WAIT, without and with SO_REUSEADDR",
    ),
    (
        "rcvbuf",
        rcvbuf,
        "SO_RCVBUF doubled and clamped; buffer sizes and MSS before/after connect",
    ),
    (
        "sndbuf",
        sndbuf,
        "small send buffer, silent peer: partial send, then EAGAIN",
    ),
    (
        "linger",
        linger,
        "SO_LINGER {1, 0}: close sends RST, the peer reads ECONNRESET",
    ),
    (
        "rcvtimeo",
        rcvtimeo,
        "SO_RCVTIMEO: a blocking read returns EAGAIN, timed",
    ),
    (
        "nodelay",
        nodelay,
        "write-write-read with and without TCP_NODELAY, timed",
    ),
    (
        "keepalive",
        keepalive,
        "keepalive probes every second, counted in TCP_INFO",
    ),
    (
        "error",
        error,
        "SO_ERROR after a refused nonblocking connect",
    ),
    (
        "tcpinfo",
        tcpinfo,
        "a TCP_INFO snapshot of a live connection",
    ),
];

// ------------------------------------------------------------------- server

/// `server [--addr A]`: a real peer to poke with `nc`. For every connection
/// it writes back, as text, the options of the *accepted* socket (inherited
/// from the listener, or set by the handshake) and a `TCP_INFO` snapshot,
/// then closes. One client at a time (each for at most about 2.5 s: a 2 s
/// send timeout and half a second to drain), backlog 16. Runs until Ctrl-C.
pub fn server(addr: &SockaddrStorage, stop: &crate::kit::stop::Stop) -> Result<()> {
    use crate::kit::accept::AcceptError;
    use crate::kit::stop::Woke;
    // Quietly: the first line of output must be `listening on …`.
    use nix::sys::socket::SockaddrLike;
    let family = match addr.family() {
        Some(f @ (AddressFamily::Inet | AddressFamily::Inet6)) => f,
        _ => return Err(Error::msg(format!("not an IP address: {addr}"))),
    };
    let listener = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .call("socket(SOCK_STREAM)")?;
    socket::setsockopt(&listener, sockopt::ReuseAddr, &true).call("setsockopt(SO_REUSEADDR)")?;
    socket::bind(listener.as_raw_fd(), addr).call(format!("bind({addr})"))?;
    socket::listen(&listener, socket::Backlog::new(16).call("Backlog")?).call("listen")?;
    let bound = net::local_addr(&listener)?;
    println!("listening on {bound}");
    note(
        "each connection gets the options of its accepted socket and a TCP_INFO snapshot, then close; Ctrl-C stops",
    );
    loop {
        match stop.wait(&listener, None)? {
            Woke::Stop => {
                note("stop signal: closing the listener");
                return Ok(());
            }
            Woke::Timeout => continue,
            Woke::Ready => {}
        }
        let (conn, peer) = match net::accept("server", &listener) {
            Ok(c) => c,
            Err(e) => match crate::kit::accept::triage("server", &e) {
                AcceptError::Again | AcceptError::Dropped => continue,
                AcceptError::OutOfFds => {
                    crate::kit::accept::back_off(stop.fd());
                    continue;
                }
                AcceptError::Fatal => return Err(e),
            },
        };
        if let Err(e) = report_to_peer(&conn).and_then(|()| drain(&conn)) {
            say!("server", "{peer}: {e} (carrying on)");
        }
        close("server", conn, "");
    }
}

/// Say goodbye politely: `shutdown(SHUT_WR)` sends our FIN after the
/// text, then read and discard what the peer sent until its EOF, for at most
/// half a second. Closing with unread input would send RST instead of FIN,
/// and the peer could lose our text (chapter 6).
fn drain(conn: &OwnedFd) -> Result<()> {
    let fd = conn.as_raw_fd();
    socket::shutdown(fd, socket::Shutdown::Write).call(format!("shutdown({fd}, SHUT_WR)"))?;
    say!("server", "shutdown({fd}, SHUT_WR) = 0");
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut buf = [0u8; 4096];
    let mut discarded = 0usize;
    while discarded < 1 << 20 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || wait::wait_readable(conn, left).is_err() {
            break; // the peer keeps its side open: close anyway
        }
        match nix::unistd::read(conn, &mut buf) {
            Ok(0) => break,
            Ok(n) => discarded += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys(format!("read({fd})"), e)),
        }
    }
    if discarded > 0 {
        say!(
            "server",
            "read({fd}): discarded {discarded} bytes the peer sent"
        );
    }
    Ok(())
}

/// Write the accepted socket's options and `TCP_INFO` to the peer.
fn report_to_peer(conn: &OwnedFd) -> Result<()> {
    // A peer that never reads must not stall the server: bound the write.
    socket::setsockopt(conn, sockopt::SendTimeout, &TimeVal::seconds(2))
        .call("setsockopt(SO_SNDTIMEO)")?;
    let mut text = String::new();
    for (name, level, optname, kind) in [
        ("SO_RCVBUF", libc::SOL_SOCKET, libc::SO_RCVBUF, Kind::Int),
        ("SO_SNDBUF", libc::SOL_SOCKET, libc::SO_SNDBUF, Kind::Int),
        (
            "SO_REUSEADDR",
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            Kind::Flag,
        ),
        (
            "SO_KEEPALIVE",
            libc::SOL_SOCKET,
            libc::SO_KEEPALIVE,
            Kind::Flag,
        ),
        ("TCP_MAXSEG", libc::IPPROTO_TCP, libc::TCP_MAXSEG, Kind::Int),
        (
            "TCP_NODELAY",
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            Kind::Flag,
        ),
        (
            "TCP_CONGESTION",
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            Kind::Text,
        ),
    ] {
        match get_option(conn, level, optname, kind) {
            Ok(v) => text.push_str(&format!("{name}: {v}\n")),
            Err(e) => text.push_str(&format!("{name}: {e}\n")),
        }
    }
    let info = read_tcp_info(conn)?;
    text.push_str(&format!("TCP_INFO: {info}\n"));
    say!(
        "server",
        "write({}, {} bytes of options)",
        conn.as_raw_fd(),
        text.len()
    );
    io::writen(conn, text.as_bytes())
}
